"""The expressions of an AlertRule, pure (no Kubernetes client, no I/O): PromQL checked when a rule is applied,
CEL evaluated over our resources, annotation templates expanded per alert instance, the instances' fingerprints,
and an SLA compiled to PromQL.

- ``check_promql``: the syntax (and the static types: ``rate(x)`` wants a range) of an ``expr``, by a Rust port of
  Prometheus' own parser (``promql-parser``). It follows Prometheus 3: ``holt_winters`` is unknown to it (3.0
  renamed it ``double_exponential_smoothing``), while it accepts functions that an older Prometheus rejects when it
  evaluates the query (``info``, ``mad_over_time``, ``limitk``...). It gives no positions.
- ``compile_cel`` / ``CelProgram.holds``: CEL over a resource bound as ``self``, as Kubernetes' validation rules
  read it, by the Rust ``cel`` crate (``common-expression-language``), with CEL's core functions and macros (``has``,
  ``all``, ``exists``, ``exists_one``, ``map``, ``filter``, ``size``, ``matches``, ``startsWith``, ``int``,
  ``double``, ``duration``, ``timestamp``...), not Kubernetes' extension libraries (``lowerAscii``, ``split``,
  ``quantity``, ``url``...). A JSON number compares with an int or a double literal whatever its form:
  ``self.status.driftedShare > 0.3`` holds for 0.5 and for 1.
- ``expand``: the subset of Prometheus' alert templates that annotations use (see its docstring).
- ``fingerprint``: a label set's hash as Prometheus and Alertmanager compute it.
- ``sla_queries``: a ModelDeployment's service levels as PromQL over the model servers' own series.
"""

from __future__ import annotations

import functools
import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, TypeAlias

import cel
import promql_parser

from mlops_operator.api.common import duration_seconds
from mlops_operator.builders.serving import label_value
from mlops_operator.logic import measure

# --- PromQL ----------------------------------------------------------------------------------------------------------


def check_promql(expr: str) -> str | None:
    """None when ``expr`` parses as PromQL, else the parser's message, for example ``unclosed left parenthesis`` or
    ``expected type matrix in call to function 'rate', got vector``. Only the query is checked: whether its metrics
    exist, and whether the Prometheus that evaluates it knows every function it uses, shows when it runs."""
    try:
        promql_parser.parse(expr)
    except ValueError as error:
        return str(error) or "invalid PromQL"
    return None


# --- CEL -------------------------------------------------------------------------------------------------------------


class CelError(ValueError):
    """A CEL expression that does not compile; the message is the parser's, with the line, column and a caret."""


# The cel bindings raise ValueError("Failed to parse expression '<the expression>': ERROR: <input>:1:5: ...").
_CEL_PARSE_PREFIX = re.compile(r"^Failed to parse expression .*?: ERROR: <input>:(\d+):(\d+): ", re.S)


def _is_panic(error: BaseException) -> bool:
    # A Rust panic reaches Python as pyo3's PanicException, a BaseException: one expression or resource that trips
    # the evaluator must fail that evaluation, not the operator.
    return type(error).__name__ == "PanicException"


@dataclass(frozen=True)
class CelProgram:
    """A compiled CEL expression (from ``compile_cel``); safe to share between threads."""

    source: str
    """The expression."""
    _program: cel.Program = field(repr=False, compare=False)

    def holds(self, obj: Mapping[str, Any] | CelObject) -> tuple[bool, str | None]:
        """Evaluates the expression with ``obj`` (a resource as JSON, or its ``CelObject``) as ``self``: (True,
        None) or (False, None) for a bool result; (False, why) when it gives something else or fails: a missing
        field (``self.status.phase`` of a resource without one; ``has(self.status.phase)`` tests for it), a type
        error, an unknown name or function. ``metadata.managedFields`` is not visible: it only records who wrote
        what, and converting it would cost far more than the evaluation."""
        bound = obj.context if isinstance(obj, CelObject) else {"self": _without_managed_fields(obj)}
        try:
            result = self._program.execute(bound)
        except Exception as error:  # KeyError, IndexError, TypeError, RuntimeError, ArithmeticError...
            return False, _cel_evaluation_message(error)
        except BaseException as error:
            if not _is_panic(error):
                raise
            return False, f"the CEL evaluator failed: {error}"
        if not isinstance(result, bool):
            return False, f"the expression gave {_type_name(result, _CEL_TYPES)}, not a bool"
        return result, None


class CelObject:
    """A resource converted once for CEL: evaluating many expressions over it, or one expression again and again,
    costs the conversion once (about 45 times less than converting it at each evaluation). Not thread-safe."""

    def __init__(self, obj: Mapping[str, Any]) -> None:
        self.context = cel.Context()
        self.context.add_variable("self", _without_managed_fields(obj))


class CelObjects:
    """Resources converted for CEL, kept by uid and resourceVersion, so that rules and evaluations share them while
    an object does not change. At most ``limit``: when full, all are dropped (stale versions go with the rest; the
    live ones come back on use)."""

    def __init__(self, limit: int = 20_000) -> None:
        self.limit = limit
        self._kept: dict[tuple[str, str], CelObject] = {}

    def of(self, obj: Mapping[str, Any]) -> CelObject:
        meta = obj["metadata"]
        key = (meta.get("uid") or "", meta.get("resourceVersion") or "")
        found = self._kept.get(key)
        if found is None:
            if len(self._kept) >= self.limit:
                self._kept.clear()
            found = self._kept[key] = CelObject(obj)
        return found


@functools.lru_cache(maxsize=512)
def compile_cel(expr: str) -> CelProgram:
    """``expr`` compiled (cached by its text). CelError with the parser's message when it is not CEL. Only the
    syntax is checked here: unknown names, functions and fields show when it is evaluated (``holds``)."""
    try:
        program = cel.compile(expr)
    except Exception as error:
        raise CelError(_cel_parse_message(error)) from None
    except BaseException as error:
        if not _is_panic(error):
            raise
        raise CelError(f"the CEL parser failed: {error}") from None
    return CelProgram(expr, program)


def _cel_parse_message(error: Exception) -> str:
    text = str(error)
    match = _CEL_PARSE_PREFIX.match(text)
    if match is None:
        return text
    return f"line {match[1]}, column {match[2]}: {text[match.end() :]}"


def _cel_evaluation_message(error: Exception) -> str:
    if isinstance(error, KeyError) and error.args:
        return f"no such key: {error.args[0]}"
    return str(error) or type(error).__name__


# The Python types the cel bindings return, by CEL's names (bool before int: a bool is an int in Python).
_CEL_TYPES: tuple[tuple[type, str], ...] = (
    (bool, "bool"),
    (int, "int"),
    (float, "double"),
    (str, "string"),
    (bytes, "bytes"),
    (list, "list"),
    (dict, "map"),
    (datetime, "timestamp"),
    (timedelta, "duration"),
    (type(None), "null"),
)


def _type_name(value: object, names: Sequence[tuple[type, str]]) -> str:
    return next((name for kind, name in names if isinstance(value, kind)), type(value).__name__)


def _without_managed_fields(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    metadata = obj.get("metadata")
    if not isinstance(metadata, Mapping) or "managedFields" not in metadata:
        return obj
    return {**obj, "metadata": {k: v for k, v in metadata.items() if k != "managedFields"}}


# --- Annotation templates --------------------------------------------------------------------------------------------

FUNCTIONS = ("humanize", "humanize1024", "humanizeDuration", "humanizePercentage", "printf")
"""The template functions ``expand`` knows."""
# Go's template keywords and builtins: named in the message rather than reported as unknown functions.
_UNSUPPORTED = frozenset(
    {
        *("if", "else", "end", "range", "with", "define", "template", "block", "break", "continue", "nil"),
        *("and", "or", "not", "len", "index", "slice", "print", "println", "call", "html", "js", "urlquery"),
        *("eq", "ne", "lt", "le", "gt", "ge"),
    }
)
_MAX_NESTING = 32
_SPACE = " \t\r\n"


@dataclass(frozen=True)
class _Data:
    """What ``.`` (and ``$``) stands for: Prometheus' template data, of which we keep Labels and Value."""

    labels: Mapping[str, str]
    value: float | str


_Value: TypeAlias = float | int | str | bool | Mapping[str, str] | _Data


class _TemplateError(Exception):
    pass


@dataclass(frozen=True)
class _Token:
    kind: str  # "pipe", "(", ")", "string", "number", "bool", "variable", "field", "function"
    text: str
    value: float | int | str | bool | None = None  # a literal's value, or a variable's name ($labels)
    names: tuple[str, ...] = ()  # the fields a variable or field selects: $labels.team, .Labels.team


@dataclass(frozen=True)
class _Pipeline:
    commands: tuple[tuple[_Token | _Pipeline, ...], ...]


_Operand: TypeAlias = _Token | _Pipeline


@dataclass(frozen=True)
class _Action:
    pipeline: _Pipeline
    line: int


def expand(template: str, labels: Mapping[str, str], value: float | str | None) -> str:
    """``template`` with its actions expanded for one alert instance, as Prometheus expands an alert's annotations
    (Go's text/template, no HTML escaping). Never raises: a template that does not parse or fails anywhere is
    ``<error expanding template: ...>`` whole, as in Prometheus.

    Supported, a subset of Prometheus': ``{{ $value }}`` (also ``.Value``), ``{{ $labels }}`` and
    ``{{ $labels.<name> }}`` (also ``.Labels.<name>``; a missing label is empty), string and number literals,
    pipes and parentheses, ``{{-``/``-}}`` trimming, ``{{/* comments */}}``; the functions ``humanize`` (SI
    prefixes, 4 significant digits: 1234567 -> 1.235M, 0.0012 -> 1.2m), ``humanize1024`` (ki, Mi...),
    ``humanizePercentage`` (0.1234 -> 12.34%), ``humanizeDuration`` (seconds: 90 -> 1m 30s, 0.5 -> 500ms) and
    ``printf`` (Go's fmt verbs v, s, d, f, e, g, q, x, t with flags, width and precision; ``{{ $value | printf
    "%.2f" }}`` passes the value last). Not supported: ``if``/``range``/``with``, variables of one's own, Go's
    builtins, ``$externalLabels``, ``query`` and the other functions.

    ``value`` is the instance's value: a number prints as Go prints a float64 (shortest form, exponent below 1e-4
    and from 1e6 on: 0.3, 5, 1e-05, 1.234567e+06), a string (a condition rule's message) as itself, None as
    nothing. The humanize functions read a string as a number (Go's ParseFloat); one that is not a number is an
    error, as in Prometheus."""
    data = _Data(labels, "" if value is None else (value if isinstance(value, str) else float(value)))
    try:
        return "".join(part if isinstance(part, str) else _print(part, data) for part in _parse(template))
    except _TemplateError as error:
        return f"<error expanding template: {error}>"
    except Exception as error:  # a bug here must cost one annotation, not the rule's evaluation
        return f"<error expanding template: {type(error).__name__}: {error}>"


def _print(action: _Action, data: _Data) -> str:
    try:
        result = _run(action.pipeline, data, 0)
        if isinstance(result, _Data):
            raise _TemplateError("printing the whole data (.) is not supported: use .Value or .Labels")
        return _go_print(result)
    except _TemplateError as error:
        raise _TemplateError(f"line {action.line}: {error}") from None


@functools.lru_cache(maxsize=1024)
def _parse(template: str) -> tuple[str | _Action, ...]:
    """The template as text and actions; the whole template is parsed before anything is expanded (as Go does).
    Cached by text: a rule's annotations are expanded for every instance at every evaluation."""
    parts: list[str | _Action] = []
    pos = 0
    trim_next = False
    while True:
        start = template.find("{{", pos)
        text = template[pos : start if start >= 0 else len(template)]
        if trim_next:
            text = text.lstrip(_SPACE)
        line = template.count("\n", 0, max(start, 0)) + 1
        if start < 0:
            parts.append(text)
            return tuple(parts)
        i = start + 2
        if template.startswith("-", i) and template[i + 1 : i + 2] in tuple(_SPACE):
            text = text.rstrip(_SPACE)
            i += 2
        parts.append(text)
        try:
            if template.startswith("/*", i):
                pos, trim_next = _comment(template, i)
                continue
            tokens, pos, trim_next = _lex(template, i)
            pipeline, _ = _pipeline(tokens, 0, 0)
        except _TemplateError as error:
            raise _TemplateError(f"line {line}: {error}") from None
        parts.append(_Action(pipeline, line))


def _comment(template: str, i: int) -> tuple[int, bool]:
    end = template.find("*/", i + 2)
    if end < 0:
        raise _TemplateError("unclosed comment")
    rest = end + 2
    if template.startswith("}}", rest):
        return rest + 2, False
    if template[rest : rest + 1] in tuple(_SPACE) and template.startswith("-}}", rest + 1):
        return rest + 4, True
    raise _TemplateError("comment ends before closing delimiter")


_NUMBER = re.compile(r"[+-]?(?:0[xX][0-9a-fA-F]+|\d+\.?\d*(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?)")
_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
_FIELDS = re.compile(rf"(?:\.{_NAME})+")
_VARIABLE = re.compile(r"\$[A-Za-z0-9_]*")
_IDENTIFIER = re.compile(_NAME)
_STRING = re.compile(r'"((?:[^"\\\n]|\\.)*)"')
_RAW_STRING = re.compile(r"`([^`]*)`")
_HEX = "[0-9a-fA-F]"
_ESCAPE = re.compile(rf"\\(?:([abfnrtv\\\"])|x({_HEX}{{2}})|u({_HEX}{{4}})|U({_HEX}{{8}})|([0-7]{{3}})|(.))", re.S)
_SIMPLE_ESCAPES = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v", "\\": "\\", '"': '"'}


def _lex(template: str, i: int) -> tuple[list[_Token], int, bool]:
    """The tokens of the action starting at ``i``, the position after it, and whether it trims the text after."""
    tokens: list[_Token] = []
    n = len(template)
    while True:
        if i >= n:
            raise _TemplateError("unclosed action")
        char = template[i]
        if char in _SPACE:
            if template.startswith("-}}", i + 1):
                return tokens, i + 4, True
            i += 1
        elif template.startswith("}}", i):
            return tokens, i + 2, False
        elif char in "|()":
            tokens.append(_Token("pipe" if char == "|" else char, char))
            i += 1
        elif char == '"':
            match = _STRING.match(template, i)
            if match is None:
                raise _TemplateError("unterminated quoted string")
            tokens.append(_Token("string", match[0], _unquote(match[1])))
            i = match.end()
        elif char == "`":
            match = _RAW_STRING.match(template, i)
            if match is None:
                raise _TemplateError("unterminated raw quoted string")
            tokens.append(_Token("string", match[0], match[1]))
            i = match.end()
        elif char == "$":
            match = _VARIABLE.match(template, i)
            assert match is not None
            if re.match(r"[ \t]*:?=", template[match.end() :]):
                raise _TemplateError("variable declarations are not supported")
            if match[0] not in ("$", "$value", "$labels"):
                raise _TemplateError(f'undefined variable "{match[0]}" (known: $value, $labels)')
            fields = _FIELDS.match(template, match.end())
            end = fields.end() if fields else match.end()
            names = tuple(fields[0].split(".")[1:]) if fields else ()
            tokens.append(_Token("variable", template[i:end], match[0], names))
            i = end
        elif char == "." and not template[i + 1 : i + 2].isdigit():
            fields = _FIELDS.match(template, i)
            end = fields.end() if fields else i + 1
            tokens.append(_Token("field", template[i:end], None, tuple(fields[0].split(".")[1:]) if fields else ()))
            i = end
        elif char.isdigit() or char in "+-.":
            match = _NUMBER.match(template, i)
            if match is None or template[match.end() : match.end() + 1].isalnum():
                raise _TemplateError(f"bad number syntax: {template[i : i + 16]!r}")
            text = match[0]
            is_float = not text.lstrip("+-").lower().startswith("0x") and any(c in text for c in ".eE")
            tokens.append(_Token("number", text, float(text) if is_float else _integer(text)))
            i = match.end()
        elif char.isalpha() or char == "_":
            match = _IDENTIFIER.match(template, i)
            assert match is not None
            tokens.append(_identifier(match[0]))
            i = match.end()
        elif template.startswith(":=", i) or char in "=,":
            raise _TemplateError("variable declarations are not supported")
        else:
            raise _TemplateError(f"unexpected {char!r} in command")


def _integer(text: str) -> int:
    """A Go integer literal: decimal, 0x hexadecimal, or 0-prefixed octal."""
    try:
        return int(text, 0)
    except ValueError:
        pass
    try:
        return int(text, 8)  # Python's base 0 refuses Go's 017
    except ValueError:
        raise _TemplateError(f"bad number syntax: {text!r}") from None


def _identifier(name: str) -> _Token:
    if name in ("true", "false"):
        return _Token("bool", name, name == "true")
    if name in FUNCTIONS:
        return _Token("function", name)
    if name in _UNSUPPORTED:
        raise _TemplateError(f'"{name}" is not supported (functions: {", ".join(FUNCTIONS)})')
    raise _TemplateError(f'function "{name}" not defined (functions: {", ".join(FUNCTIONS)})')


def _unquote(body: str) -> str:
    def escape(match: re.Match[str]) -> str:
        simple, hex2, hex4, hex8, octal, other = match.groups()
        if simple:
            return _SIMPLE_ESCAPES[simple]
        if octal:
            return chr(int(octal, 8))
        if other is not None:
            raise _TemplateError(f"unknown escape sequence \\{other} in a string")
        return chr(int(hex2 or hex4 or hex8, 16))

    return _ESCAPE.sub(escape, body)


def _pipeline(tokens: Sequence[_Token], k: int, depth: int) -> tuple[_Pipeline, int]:
    """The pipeline from ``tokens[k]`` to the end, or (within parentheses, ``depth`` > 0) to its right parenthesis."""
    if depth > _MAX_NESTING:
        raise _TemplateError("parentheses nested too deep")
    commands: list[list[_Operand]] = [[]]
    while k < len(tokens):
        token = tokens[k]
        if token.kind == ")":
            if depth == 0:
                raise _TemplateError("unexpected right parenthesis")
            break
        if token.kind == "pipe":
            if not commands[-1]:
                raise _TemplateError("missing command before |")
            commands.append([])
            k += 1
        elif token.kind == "(":
            inner, k = _pipeline(tokens, k + 1, depth + 1)
            commands[-1].append(inner)
        else:
            commands[-1].append(token)
            k += 1
    else:
        if depth > 0:
            raise _TemplateError("unclosed left parenthesis")
    if not commands[-1]:
        raise _TemplateError("missing value for command")
    return _Pipeline(tuple(tuple(command) for command in commands)), k + 1


def _run(pipeline: _Pipeline, data: _Data, depth: int) -> _Value:
    result: _Value | None = None
    for command in pipeline.commands:
        result = _command(command, data, depth, result)
    assert result is not None
    return result


def _command(command: Sequence[_Operand], data: _Data, depth: int, piped: _Value | None) -> _Value:
    """One command of a pipeline; ``piped`` is the previous command's result (None for the first command)."""
    head = command[0]
    if isinstance(head, _Token) and head.kind == "function":
        args = [_operand(arg, data, depth) for arg in command[1:]]
        if piped is not None:
            args.append(piped)
        return _call(head.text, args)
    if len(command) > 1 or piped is not None:
        name = head.text if isinstance(head, _Token) else "(...)"
        raise _TemplateError(f"can't give argument to non-function {name}")
    return _operand(head, data, depth)


def _operand(operand: _Operand, data: _Data, depth: int) -> _Value:
    if isinstance(operand, _Pipeline):
        return _run(operand, data, depth + 1)
    if operand.kind == "function":  # an argument naming a function calls it without arguments, as in Go
        return _call(operand.text, [])
    if operand.kind == "variable":
        base: _Value = {"$": data, "$value": data.value, "$labels": data.labels}[str(operand.value)]
        return _fields(base, operand.names)
    if operand.kind == "field":
        return _fields(data, operand.names)
    assert operand.value is not None
    return operand.value


def _fields(base: _Value, names: Sequence[str]) -> _Value:
    for name in names:
        if isinstance(base, _Data):
            if name not in ("Value", "Labels"):
                raise _TemplateError(f"can't evaluate field {name} (the data has Value and Labels)")
            base = base.value if name == "Value" else base.labels
        elif isinstance(base, Mapping):
            base = base.get(name, "")  # missing labels are empty, as with Prometheus' missingkey=zero
        else:
            raise _TemplateError(f"can't evaluate field {name} in type {_go_type(base)}")
    return base


def _call(name: str, args: list[_Value]) -> _Value:
    if name == "printf":
        if not args:
            raise _TemplateError("wrong number of args for printf: want at least 1 got 0")
        if not isinstance(args[0], str):
            raise _TemplateError(f"printf: wrong type for the format; expected string; got {_go_type(args[0])}")
        return sprintf(args[0], args[1:])
    if len(args) != 1:
        raise _TemplateError(f"wrong number of args for {name}: want 1 got {len(args)}")
    try:
        number = _to_float(args[0])
    except _TemplateError as error:
        raise _TemplateError(f"error calling {name}: {error}") from None
    return _HUMANIZERS[name](number)


def _to_float(value: _Value) -> float:
    """Prometheus' convertToFloat: numbers as they are, strings by Go's ParseFloat."""
    if isinstance(value, bool) or not isinstance(value, float | int | str):
        raise _TemplateError(f"can't convert {_go_type(value)} to float")
    if not isinstance(value, str):
        return float(value)
    special = re.fullmatch(r"([+-]?)(inf|infinity|nan)", value, re.IGNORECASE)
    if special:
        return math.nan if special[2].lower() == "nan" else (-math.inf if special[1] == "-" else math.inf)
    # Python's float() also takes spaces and underscores, which Go's ParseFloat refuses.
    if not re.fullmatch(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?", value):
        raise _TemplateError(f"strconv.ParseFloat: parsing {_go_quote(value)}: invalid syntax")
    number = float(value)
    if math.isinf(number):
        raise _TemplateError(f"strconv.ParseFloat: parsing {_go_quote(value)}: value out of range")
    return number


def _g4(v: float, suffix: str = "") -> str:
    """Go's ``%.4g`` (4 significant digits), then ``suffix``."""
    if math.isnan(v) or math.isinf(v):
        return _go_special(v) + suffix
    return f"{v:.4g}{suffix}"


def _scaled(v: float, prefixes: Sequence[str], step: float) -> str:
    prefix = ""
    for p in prefixes:
        if abs(v) < step:
            break
        prefix, v = p, v / step
    return _g4(v, prefix)


def _small(v: float, unit: str = "") -> str:
    prefix = ""
    for p in ("m", "u", "n", "p", "f", "a", "z", "y"):
        if abs(v) >= 1:
            break
        prefix, v = p, v * 1000
    return _g4(v, prefix + unit)


def humanize(v: float) -> str:
    """Prometheus' humanize: SI prefixes (k, M, G... and m, u, n...) with 4 significant digits."""
    if v == 0 or math.isnan(v) or math.isinf(v):
        return _g4(v)
    if abs(v) >= 1:
        return _scaled(v, ("k", "M", "G", "T", "P", "E", "Z", "Y"), 1000)
    return _small(v)


def humanize1024(v: float) -> str:
    """Prometheus' humanize1024: binary prefixes (ki, Mi, Gi...) with 4 significant digits."""
    if abs(v) <= 1 or math.isnan(v) or math.isinf(v):
        return _g4(v)
    return _scaled(v, ("ki", "Mi", "Gi", "Ti", "Pi", "Ei", "Zi", "Yi"), 1024)


def humanize_duration(v: float) -> str:
    """Prometheus' humanizeDuration of seconds: 1d 2h 3m 4s, 1m 30s, 1.5s, 500ms."""
    if math.isnan(v) or math.isinf(v):
        return _g4(v)
    if v == 0:
        return _g4(v, "s")
    if abs(v) < 1:
        return _small(v, "s")
    sign = "-" if v < 0 else ""
    whole = int(abs(v))
    days, hours, minutes, seconds = whole // 86400, whole // 3600 % 24, whole // 60 % 60, whole % 60
    if days:
        return f"{sign}{days}d {hours}h {minutes}m {seconds}s"
    if hours:
        return f"{sign}{hours}h {minutes}m {seconds}s"
    if minutes:
        return f"{sign}{minutes}m {seconds}s"
    return sign + _g4(abs(v), "s")


def humanize_percentage(v: float) -> str:
    """Prometheus' humanizePercentage: a ratio as a percentage with 4 significant digits (0.1234 -> 12.34%)."""
    return _g4(v * 100, "%")


_HUMANIZERS: dict[str, Callable[[float], str]] = {
    "humanize": humanize,
    "humanize1024": humanize1024,
    "humanizeDuration": humanize_duration,
    "humanizePercentage": humanize_percentage,
}


def _go_special(v: float) -> str:
    return "NaN" if math.isnan(v) else ("+Inf" if v > 0 else "-Inf")


def go_float(v: float, upper: bool = False) -> str:
    """A float64 as Go's ``%v`` (and ``%g``) prints it: the shortest digits that read back as ``v``, in exponent
    form when the decimal exponent is below -4 or at least 6 (0.0001, 1e-05, 100000, 1.234567e+06); +Inf, -Inf and
    NaN spelled as Go spells them."""
    if math.isnan(v) or math.isinf(v):
        return _go_special(v)
    if v == 0:
        return "-0" if math.copysign(1.0, v) < 0 else "0"
    sign, digit_tuple, exponent = Decimal(repr(v)).as_tuple()
    assert isinstance(exponent, int)
    digits = "".join(map(str, digit_tuple))
    stripped = digits.rstrip("0")
    exponent += len(digits) - len(stripped)
    digits = stripped
    point = len(digits) + exponent  # where the decimal point goes, counted from the first digit
    exp10 = point - 1
    minus = "-" if sign else ""
    if exp10 < -4 or exp10 >= 6:
        mantissa = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        return f"{minus}{mantissa}{'E' if upper else 'e'}{'-' if exp10 < 0 else '+'}{abs(exp10):02d}"
    if point <= 0:
        return f"{minus}0.{'0' * -point}{digits}"
    if point < len(digits):
        return f"{minus}{digits[:point]}.{digits[point:]}"
    return f"{minus}{digits}{'0' * (point - len(digits))}"


# A template's values by Go's type names, as its messages name them.
_GO_TYPES: tuple[tuple[type, str], ...] = (
    (bool, "bool"),
    (int, "int"),
    (float, "float64"),
    (str, "string"),
    (Mapping, "map[string]string"),
    (_Data, "struct"),
)


def _go_type(value: object) -> str:
    return _type_name(value, _GO_TYPES)


def _go_print(value: _Value) -> str:
    """``value`` as Go's fmt prints it with %v."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return go_float(value)
    if isinstance(value, int | str):
        return str(value)
    if isinstance(value, Mapping):
        return "map[" + " ".join(f"{k}:{value[k]}" for k in sorted(value)) + "]"
    return "{...}"


def _go_quote(text: str) -> str:
    """Go's strconv.Quote (printable characters kept, others escaped)."""
    escapes = {"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\v": "\\v"}
    out = []
    for char in text:
        if char in ('"', "\\"):
            out.append("\\" + char)
        elif char in escapes:
            out.append(escapes[char])
        elif char.isprintable():
            out.append(char)
        elif ord(char) < 0x80:
            out.append(f"\\x{ord(char):02x}")
        elif ord(char) < 0x10000:
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(f"\\U{ord(char):08x}")
    return '"' + "".join(out) + '"'


_DIRECTIVE = re.compile(r"%([-+# 0]*)(\d*)(?:(\.)(\d*))?(.?)", re.S)
_MAX_WIDTH = 10**6  # as Go: a larger width or precision is refused (%!(BADWIDTH))


def sprintf(fmt: str, args: Sequence[_Value]) -> str:
    """Go's fmt.Sprintf for the verbs a template uses: a float64 with v, g, G, e, E, f, F; an int with v, d, x, X,
    o, b, c; a string with v, s, q, x, X; a bool with v, t; a label map with v, s. Flags ``-+# 0``, width and
    precision as in Go; argument indexes (``%[1]d``) and ``*`` widths are not supported. A verb that does not fit
    its argument prints as Go prints it (``%!d(float64=0.5)``), as do missing and extra arguments."""
    out: list[str] = []
    used = 0
    pos = 0
    while True:
        start = fmt.find("%", pos)
        if start < 0:
            out.append(fmt[pos:])
            break
        out.append(fmt[pos:start])
        match = _DIRECTIVE.match(fmt, start)
        assert match is not None
        pos = match.end()
        flags, width_text, dot, precision_text, verb = match.groups()
        if not verb:
            out.append("%!(NOVERB)")
            break
        if verb == "%":
            out.append("%")
            continue
        width = int(width_text) if width_text else None
        precision = (int(precision_text) if precision_text else 0) if dot else None
        if (width or 0) > _MAX_WIDTH or (precision or 0) > _MAX_WIDTH:
            out.append("%!(BADWIDTH)" if (width or 0) > _MAX_WIDTH else "%!(BADPREC)")
            continue
        if used >= len(args):
            out.append(f"%!{verb}(MISSING)")
            continue
        out.append(_format(args[used], verb, flags, width, precision))
        used += 1
    if used < len(args):
        extra = ", ".join(f"{_go_type(a)}={_go_print(a)}" for a in args[used:])
        out.append(f"%!(EXTRA {extra})")
    return "".join(out)


def _format(value: _Value, verb: str, flags: str, width: int | None, precision: int | None) -> str:
    spec = flags + (str(width) if width is not None else "") + (f".{precision}" if precision is not None else "")
    if isinstance(value, float) and verb in "vgGeEfF":
        if math.isnan(value) or math.isinf(value):
            text = _go_special(value)
            if "+" in flags and text == "NaN":
                text = "+NaN"
            elif " " in flags and "+" not in flags and not text.startswith("-"):
                text = " " + text.lstrip("+")
            return _pad(text, flags.replace("0", ""), width)
        if verb in "vgG" and precision is None:
            text = go_float(value, upper=verb == "G")
            if not text.startswith("-") and ("+" in flags or " " in flags):
                text = ("+" if "+" in flags else " ") + text
            return _pad(text, flags, width)
        return ("%" + spec + ("g" if verb == "v" else verb)) % value
    if isinstance(value, int) and not isinstance(value, bool) and verb in "vdxXobc":
        if verb == "c":
            return _pad(chr(value) if 0 <= value <= 0x10FFFF else "\ufffd", flags, width)
        if verb == "b":
            return _pad(format(value, "b"), flags, width)
        return ("%" + spec + ("d" if verb == "v" else verb)) % value
    if isinstance(value, str) and verb in "vsqxX":
        if verb == "q":
            return _pad(_go_quote(value), flags, width)
        if verb in "xX":
            data = value.encode()[: precision if precision is not None else None].hex()
            return _pad(data.upper() if verb == "X" else data, flags, width)
        return ("%" + spec + "s") % value
    if isinstance(value, bool) and verb in "vt":
        return _pad("true" if value else "false", flags, width)
    if isinstance(value, Mapping) and verb in "vs":
        return _pad(_go_print(value), flags, width)
    return f"%!{verb}({_go_type(value)}={_go_print(value)})"


def _pad(text: str, flags: str, width: int | None) -> str:
    if width is None or len(text) >= width:
        return text
    if "-" in flags:
        return text.ljust(width)
    if "0" in flags and text[:1] in ("+", "-", " ") and text[1:2].isdigit():
        return text[0] + text[1:].rjust(width - 1, "0")
    if "0" in flags and text[:1].isdigit():
        return text.rjust(width, "0")
    return text.rjust(width)


# --- Fingerprints ----------------------------------------------------------------------------------------------------

_FNV_OFFSET = 0xCBF29CE484222325
_FNV_PRIME = 0x100000001B3
_SEPARATOR = 0xFF  # a byte that UTF-8 never holds
_MASK = (1 << 64) - 1


def fingerprint(labels: Mapping[str, str]) -> str:
    """A label set's fingerprint as Prometheus' common model computes it (and Alertmanager shows it): FNV-1a 64 over
    the labels sorted by name, each as its name, a 0xFF byte, its value and a 0xFF byte; 16 lowercase hex digits.
    The empty set hashes to FNV's offset basis (cbf29ce484222325)."""
    h = _FNV_OFFSET
    for name in sorted(labels):
        for part in (name, labels[name]):
            for byte in part.encode():
                h = ((h ^ byte) * _FNV_PRIME) & _MASK
            h = ((h ^ _SEPARATOR) * _FNV_PRIME) & _MASK
    return f"{h:016x}"


# --- SLA -------------------------------------------------------------------------------------------------------------

SLIS = ("latencyP99", "errorRate", "availability")
"""The service levels of an sla rule, in the order of its queries (also the instances' label ``sli``)."""
REQUESTS = f"{measure.REQUESTS}_total"
BUCKETS = f"{measure.LATENCY}_bucket"


def promql_string(text: str) -> str:
    """``text`` as a PromQL string literal."""
    # JSON's escapes (\" \\ \n \uXXXX) are a subset of PromQL's, as providers.prometheus.label_value relies on
    # too (not imported: a pure module does not load the HTTP client).
    return json.dumps(text, ensure_ascii=False)


def promql_range(window: str) -> str:
    """A Duration (``5m``, ``1h30m``, ``1.5m``, ``250ms``) as a PromQL range: its largest whole unit (``90m``,
    ``90s``, ``250ms``). ValueError when it is not a duration or is below 1ms."""
    milliseconds = round(duration_seconds(window) * 1000)
    if milliseconds <= 0:
        raise ValueError(f"a window must be at least 1ms, got {window!r}")
    for unit, size in (("h", 3_600_000), ("m", 60_000), ("s", 1000)):
        if milliseconds % size == 0:
            return f"{milliseconds // size}{unit}"
    return f"{milliseconds}ms"


def sla_queries(
    namespace: str,
    deployment: str,
    window: str,
    latency_p99: float | None,
    error_rate: float | None,
    availability: float | None,
) -> list[tuple[str, str]]:
    """(sli, PromQL) for each objective set, in the order of ``SLIS``: each query returns one series, without
    labels, with the measured level, only while the deployment MISSES the objective over the window; no series
    while it meets it.

    Over the model servers' series of the deployment (the target labels ``namespace`` and ``deployment`` Prometheus
    adds from the Pod labels, as tests/cluster/monitoring.sh relabels them):

    - latencyP99: the 99th percentile of request latency in seconds (``histogram_quantile`` over the histogram's
      buckets summed across Pods) ``> latency_p99``. Above the highest finite bucket it reads as that bucket's
      bound, as Prometheus' histogram_quantile does.
    - errorRate: the share of requests not answered 2xx ``> error_rate``.
    - availability: 1 - the share of requests answered 5xx ``< availability``.

    No traffic in the window gives no series, never a missed objective: the rates are 0, a share is 0/0 = NaN and
    histogram_quantile of empty buckets is NaN, and a PromQL comparison without ``bool`` drops a sample for which
    it is false, which it is for NaN. No series of errors at all (a deployment that never failed) also gives no
    series: the objective is met. ValueError for a window that is not a positive duration."""
    selected = f"namespace={promql_string(namespace)},deployment={promql_string(label_value(deployment))}"
    span = promql_range(window)
    total = f"sum(rate({REQUESTS}{{{selected}}}[{span}]))"
    queries: list[tuple[str, str]] = []
    if latency_p99 is not None:
        quantile = measure.QUANTILES["latencyP99"]
        buckets = f"sum by (le) (rate({BUCKETS}{{{selected}}}[{span}]))"
        queries.append(("latencyP99", f"histogram_quantile({quantile}, {buckets}) > {_number(latency_p99)}"))
    if error_rate is not None:
        errors = f'sum(rate({REQUESTS}{{{selected},code!~"2.."}}[{span}]))'
        queries.append(("errorRate", f"{errors} / {total} > {_number(error_rate)}"))
    if availability is not None:
        failures = f'sum(rate({REQUESTS}{{{selected},code=~"5.."}}[{span}]))'
        queries.append(("availability", f"1 - ({failures} / {total}) < {_number(availability)}"))
    return queries


def sla_value_labels(namespace: str, deployment: str, sli: str) -> dict[str, str]:
    """The labels of an sla rule's instance for one service level (its query's series has none)."""
    return {"sli": sli, "deployment": deployment, "namespace": namespace}


def _number(value: float) -> str:
    # repr is the shortest form that reads back as the same float: 0.25, 1e-05, 0.999.
    return repr(float(value))
