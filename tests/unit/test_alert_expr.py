"""An AlertRule's expressions: PromQL checked as Prometheus' parser would, CEL over our resources, annotation
templates expanded as Prometheus expands them, label fingerprints as Alertmanager computes them, and SLAs compiled
to PromQL that returns a level only while it is missed."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import generate_latest

from mlops_operator.logic.alert_expr import (
    BUCKETS,
    REQUESTS,
    SLIS,
    CelError,
    CelObject,
    check_promql,
    compile_cel,
    expand,
    fingerprint,
    go_float,
    promql_range,
    sla_queries,
    sla_value_labels,
)
from mlops_operator.server.metrics import ServerMetrics

# --- PromQL ----------------------------------------------------------------------------------------------------------

ERROR_SHARE = (
    'sum by (deployment) (rate(mlops_server_requests_total{code=~"5.."}[1m])) '
    "/ sum by (deployment) (rate(mlops_server_requests_total[1m])) > 0.05"
)


@pytest.mark.parametrize(
    "expr",
    [
        ERROR_SHARE,
        "up == 0",
        "histogram_quantile(0.99, sum by (le) (rate(mlops_server_request_duration_seconds_bucket[5m]))) > 0.25",
        'absent(up{job="model-servers"})',
        "sum(rate(x[5m])) by (le) unless on () vector(0)",
    ],
)
def test_valid_promql_passes(expr: str) -> None:
    assert check_promql(expr) is None


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ("sum(rate(x[1m])", "unclosed left parenthesis"),
        ("foo{", "unexpected end of input inside braces"),
        ("rate(x)", "expected type matrix in call to function 'rate', got vector"),
        ("nosuch(x)", "unknown function with name 'nosuch'"),
        ("x[1q]", "bad number or duration syntax: 1q"),
        ("", "no expression found in input"),
    ],
)
def test_invalid_promql_gives_the_parsers_message(expr: str, message: str) -> None:
    assert check_promql(expr) == message


# --- CEL -------------------------------------------------------------------------------------------------------------


def monitor(drifted_share: float | None = 0.5, **status: Any) -> dict[str, Any]:
    """A DriftMonitor as the API server returns it."""
    body: dict[str, Any] = {"phase": "Drifted", **status}
    if drifted_share is not None:
        body["driftedShare"] = drifted_share
    return {
        "apiVersion": "mlops.io/v1alpha1",
        "kind": "DriftMonitor",
        "metadata": {"name": "fraud", "namespace": "risk", "labels": {"team": "fraud"}},
        "spec": {"deployment": "fraud"},
        "status": body,
    }


@pytest.mark.parametrize(
    ("expr", "obj", "holds"),
    [
        ("self.status.driftedShare > 0.3", monitor(0.5), True),
        ("self.status.driftedShare > 0.3", monitor(0.2), False),
        # JSON has one kind of number: 1 and 0 arrive as Python ints and still compare with a double.
        ("self.status.driftedShare > 0.3", monitor(1), True),
        ("self.status.driftedShare > 0.3", monitor(0), False),
        ("self.status.driftedShare == 1", monitor(1.0), True),
        ("has(self.status.phase)", monitor(), True),
        ("has(self.status.reason)", monitor(), False),
        ("self.status.conditions.exists(c, c.type == 'Ready' && c.status == 'False')", monitor(conditions=[]), False),
        (
            "self.status.conditions.exists(c, c.type == 'Ready' && c.status == 'False')",
            monitor(conditions=[{"type": "Drifted", "status": "True"}, {"type": "Ready", "status": "False"}]),
            True,
        ),
        ("self.metadata.labels['team'] == 'fraud'", monitor(), True),
        ("self.metadata.labels.team != 'fraud'", monitor(), False),
        # CEL's || and && absorb an error when the other side decides: a missing field need not be guarded twice.
        ("self.status.driftedShare > 0.3 || self.status.missing", monitor(0.5), True),
        ("!has(self.status.driftedShare) || self.status.driftedShare > 0.3", monitor(None), True),
    ],
)
def test_cel_over_a_resource(expr: str, obj: dict[str, Any], holds: bool) -> None:
    assert compile_cel(expr).holds(obj) == (holds, None)


def test_a_missing_field_does_not_hold_and_says_which() -> None:
    assert compile_cel("self.status.driftedShare > 0.3").holds(monitor(None)) == (
        False,
        "no such key: driftedShare",
    )
    assert compile_cel("self.metadata.labels['owner'] == 'x'").holds(monitor()) == (False, "no such key: owner")
    assert compile_cel("self.status.conditions[3].type == 'Ready'").holds(monitor(conditions=[]))[0] is False


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ("self.status.phase", "the expression gave string, not a bool"),
        ("self.status.driftedShare", "the expression gave double, not a bool"),
        ("self.metadata.labels", "the expression gave map, not a bool"),
        ("self.status.phase > 1", "No such overload"),
        ("nosuch(self)", "nosuch"),
        ("other.status.phase == 'x'", "other"),
    ],
)
def test_a_non_bool_result_or_an_evaluation_error_does_not_hold(expr: str, message: str) -> None:
    held, why = compile_cel(expr).holds(monitor())
    assert held is False and why is not None and message in why


def test_a_syntax_error_is_a_cel_error_with_the_position() -> None:
    with pytest.raises(CelError) as raised:
        compile_cel("self.status.driftedShare >")
    assert str(raised.value).startswith("line 1, column 27: Syntax error")
    assert "Failed to parse expression" not in str(raised.value)


def test_compilation_is_cached_by_text() -> None:
    assert compile_cel("self.status.driftedShare > 0.4") is compile_cel("self.status.driftedShare > 0.4")


def test_managed_fields_are_not_visible_and_the_object_is_not_changed() -> None:
    obj = monitor()
    obj["metadata"]["managedFields"] = [{"manager": "kubectl", "fieldsV1": {"f:spec": {}}}]
    assert compile_cel("has(self.metadata.managedFields)").holds(obj) == (False, None)
    assert compile_cel("self.metadata.name == 'fraud'").holds(obj) == (True, None)
    assert "managedFields" in obj["metadata"]


# --- Templates -------------------------------------------------------------------------------------------------------

LABELS = {"alertname": "HighErrorRate", "deployment": "fraud", "namespace": "risk"}


@pytest.mark.parametrize(
    ("template", "value", "expanded"),
    [
        ("{{ $value }}", 0.3, "0.3"),
        ("{{ $value }}", 5.0, "5"),
        ("{{ $value }}", 1e-05, "1e-05"),
        ("{{ $value }}", 0.0001, "0.0001"),
        ("{{ $value }}", 123456.5, "123456.5"),
        ("{{ $value }}", 1234567.0, "1.234567e+06"),
        ("{{ $value }}", math.nan, "NaN"),
        ("{{ $value }}", -math.inf, "-Inf"),
        ("{{ .Value }}", 0.25, "0.25"),
        ("{{ $labels.deployment }} in {{ .Labels.namespace }}", 1.0, "fraud in risk"),
        ("[{{ $labels.missing }}]", 1.0, "[]"),
        ("{{ $labels }}", 1.0, "map[alertname:HighErrorRate deployment:fraud namespace:risk]"),
        ("{{ $value | humanize }}", 1234567.0, "1.235M"),
        ("{{ $value | humanize }}", 0.0012, "1.2m"),
        ("{{ $value | humanize }}", 0.0, "0"),
        ("{{ $value | humanize }}", -1500.0, "-1.5k"),
        ("{{ humanize $value }}", 999.0, "999"),
        ("{{ $value | humanize1024 }}", 1536.0, "1.5ki"),
        ("{{ $value | humanize1024 }}", 0.5, "0.5"),
        ("{{ $value | humanizePercentage }}", 0.1234, "12.34%"),
        ("{{ $value | humanizePercentage }}", 1.0, "100%"),
        ("{{ $value | humanizeDuration }}", 90.0, "1m 30s"),
        ("{{ $value | humanizeDuration }}", 0.5, "500ms"),
        ("{{ $value | humanizeDuration }}", 1.5, "1.5s"),
        ("{{ $value | humanizeDuration }}", 93784.0, "1d 2h 3m 4s"),
        ("{{ $value | humanizeDuration }}", 3600.0, "1h 0m 0s"),
        ("{{ $value | humanizeDuration }}", 0.0, "0s"),
        ('{{ printf "%.2f" $value }}', 0.12345, "0.12"),
        ('{{ $value | printf "%.2f" }}', 0.12345, "0.12"),
        ('{{ printf "%.1f%%" (humanizePercentage $value | printf "%s") }}', 0.5, "%!f(string=50%)%"),
        ('{{ printf "%s: %d requests" $labels.deployment 3 }}', 1.0, "fraud: 3 requests"),
        ('{{ printf "%d" $value }}', 0.5, "%!d(float64=0.5)"),
        ('{{ printf "%v and %v" $value }}', 0.5, "0.5 and %!v(MISSING)"),
        ('{{ printf "%v" $value 7 }}', 0.5, "0.5%!(EXTRA int=7)"),
        ("{{ $value }}", "Ready is False: no endpoints", "Ready is False: no endpoints"),
        ("{{ $value | humanize }}", "2500", "2.5k"),
        ("{{ $value }}", None, ""),
        ("a  {{- $value -}}  b", 2.0, "a2b"),
        ("a {{/* a comment */}}b", 2.0, "a b"),
        ('{{ "quoted }} braces" }} {{ `raw` }} {{ 1.5 }} {{ 16 }} {{ true }}', 1.0, "quoted }} braces raw 1.5 16 true"),
        ("plain text, } and {", 1.0, "plain text, } and {"),
    ],
)
def test_templates_expand_as_prometheus_does(template: str, value: float | str | None, expanded: str) -> None:
    assert expand(template, LABELS, value) == expanded


def test_printf_flags_width_and_precision_as_go() -> None:
    assert expand(
        '{{ printf "%6.2f|%-6.1e|%+g|%05.1f|%x|%q" $value $value $value $value 255 "a\\n" }}', {}, 3.14159
    ) == ('  3.14|3.1e+00|+3.14159|003.1|ff|"a\\n"')


@pytest.mark.parametrize(
    ("template", "value", "error"),
    [
        (
            "{{ $value | humanize }}",
            "Failed",
            'error calling humanize: strconv.ParseFloat: parsing "Failed": invalid syntax',
        ),
        ("{{ $value | humanize }}", " 12", 'strconv.ParseFloat: parsing " 12": invalid syntax'),
        ("{{ $value | toUpper }}", 1.0, 'function "toUpper" not defined'),
        ("{{ if gt $value 1.0 }}high{{ end }}", 2.0, '"if" is not supported'),
        ("{{ $externalLabels.cluster }}", 1.0, 'undefined variable "$externalLabels"'),
        ('{{ "open }}', 1.0, "unterminated quoted string"),
        ("{{ }}", 1.0, "missing value for command"),
        ("{{ $value 1 }}", 1.0, "can't give argument to non-function $value"),
        ("{{ humanize $value 1 }}", 1.0, "wrong number of args for humanize: want 1 got 2"),
        ("{{ $value.field }}", 1.0, "can't evaluate field field in type float64"),
        ("{{ .Annotations }}", 1.0, "can't evaluate field Annotations"),
        ("{{ $labels | humanize }}", 1.0, "can't convert map[string]string to float"),
        ("{{ (humanize $value }}", 1.0, "unclosed left parenthesis"),
        ("{{ $x := 1 }}", 1.0, "variable declarations are not supported"),
        ("{{ . }}", 1.0, "printing the whole data"),
        ("first line\n{{ nope }}", 1.0, "line 2: function"),
        ("{{/* never closed", 1.0, "unclosed comment"),
        ('{{ "\\q" }}', 1.0, "unknown escape sequence"),
    ],
)
def test_a_template_that_fails_is_an_error_whole(template: str, value: float | str, error: str) -> None:
    result = expand("before " + template + " after", LABELS, value)
    assert result.startswith("<error expanding template: ") and result.endswith(">")
    assert error in result
    assert "before" not in result


def test_an_unclosed_action_is_an_error() -> None:
    assert expand("{{ $value", LABELS, 1.0) == "<error expanding template: line 1: unclosed action>"


@given(st.text(alphabet=st.sampled_from(list('{}$.|()"`-/* \n%abValueLbhumanizeprintf0123456789')), max_size=80))
def test_expand_never_raises(template: str) -> None:
    assert isinstance(expand(template, LABELS, 0.5), str)
    assert isinstance(expand(template, LABELS, "text"), str)


@pytest.mark.parametrize(
    ("value", "text"),
    [(0.3, "0.3"), (100000.0, "100000"), (999999.5, "999999.5"), (1e6, "1e+06"), (-2.5e-7, "-2.5e-07"), (-0.0, "-0")],
)
def test_floats_print_as_go_prints_a_float64(value: float, text: str) -> None:
    assert go_float(value) == text


# --- Fingerprints ----------------------------------------------------------------------------------------------------


def reference_fingerprint(labels: dict[str, str]) -> str:
    """FNV-1a 64, written out as the algorithm reads, over name 0xFF value 0xFF per label sorted by name."""
    data = b"".join(name.encode() + b"\xff" + labels[name].encode() + b"\xff" for name in sorted(labels))
    h = 14695981039346656037
    for byte in data:
        h ^= byte
        h = (h * 1099511628211) % 2**64
    return format(h, "016x")


def test_the_empty_label_set_hashes_to_the_offset_basis() -> None:
    assert fingerprint({}) == "cbf29ce484222325"


def test_fingerprints_match_prometheus_common_model() -> None:
    # prometheus/common model: labelSetToFingerprint of this set is 5799056148416392346.
    labels = {"name": "garland, briggs", "fear": "love is not enough"}
    assert int(fingerprint(labels), 16) == 5799056148416392346 and fingerprint(labels) == "507a62d79ee76c9a"


@pytest.mark.parametrize(
    "labels",
    [{"a": "b"}, LABELS, {"sli": "errorRate", "deployment": "fraud", "namespace": "risk"}, {"ü": "naïve ✓", "x": ""}],
)
def test_fingerprints_are_stable_and_ignore_order(labels: dict[str, str]) -> None:
    reversed_order = dict(reversed(list(labels.items())))
    assert fingerprint(labels) == fingerprint(reversed_order) == reference_fingerprint(labels)
    assert len(fingerprint(labels)) == 16 and fingerprint(labels) == fingerprint(labels).lower()


def test_the_separator_keeps_names_and_values_apart() -> None:
    assert fingerprint({"a": "bc"}) != fingerprint({"ab": "c"})
    assert fingerprint({"a": ""}) != fingerprint({})


# --- SLA -------------------------------------------------------------------------------------------------------------


def test_sla_latency_query_returns_the_p99_only_when_it_is_missed() -> None:
    assert sla_queries("ns", "d", "5m", 0.25, None, None) == [
        (
            "latencyP99",
            "histogram_quantile(0.99, sum by (le) "
            '(rate(mlops_server_request_duration_seconds_bucket{namespace="ns",deployment="d"}[5m]))) > 0.25',
        )
    ]


def test_sla_error_rate_and_availability_queries() -> None:
    queries = dict(sla_queries("risk", "fraud", "10m", None, 0.01, 0.999))
    selected = 'namespace="risk",deployment="fraud"'
    total = f"sum(rate(mlops_server_requests_total{{{selected}}}[10m]))"
    assert queries == {
        "errorRate": f'sum(rate(mlops_server_requests_total{{{selected},code!~"2.."}}[10m])) / {total} > 0.01',
        "availability": (
            f'1 - (sum(rate(mlops_server_requests_total{{{selected},code=~"5.."}}[10m])) / {total}) < 0.999'
        ),
    }


@pytest.mark.parametrize(
    ("latency", "errors", "availability", "slis"),
    [
        (0.25, 0.05, 0.999, list(SLIS)),
        (None, 0.0, None, ["errorRate"]),
        (None, None, 1.0, ["availability"]),
        (None, None, None, []),
    ],
)
def test_sla_gives_a_valid_query_per_objective_set(
    latency: float | None, errors: float | None, availability: float | None, slis: list[str]
) -> None:
    queries = sla_queries('we"ird\\ns', "fraud", "1h30m", latency, errors, availability)
    assert [name for name, _ in queries] == slis
    for _, query in queries:
        assert check_promql(query) is None, query
        assert 'namespace="we\\"ird\\\\ns"' in query and "[90m]" in query


def test_sla_reads_the_series_our_servers_export() -> None:
    metrics = ServerMetrics("fraud", "1.0.0")
    metrics.count(200)
    metrics.observe_latency(0.01)
    page = generate_latest(metrics.registry).decode()
    assert f"{REQUESTS}{{" in page and f"{BUCKETS}{{" in page


@pytest.mark.parametrize(
    ("window", "span"),
    [("5m", "5m"), ("1h", "1h"), ("1h30m", "90m"), ("90s", "90s"), ("1.5m", "90s"), ("250ms", "250ms")],
)
def test_windows_become_promql_ranges(window: str, span: str) -> None:
    assert promql_range(window) == span


@pytest.mark.parametrize("window", ["0s", "5 minutes"])
def test_a_window_that_is_not_a_positive_duration_is_refused(window: str) -> None:
    with pytest.raises(ValueError):
        sla_queries("ns", "d", window, 1.0, None, None)


def test_sla_instances_are_labelled_by_sli() -> None:
    assert sla_value_labels("risk", "fraud", "errorRate") == {
        "sli": "errorRate",
        "deployment": "fraud",
        "namespace": "risk",
    }


def test_a_converted_object_gives_the_same_answers_as_the_plain_one() -> None:
    obj = {"metadata": {"name": "m", "managedFields": [{"manager": "x"}]},
           "status": {"driftedShare": 1, "conditions": [{"type": "Ready", "status": "False"}]}}  # fmt: skip
    converted = CelObject(obj)
    for expr in ("self.status.driftedShare > 0.3", "self.status.phase == 'x'", "has(self.metadata.managedFields)",
                 "self.status.conditions.exists(c, c.type == 'Ready' && c.status == 'False')"):  # fmt: skip
        program = compile_cel(expr)
        assert program.holds(converted) == program.holds(obj), expr  # fmt: skip
    assert compile_cel("self.status.driftedShare > 0.3").holds(converted) == (True, None)
    assert compile_cel("has(self.metadata.managedFields)").holds(converted) == (False, None)
