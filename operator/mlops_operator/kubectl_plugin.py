"""kubectl-mlops: the ``kubectl mlops`` plugin for CanaryRollouts.

``kubectl mlops status <rollout> [--watch]`` explains where a rollout is and why; ``promote``, ``abort``, ``retry``
and ``resume`` ask the operator for a verb by annotating the rollout (the operator acts on it and clears it);
``history`` lists its runs. The rendering is pure (a rollout body in, text out); ``main`` does the I/O.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TextIO

from pydantic import ValidationError

from mlops_operator import GROUP, VERSION
from mlops_operator.api.canaryrollout import CanaryRolloutSpec
from mlops_operator.logic.rollout import ABORT, PROMOTE, RESUME, RETRY, stages

PROG = "kubectl-mlops"
FIELD_MANAGER = "kubectl-mlops"
KIND, PLURAL = "CanaryRollout", "canaryrollouts"
# The resource names kubectl itself accepts for the kind, plus the short form the docs use.
TYPE_NAMES = frozenset(
    {"canary", "canaryrollout", "canaryrollouts", "canaryrollout.mlops.io", "canaryrollouts.mlops.io"}
)
VERBS: dict[str, str] = {"promote": PROMOTE, "abort": ABORT, "retry": RETRY, "resume": RESUME}
POLL_SECONDS = 1.0

Body = dict[str, Any]


class PluginError(Exception):
    """A failure to report as one line on stderr (exit 1): a bad argument, a missing object, an API error."""


class NotFound(PluginError):
    """The rollout does not exist (or its kind is not served)."""


# --- pure: a rollout body in, text out -------------------------------------------------------------------------------


def parse_target(text: str) -> str:
    """The rollout's name from ``<name>``, ``canary/<name>`` or ``canaryrollout/<name>`` (also the plural and the
    ``.mlops.io`` forms kubectl accepts); raises PluginError for another kind or an empty name."""
    kind, slash, name = text.rpartition("/")
    if slash and kind.lower() not in TYPE_NAMES:
        raise PluginError(f"{text}: not a CanaryRollout (give <name>, canary/<name> or canaryrollout/<name>)")
    if not name:
        raise PluginError(f"{text!r}: no rollout name")
    return name


def table(
    rows: Sequence[Sequence[str]], headers: Sequence[str] | None = None, width: int | None = None, indent: int = 0
) -> str:
    """Left-aligned columns two spaces apart (columns of numbers right-aligned), without a trailing newline.
    With ``width``, the last column (the free text: a message, a reason) is cut to make lines fit, ending in
    ``...``; it never gets narrower than its header or 10 characters, so a very narrow terminal still wraps."""
    grid = [[_cell(c) for c in row] for row in ([headers] if headers else []) + list(rows)]
    if not grid:
        return ""
    columns = max(len(r) for r in grid)
    grid = [r + [""] * (columns - len(r)) for r in grid]
    sizes = [max(len(r[i]) for r in grid) for i in range(columns)]
    body = grid[1:] if headers else grid
    numeric = [any(r[i] != "-" for r in body) and all(_numeric(r[i]) for r in body) for i in range(columns)]
    if width is not None:
        fixed = indent + sum(sizes[:-1]) + 2 * (columns - 1)
        floor = max(10, len(headers[-1]) if headers else 0)
        sizes[-1] = min(sizes[-1], max(floor, width - fixed))
    lines = []
    for row in grid:
        cells = []
        for i, cell in enumerate(row):
            if len(cell) > sizes[i]:
                cell = cell[: max(0, sizes[i] - 3)] + "..."
            cells.append(cell.rjust(sizes[i]) if numeric[i] else cell.ljust(sizes[i]))
        lines.append(" " * indent + "  ".join(cells).rstrip())
    return "\n".join(lines)


def render_status(body: Body, width: int | None = None) -> str:
    """The report of ``kubectl mlops status``: who, where, why, the steps (the spec's, ramp expanded) marked done,
    current or pending, the metrics' last values and verdicts, the conditions. ``width`` cuts long messages in the
    tables to fit a terminal (None: never cut). Tolerates a rollout the operator has not seen yet (no status)."""
    meta, spec, status = body.get("metadata") or {}, body.get("spec") or {}, body.get("status") or {}
    run: Body | None = status.get("run")
    candidate, stable = status.get("candidate"), status.get("stable")
    fields = [
        ("Name", f"canaryrollout/{meta.get('name', '?')}"),
        ("Namespace", meta.get("namespace") or "-"),
        ("Deployment", (spec.get("deploymentRef") or {}).get("name") or "-"),
        ("Phase", status.get("phase") or "(not reconciled yet)"),
        ("Candidate", f"{candidate or '-'} (stable: {stable or '-'})"),
        ("Weights", _weights(status)),
        ("Message", status.get("message") or "-"),
    ]
    if run:
        fields.append(("Run", _run_line(run)))
        if run.get("held"):
            fields.append(("Held", str(run["held"])))
    observed, generation = status.get("observedGeneration"), meta.get("generation")
    if observed is not None and generation is not None and observed != generation:
        fields.append(("Note", f"spec generation {generation} not yet seen by the operator (it saw {observed})"))
    out = [table([(f"{k}:", v) for k, v in fields])]  # never cut: the message is the point

    out += ["", f"Steps (promotion: {spec.get('promotion', 'auto')}):", _steps(spec, status, width)]

    metrics = status.get("metrics") or []
    out += ["", "Metrics:"]
    if metrics:
        rows = [
            (
                m.get("name", "?") + (" (dry run)" if m.get("dryRun") else ""),
                _number(m.get("canary")),
                _number(m.get("stable")),
                m.get("verdict") or "-",
                str(m.get("passed", 0)),
                str(m.get("failed", 0)),
                str(m.get("inconclusive", 0)),
                str(m.get("noData", 0)),
                str(m.get("errors", 0)),
                m.get("message") or "",
            )
            for m in metrics
        ]
        headers = ["NAME", "CANARY", "STABLE", "VERDICT", "PASS", "FAIL", "INCONC", "NODATA", "ERR", "MESSAGE"]
        out.append(table(rows, headers, width, indent=2))
    else:
        out.append("  none measured yet")

    conditions = status.get("conditions") or []
    out += ["", "Conditions:"]
    if conditions:
        condition_rows = [
            (c.get("type", "?"), c.get("status", "?"), c.get("reason") or "-", c.get("lastTransitionTime") or "-")
            for c in conditions
        ]
        out.append(table(condition_rows, ("TYPE", "STATUS", "REASON", "SINCE"), width, indent=2))
    else:
        out.append("  none")
    return "\n".join(out) + "\n"


def render_history(body: Body, width: int | None = None) -> str:
    """The table of ``kubectl mlops history``: the ended runs of status.history, oldest first, then the current (or
    last) run, whose RESULT is its phase while it is in progress. ``width`` as in ``render_status``."""
    status = body.get("status") or {}
    history: list[Body] = list(status.get("history") or [])
    rows = [_history_row(h, h.get("result") or "-") for h in history]
    run: Body | None = status.get("run")
    # The operator archives a run into history only when the next one starts; skip it if it is there already.
    if run and not any(
        (h.get("candidate"), h.get("startedAt")) == (run.get("candidate"), run.get("startedAt")) for h in history
    ):
        result = run.get("result") if run.get("endedAt") else status.get("phase") or run.get("result")
        rows.append(_history_row(run, result or "-"))
    if not rows:
        return f"canaryrollout/{(body.get('metadata') or {}).get('name', '?')}: no runs yet\n"
    headers = ("CANDIDATE", "STABLE", "RESULT", "STARTED", "ENDED", "REASON")
    return table(rows, headers, width) + "\n"


def verb_annotation(verb: str, body: Body) -> tuple[str, str]:
    """The annotation (key, value) that asks the operator for ``verb`` on this rollout: promote and abort name the
    current candidate (status.candidate), retry the last run's (status.run.candidate), resume the current step
    (status.currentStep). Raises PluginError when the rollout has nothing to act on. Whether the operator then
    acts is its decision: it ignores a verb that does not fit the run (with a VerbIgnored event)."""
    if verb not in VERBS:
        raise PluginError(f"unknown verb {verb!r} (one of {', '.join(VERBS)})")
    key = VERBS[verb]
    status = body.get("status") or {}
    where = f"canaryrollout/{(body.get('metadata') or {}).get('name', '?')}"
    phase = status.get("phase") or "not reconciled yet"
    if verb == "resume":
        step = status.get("currentStep")
        if step is None:
            raise PluginError(f"{where}: nothing to resume: no run in progress (phase {phase})")
        return key, str(step)
    if verb == "retry":
        candidate = (status.get("run") or {}).get("candidate")
        if not candidate:
            raise PluginError(f"{where}: nothing to retry: no run yet (phase {phase})")
        return key, str(candidate)
    candidate = status.get("candidate")
    if not candidate:
        raise PluginError(f"{where}: no candidate to {verb} (phase {phase})")
    return key, str(candidate)


def _cell(value: object) -> str:
    # One line per row: a multi-line message would break the columns.
    return " ".join(str(value).splitlines()).replace("\t", " ") if value is not None else "-"


def _numeric(cell: str) -> bool:
    if cell == "-":
        return True
    try:
        float(cell)
    except ValueError:
        return False
    return True


def _number(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, int | float) and not isinstance(value, bool):
        return f"{value:.4g}"
    return str(value)


def _weights(status: Body) -> str:
    asked, applied = status.get("weights"), status.get("applied")

    def split(w: Body | None) -> str:
        return f"canary {w.get('canary', 0)}% / stable {w.get('stable', 100)}%" if w else "-"

    return f"asked {split(asked)}; applied {split(applied)}"


def _run_line(run: Body) -> str:
    line = (
        f"started {run.get('startedAt', '-')}, {run.get('failed', 0)} failed and {run.get('inconclusive', 0)} "
        "inconclusive measurements"
    )
    if run.get("result"):
        cause = f" ({run['cause']})" if run.get("cause") else ""
        ended = f" at {run['endedAt']}" if run.get("endedAt") else " (in progress)"
        line += f"; {run['result']}{cause}{ended}"
    return line


@dataclass(frozen=True)
class _Line:
    marker: str
    label: str
    text: str
    state: str


def _steps(spec: Body, status: Body, width: int | None) -> str:
    try:
        plan = stages(CanaryRolloutSpec.model_validate(spec))
    except (ValidationError, AssertionError, ValueError) as exc:
        return f"  (the spec's steps cannot be read: {_cell(exc)[:200]})"
    run: Body | None = status.get("run")
    result = run.get("result") if run else None
    step = status.get("currentStep")
    if step is None and run:
        step = run.get("step", 0)
    lines = []
    for i, stage in enumerate(plan):
        text = stage.describe() + (f" of {', '.join(stage.metrics)}" if stage.metrics else "")
        lines.append(_step_line(i, text, _state(i, step, run, result, stage.kind, stage.count)))
    manual = spec.get("promotion") == "manual"
    if result == "Promoted":
        promoted = "done" if status.get("phase") == "Promoted" else "current: waiting for the deployment"
    elif result is not None:
        promoted = "not run"
    elif run and step is not None and step >= len(plan):
        promoted = "current: waiting for kubectl mlops promote" if manual else "current"
    else:
        promoted = "pending"
    lines.append(_step_line(None, f"promote ({'manual' if manual else 'auto'})", promoted))
    digits = len(str(max(len(plan) - 1, 0)))
    rows = [(f"{x.marker or ' '} {x.label:>{digits + 1}}", x.text, x.state) for x in lines]
    return table(rows, width=width, indent=2)


def _state(i: int, step: int | None, run: Body | None, result: str | None, kind: str, count: int | None) -> str:
    if run is None or step is None:
        return "pending"
    if i < step:
        return "done"
    if i > step:
        return "pending" if result is None else "not run"
    if result in ("RolledBack", "Aborted"):
        return f"stopped: {result}"
    if result == "Promoted":
        return "skipped: promoted"
    if run.get("held"):
        return "current: held"
    if kind == "analysis":
        return f"current: measurement {min(int(run.get('measurements', 0)) + 1, count or 1)} of {count or 1}"
    return "current"


def _step_line(index: int | None, text: str, state: str) -> _Line:
    marker = ">" if state.startswith("current") else "x" if state.startswith("stopped") else ""
    return _Line(marker, f"{index}." if index is not None else "-", text, state)


def _history_row(entry: Body, result: str) -> tuple[str, ...]:
    return (
        entry.get("candidate") or "-",
        entry.get("stable") or "-",
        result,
        entry.get("startedAt") or "-",
        entry.get("endedAt") or "-",
        entry.get("reason") or "",
    )


# --- I/O -------------------------------------------------------------------------------------------------------------


class Cluster(Protocol):
    """What the commands need of the API server (the tests give a fake)."""

    def get(self, name: str) -> Body:
        """The rollout's body; raises PluginError when it does not exist or cannot be read."""
        ...

    def annotate(self, name: str, key: str, value: str) -> None:
        """Merge-patch one annotation onto the rollout."""
        ...


class _Lightkube:
    """The API server through lightkube, from a kubeconfig (or the in-cluster config)."""

    def __init__(self, kubeconfig: str | None, context: str | None, namespace: str | None) -> None:
        # Imported here so that rendering and the tests need no API client configured.
        from lightkube import Client, ConfigError, KubeConfig
        from lightkube.generic_resource import create_namespaced_resource

        try:
            config = _load_config(KubeConfig, kubeconfig).get(context_name=context)
            if config is None:
                raise ConfigError("no context")
            self.namespace = namespace or config.namespace
            self.client = Client(config, namespace=self.namespace, field_manager=FIELD_MANAGER)
        except ConfigError as exc:
            raise PluginError(f"no usable kubeconfig: {exc}") from exc
        except (OSError, KeyError, TypeError, ValueError) as exc:
            raise PluginError(f"cannot read the kubeconfig: {exc!r}") from exc
        self.resource = create_namespaced_resource(GROUP, VERSION, KIND, PLURAL)

    def get(self, name: str) -> Body:
        obj = self._call(name, lambda: self.client.get(self.resource, name, namespace=self.namespace))
        return dict(obj.to_dict())

    def annotate(self, name: str, key: str, value: str) -> None:
        from lightkube.types import PatchType

        patch = {"metadata": {"annotations": {key: value}}}
        self._call(
            name,
            lambda: self.client.patch(self.resource, name, patch, namespace=self.namespace, patch_type=PatchType.MERGE),
        )

    def _call(self, name: str, request: Callable[[], Any]) -> Any:
        import httpx2
        from lightkube import ApiError

        try:
            return request()
        except ApiError as exc:
            code, details = exc.status.code, exc.status.details
            if code == 404 and details is not None and details.name:
                raise NotFound(f"canaryrollout/{name} not found in namespace {self.namespace}") from exc
            if code == 404:
                raise NotFound(
                    f"{KIND} ({GROUP}/{VERSION}) is not served by this cluster: is the operator's "
                    "CustomResourceDefinition installed?"
                ) from exc
            raise PluginError(f"the API server refused: {exc.status.message or exc} ({code})") from exc
        except httpx2.TransportError as exc:
            raise PluginError(f"cannot reach the API server: {type(exc).__name__}: {exc}") from exc
        except Exception as exc:  # a plain-text answer from a proxy, an undecodable body
            raise PluginError(f"cannot talk to the API server: {type(exc).__name__}: {exc}") from exc


def _load_config(kubeconfig_class: Any, path: str | None) -> Any:
    """The kubeconfig at ``path``, else $KUBECONFIG's first existing file (kubectl merges them all; we take the
    first), else the in-cluster config, else ~/.kube/config."""
    path = path or os.environ.get("KUBECONFIG") or None
    if path and os.pathsep in path:
        paths = [p for p in path.split(os.pathsep) if p]
        path = next((p for p in paths if os.path.isfile(os.path.expanduser(p))), paths[0] if paths else None)
    return kubeconfig_class.from_file(path) if path else kubeconfig_class.from_env()


def _global_options(parser: argparse.ArgumentParser, default: Any = None) -> None:
    parser.add_argument(
        "-n", "--namespace", default=default,
        help="the rollout's namespace (default: the kubeconfig context's, else default)",
    )  # fmt: skip
    parser.add_argument("--kubeconfig", default=default,
                        help="the kubeconfig file (default: $KUBECONFIG, else ~/.kube/config)")  # fmt: skip
    parser.add_argument("--context", default=default, help="the kubeconfig context (default: its current context)")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kubectl mlops", description="Inspect and steer CanaryRollouts.")
    _global_options(parser)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def target(command: argparse.ArgumentParser) -> argparse.ArgumentParser:
        command.add_argument("rollout", metavar="ROLLOUT", help="<name>, canary/<name> or canaryrollout/<name>")
        # Also after the command, as kubectl users write them (kubectl mlops status fraud -n team); SUPPRESS keeps
        # a value given before the command.
        _global_options(command, argparse.SUPPRESS)
        return command

    status = target(sub.add_parser("status", help="where the rollout is and why"))
    status.add_argument("-w", "--watch", action="store_true", help="redraw on every change until Ctrl-C")
    helps = {
        "promote": "promote the current candidate now (mlops.io/promote=<candidate>)",
        "abort": "roll the current candidate back (mlops.io/abort=<candidate>)",
        "retry": "run the last rolled back or aborted candidate again (mlops.io/retry=<candidate>)",
        "resume": "resume the current pause or held analysis (mlops.io/resume=<step>)",
    }
    for verb, text in helps.items():
        target(sub.add_parser(verb, help=text))
    target(sub.add_parser("history", help="the rollout's runs"))
    return parser


def run(args: argparse.Namespace, cluster: Cluster, out: TextIO = sys.stdout) -> int:
    """Run one parsed command against ``cluster``, writing to ``out``; raises PluginError on failure."""
    name = parse_target(args.rollout)
    width = shutil.get_terminal_size().columns if out.isatty() else None
    if args.command == "status":
        if args.watch:
            return _watch(name, cluster, out, width)
        out.write(render_status(cluster.get(name), width))
    elif args.command == "history":
        out.write(render_history(cluster.get(name), width))
    else:
        key, value = verb_annotation(args.command, cluster.get(name))
        cluster.annotate(name, key, value)
        out.write(f"canaryrollout/{name}: {args.command} {value} asked ({key}={value})\n")
    return 0


def _watch(name: str, cluster: Cluster, out: TextIO, width: int | None) -> int:
    # Polling, not a watch stream: one GET a second is cheap for one object, and it survives API server restarts
    # and expired resource versions without any reconnection logic.
    shown: str | None = None
    report = ""
    try:
        while True:
            try:
                report = text = render_status(cluster.get(name), width)
            except NotFound:
                raise
            except PluginError as exc:  # a blip (an API server restarting) should not end a watch
                text = f"{report}\n(cannot refresh: {exc}; trying again)\n"
            if text != shown:
                if out.isatty():
                    out.write("\x1b[H\x1b[2J")  # clear the screen: a redraw, not a scroll
                elif shown is not None:
                    out.write("\n")
                out.write(text)
                out.flush()
                shown = text
            time.sleep(POLL_SECONDS)
    except KeyboardInterrupt:
        return 0


def main(argv: Sequence[str] | None = None) -> int:
    """The console script ``kubectl-mlops``: 0 on success, 1 on any failure (one line on stderr), 2 on a usage
    error (argparse's)."""
    args = _parser().parse_args(argv)
    try:
        parse_target(args.rollout)  # a bad name fails before the kubeconfig is even read
        return run(args, _Lightkube(args.kubeconfig, args.context, args.namespace))
    except PluginError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader left (``| head``): say nothing, and keep Python from complaining again when it flushes stdout.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except Exception as exc:  # never a traceback for a user: the type and message say enough
        print(f"{PROG}: {type(exc).__name__}: {exc}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
