"""kubectl mlops as scenarios, without a cluster: given a CanaryRollout as the API server returns it, when the plugin
renders it or asks for a verb, then this text, this annotation, this error."""

from __future__ import annotations

import copy
import io
from pathlib import Path
from typing import Any

import pytest

from mlops_operator import kubectl_plugin as plugin
from mlops_operator.kubectl_plugin import (
    PluginError,
    parse_target,
    render_history,
    render_status,
    table,
    verb_annotation,
)

Body = dict[str, Any]

SPEC: Body = {
    "deploymentRef": {"name": "fraud"},
    "steps": [
        {"setWeight": 5},
        {"analysis": {"count": 2}},
        {"setWeight": 25},
        {"analysis": {"duration": "1m"}},
        {"setWeight": 50},
        {"pause": {}},
        {"analysis": {"count": 2, "metrics": ["latency"]}},
    ],
    "analysis": {
        "interval": "30s",
        "failureLimit": 1,
        "metrics": [
            {"name": "latency", "builtin": "latencyP99", "max": 0.5, "compare": {"allowedIncrease": 1.2}},
            {"name": "predictions", "builtin": "predictionShift", "max": 0.2, "dryRun": True},
        ],
    },
}
CONDITIONS_ANALYSING = [
    {"type": "Ready", "status": "False", "reason": "Analysing", "lastTransitionTime": "2026-03-01T12:04:00Z"},
    {"type": "Progressing", "status": "True", "reason": "Analysing", "lastTransitionTime": "2026-03-01T12:00:00Z"},
    {"type": "Degraded", "status": "False", "reason": "Analysing", "lastTransitionTime": "2026-03-01T12:00:00Z"},
]


def rollout(status: Body | None, spec: Body | None = None, generation: int = 3) -> Body:
    body: Body = {
        "apiVersion": "mlops.io/v1alpha1",
        "kind": "CanaryRollout",
        "metadata": {"name": "fraud", "namespace": "ml", "generation": generation},
        "spec": copy.deepcopy(spec or SPEC),
    }
    if status is not None:
        body["status"] = status
    return body


def running(phase: str, candidate: str, stable: str, step: int, canary: int, message: str, **more: Any) -> Body:
    """A rollout with a run of ``candidate`` over ``stable`` at ``step``, ``canary`` % asked and applied; ``run`` in
    ``more`` adds to the run, the rest to the status."""
    run = {"candidate": candidate, "stable": stable, "specHash": "0123456789abcdef",
           "startedAt": "2026-03-01T12:00:00Z", "step": step, **more.pop("run", {})}  # fmt: skip
    weights = {"stable": 100 - canary, "canary": canary}
    return rollout({
        "observedGeneration": 3, "phase": phase, "candidate": candidate, "stable": stable, "currentStep": step,
        "steps": 7, "weights": weights, "applied": weights, "message": message, "run": run, **more,
    })  # fmt: skip


@pytest.fixture
def progressing() -> Body:
    """Measuring 1.1.0 at 25 % at step 3 (its second of two measurements), two metrics, one of them a dry run."""
    return running(
        "Progressing", "1.1.0", "1.0.0", 3, 25, "step 3: analysis, measurement 2 of 2",
        run={"stepStartedAt": "2026-03-01T12:03:00Z", "measurements": 1},
        metrics=[
            {"name": "latency", "source": "latencyP99", "canary": 0.2314, "stable": 0.1987, "verdict": "Pass",
             "message": "p99 0.2314 <= max 0.5; 1.16x stable, allowed 1.2x", "passed": 3},
            {"name": "predictions", "source": "predictionShift", "dryRun": True, "canary": 0.0712, "verdict": "Pass",
             "message": "shift 0.0712 <= max 0.2", "passed": 2, "noData": 1},
        ],
        conditions=CONDITIONS_ANALYSING,
    )  # fmt: skip


@pytest.fixture
def paused() -> Body:
    """1.1.0 at 50 %, waiting at step 5 (a pause without duration) for a person."""
    return running(
        "Paused", "1.1.0", "1.0.0", 5, 50,
        "paused at step 5 until resumed: kubectl mlops resume <rollout> (mlops.io/resume=5)",
        conditions=[{"type": "Ready", "status": "False", "reason": "Paused"}],
    )  # fmt: skip


@pytest.fixture
def rolled_back() -> Body:
    """1.2.0 failed its analysis at step 1 and was rolled back; two earlier runs in history."""
    reason = "latency 0.91 > max 0.5 at step 1 (2 failed measurements, 1 tolerated)"
    return running(
        "RolledBack", "1.2.0", "1.1.0", 1, 0, f"rolled back 1.2.0: {reason}",
        run={"startedAt": "2026-03-02T09:00:00Z", "failed": 2, "result": "RolledBack", "reason": reason,
             "cause": "AnalysisFailed", "endedAt": "2026-03-02T09:03:10Z"},
        metrics=[
            {"name": "latency", "source": "latencyP99", "canary": 0.91, "stable": 0.2, "verdict": "Fail",
             "message": "p99 0.91 > max 0.5", "failed": 2},
            {"name": "predictions", "source": "predictionShift", "dryRun": True, "verdict": "NoData", "noData": 2},
        ],
        history=[
            {"candidate": "1.0.0", "stable": "0.9.0", "result": "Promoted", "reason": "every step passed",
             "startedAt": "2026-02-20T10:00:00Z", "endedAt": "2026-02-20T10:20:00Z"},
            {"candidate": "1.1.0", "stable": "1.0.0", "result": "Promoted", "reason": "promoted by mlops.io/promote",
             "startedAt": "2026-03-01T12:00:00Z", "endedAt": "2026-03-01T12:12:00Z"},
        ],
        conditions=[{"type": "Ready", "status": "False", "reason": "AnalysisFailed"},
                    {"type": "Degraded", "status": "True", "reason": "AnalysisFailed"}],
    )  # fmt: skip


def step_line(text: str, index: int) -> str:
    return next(line for line in text.splitlines() if f" {index}. " in line)


# --- status --------------------------------------------------------------------------------------------------------


def test_progressing_status_names_the_rollout_its_weights_and_why(progressing: Body) -> None:
    text = render_status(progressing)
    assert "canaryrollout/fraud" in text and "Deployment:  fraud" in text
    assert "Phase:       Progressing" in text
    assert "1.1.0 (stable: 1.0.0)" in text
    assert "asked canary 25% / stable 75%; applied canary 25% / stable 75%" in text
    assert "Message:     step 3: analysis, measurement 2 of 2" in text


def test_progressing_status_marks_the_steps_done_current_and_pending(progressing: Body) -> None:
    text = render_status(progressing)
    for done in (0, 1, 2):
        assert step_line(text, done).rstrip().endswith("done"), step_line(text, done)
    current = step_line(text, 3)
    assert current.lstrip().startswith("> 3.") and "analysis (2 measurements)" in current
    assert "current: measurement 2 of 2" in current
    for pending in (4, 5, 6):
        assert step_line(text, pending).rstrip().endswith("pending")
    assert "pause until resumed" in step_line(text, 5)
    assert "of latency" in step_line(text, 6)  # a step judging only some metrics names them
    assert "promote (auto)" in text


def test_progressing_status_shows_each_metric_values_verdict_and_counts(progressing: Body) -> None:
    text = render_status(progressing)
    latency = next(line for line in text.splitlines() if line.lstrip().startswith("latency"))
    assert latency.split()[:9] == ["latency", "0.2314", "0.1987", "Pass", "3", "0", "0", "0", "0"]
    assert "1.16x stable" in latency
    predictions = next(line for line in text.splitlines() if "predictions" in line)
    assert predictions.split()[:11] == ["predictions", "(dry", "run)", "0.0712", "-", "Pass", "2", "0", "0", "1", "0"]
    assert "TYPE" in text and "Progressing  True" in text


def test_status_cuts_long_messages_to_the_terminal_width(progressing: Body) -> None:
    progressing["status"]["metrics"][0]["message"] = "why " * 100
    text = render_status(progressing, width=100)
    metric_lines = [line for line in text.splitlines() if line.lstrip().startswith(("NAME", "latency", "predictions"))]
    assert all(len(line) <= 100 for line in metric_lines)
    assert "..." in metric_lines[1]
    # The header block is never cut: the message is what a person reads the report for.
    assert "Message:     step 3: analysis, measurement 2 of 2" in text


def test_paused_status_marks_the_pause_and_says_how_to_resume(paused: Body) -> None:
    text = render_status(paused)
    assert "Phase:       Paused" in text
    assert step_line(text, 5).lstrip().startswith("> 5.") and "pause until resumed" in step_line(text, 5)
    assert "mlops.io/resume=5" in text
    assert "none measured yet" in text


def test_rolled_back_status_marks_where_it_stopped_and_what_did_not_run(rolled_back: Body) -> None:
    text = render_status(rolled_back)
    assert "Phase:       RolledBack" in text
    assert step_line(text, 0).rstrip().endswith("done")
    assert step_line(text, 1).lstrip().startswith("x 1.") and "stopped: RolledBack" in step_line(text, 1)
    assert step_line(text, 2).rstrip().endswith("not run")
    assert "RolledBack (AnalysisFailed) at 2026-03-02T09:03:10Z" in text
    assert "rolled back 1.2.0: latency 0.91 > max 0.5" in text
    assert "asked canary 0% / stable 100%" in text


def test_status_of_a_manual_promotion_waiting_marks_the_promotion_current(progressing: Body) -> None:
    progressing["spec"]["promotion"] = "manual"
    progressing["status"].update(phase="Paused", currentStep=7)
    progressing["status"]["run"]["step"] = 7
    text = render_status(progressing)
    assert all(step_line(text, i).rstrip().endswith("done") for i in range(7))
    promote = next(line for line in text.splitlines() if "promote (manual)" in line)
    assert promote.lstrip().startswith(">") and "kubectl mlops promote" in promote


def test_status_of_a_rollout_not_reconciled_yet(progressing: Body) -> None:
    del progressing["status"]
    text = render_status(progressing)
    assert "(not reconciled yet)" in text
    assert step_line(text, 0).rstrip().endswith("pending")


def test_status_of_a_spec_the_plugin_cannot_read_still_renders(progressing: Body) -> None:
    progressing["spec"]["steps"] = [{"setWeight": "lots"}]
    text = render_status(progressing)
    assert "the spec's steps cannot be read" in text and "Phase:       Progressing" in text


def test_status_says_when_the_operator_has_not_seen_the_spec(progressing: Body) -> None:
    progressing["metadata"]["generation"] = 4
    assert "spec generation 4 not yet seen by the operator (it saw 3)" in render_status(progressing)


def test_ramp_steps_are_expanded(progressing: Body) -> None:
    progressing["spec"].pop("steps")
    progressing["spec"]["ramp"] = {"stepWeights": [10, 50], "interval": "1m"}
    text = render_status(progressing)
    assert "setWeight 10" in step_line(text, 0) and "analysis (2 measurements)" in step_line(text, 1)
    assert "setWeight 50" in step_line(text, 2)


# --- history -------------------------------------------------------------------------------------------------------


def test_history_lists_ended_runs_then_the_last_run(rolled_back: Body) -> None:
    lines = render_history(rolled_back).splitlines()
    assert lines[0].split() == ["CANDIDATE", "STABLE", "RESULT", "STARTED", "ENDED", "REASON"]
    assert [line.split()[:3] for line in lines[1:]] == [
        ["1.0.0", "0.9.0", "Promoted"],
        ["1.1.0", "1.0.0", "Promoted"],
        ["1.2.0", "1.1.0", "RolledBack"],
    ]
    assert "2026-03-02T09:03:10Z" in lines[3] and "latency 0.91 > max 0.5" in lines[3]


def test_history_shows_a_run_in_progress_by_its_phase(progressing: Body) -> None:
    lines = render_history(progressing).splitlines()
    assert lines[1].split()[:5] == ["1.1.0", "1.0.0", "Progressing", "2026-03-01T12:00:00Z", "-"]


def test_history_does_not_repeat_a_run_already_archived(rolled_back: Body) -> None:
    run = rolled_back["status"]["run"]
    fields = ("candidate", "stable", "result", "reason", "startedAt", "endedAt")
    rolled_back["status"]["history"].append({k: run[k] for k in fields})
    assert render_history(rolled_back).count("1.2.0") == 1


def test_history_of_a_rollout_without_runs() -> None:
    assert render_history(rollout({"phase": "Idle"})) == "canaryrollout/fraud: no runs yet\n"


# --- verbs ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("verb", "annotation"),
    [
        ("promote", ("mlops.io/promote", "1.1.0")),
        ("abort", ("mlops.io/abort", "1.1.0")),
        ("retry", ("mlops.io/retry", "1.1.0")),
        ("resume", ("mlops.io/resume", "5")),
    ],
)
def test_verbs_name_what_they_act_on(paused: Body, verb: str, annotation: tuple[str, str]) -> None:
    assert verb_annotation(verb, paused) == annotation


def test_retry_names_the_last_runs_candidate(rolled_back: Body) -> None:
    rolled_back["status"]["candidate"] = None  # what retry names comes from the run, not the current candidate
    assert verb_annotation("retry", rolled_back) == ("mlops.io/retry", "1.2.0")


@pytest.mark.parametrize("verb", ["promote", "abort", "retry", "resume"])
def test_a_verb_without_a_run_is_a_clear_error(verb: str) -> None:
    idle = rollout({"phase": "Idle", "stable": "1.0.0", "message": "deployment fraud serves 1.0.0"})
    with pytest.raises(PluginError, match=r"canaryrollout/fraud: .* \(phase Idle\)"):
        verb_annotation(verb, idle)


def test_an_unknown_verb_is_refused(paused: Body) -> None:
    with pytest.raises(PluginError, match="unknown verb"):
        verb_annotation("pause", paused)


# --- arguments and the commands ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "target", ["fraud", "canary/fraud", "canaryrollout/fraud", "canaryrollouts/fraud", "canaryrollout.mlops.io/fraud"]
)
def test_targets_name_a_rollout(target: str) -> None:
    assert parse_target(target) == "fraud"


@pytest.mark.parametrize("target", ["deployment/fraud", "canary/", "modeldeployment/fraud"])
def test_other_targets_are_refused(target: str) -> None:
    with pytest.raises(PluginError):
        parse_target(target)


def test_global_options_and_subcommands_parse() -> None:
    args = plugin._parser().parse_args(["-n", "ml", "--kubeconfig", "/tmp/kc", "status", "canary/fraud", "--watch"])
    assert (args.namespace, args.kubeconfig, args.command, args.rollout, args.watch) == (
        "ml", "/tmp/kc", "status", "canary/fraud", True
    )  # fmt: skip
    args = plugin._parser().parse_args(["promote", "canaryrollout/fraud"])
    assert (args.namespace, args.command, parse_target(args.rollout)) == (None, "promote", "fraud")


class FakeCluster:
    """The API server as the commands see it: a body per name, and the annotations asked."""

    def __init__(self, *bodies: Body) -> None:
        self.bodies = list(bodies)
        self.annotations: list[tuple[str, str, str]] = []

    def get(self, name: str) -> Body:
        if not self.bodies:
            raise KeyboardInterrupt  # the person watching pressed Ctrl-C
        if self.bodies[0]["metadata"]["name"] != name:
            raise plugin.NotFound(f"canaryrollout/{name} not found in namespace ml")
        return self.bodies.pop(0)

    def annotate(self, name: str, key: str, value: str) -> None:
        self.annotations.append((name, key, value))


def test_a_verb_annotates_and_says_what_was_asked(progressing: Body) -> None:
    cluster, out = FakeCluster(progressing), io.StringIO()
    assert plugin.run(plugin._parser().parse_args(["promote", "canary/fraud"]), cluster, out) == 0
    assert cluster.annotations == [("fraud", "mlops.io/promote", "1.1.0")]
    assert out.getvalue() == "canaryrollout/fraud: promote 1.1.0 asked (mlops.io/promote=1.1.0)\n"


def test_watch_redraws_on_change_and_ends_on_ctrl_c(
    progressing: Body, paused: Body, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(plugin, "POLL_SECONDS", 0.0)
    cluster, out = FakeCluster(progressing, copy.deepcopy(progressing), paused), io.StringIO()
    assert plugin.run(plugin._parser().parse_args(["status", "fraud", "-w"]), cluster, out) == 0
    assert out.getvalue().count("Name:") == 2  # the unchanged second reading is not drawn again


def test_main_reports_errors_in_one_line_without_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert plugin.main(["status", "deployment/fraud"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("kubectl-mlops: deployment/fraud: not a CanaryRollout") and err.count("\n") == 1

    assert plugin.main(["--kubeconfig", str(tmp_path / "missing"), "status", "fraud"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("kubectl-mlops: no usable kubeconfig") and "Traceback" not in err
    assert err.count("\n") == 1


def test_api_errors_become_plugin_errors() -> None:
    from lightkube import ApiError
    from lightkube.models.meta_v1 import Status, StatusDetails

    api = plugin._Lightkube.__new__(plugin._Lightkube)
    api.namespace = "ml"

    def fails(code: int, name: str | None) -> None:
        raise ApiError(status=Status(code=code, message="nope", details=StatusDetails(name=name)))

    with pytest.raises(plugin.NotFound, match="canaryrollout/fraud not found in namespace ml"):
        api._call("fraud", lambda: fails(404, "fraud"))
    with pytest.raises(plugin.NotFound, match="not served by this cluster"):
        api._call("fraud", lambda: fails(404, None))
    with pytest.raises(PluginError, match=r"the API server refused: nope \(403\)"):
        api._call("fraud", lambda: fails(403, "fraud"))


def test_table_aligns_numbers_right_and_text_left() -> None:
    text = table([("a", "1", "x"), ("bbb", "22", "-")], headers=("K", "N", "T"))
    assert text.splitlines() == ["K     N  T", "a     1  x", "bbb  22  -"]


def test_global_options_are_taken_before_and_after_the_command() -> None:
    from mlops_operator.kubectl_plugin import _parser

    after = _parser().parse_args(["status", "fraud", "--namespace", "team", "--context", "lab"])
    before = _parser().parse_args(["-n", "team", "status", "fraud"])
    assert (after.namespace, after.context, after.rollout) == ("team", "lab", "fraud")
    assert (before.namespace, before.rollout) == ("team", "fraud")
