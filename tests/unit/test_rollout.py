"""The CanaryRollout step machine as scenarios: given a spec, a status and what the deployment reports, when the
machine decides, then this status, weight and reason."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from mlops_operator.api.canaryrollout import CanaryRolloutSpec, Run
from mlops_operator.logic import rollout
from mlops_operator.logic.rollout import ABORT, PROMOTE, RESUME, RETRY, Deployment, Outcome, Stage, Verdict

T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
ANALYSIS = {"interval": "10s", "metrics": [{"name": "errors", "builtin": "errorRate", "max": 0.01}]}
STEPS = [{"setWeight": 10}, {"pause": {"duration": "30s"}}, {"analysis": {"count": 2}}, {"setWeight": 50},
         {"pause": {}}]  # fmt: skip


def spec(**changes: Any) -> CanaryRolloutSpec:
    body: dict[str, Any] = {"deploymentRef": {"name": "fraud"}, "steps": STEPS, "analysis": ANALYSIS}
    body.update(changes)
    return CanaryRolloutSpec.model_validate({k: v for k, v in body.items() if v is not None})


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def md(canary: str | None = "1.1.0", weight: int = 0, stable: str = "1.0.0", **more: Any) -> Deployment:
    return Deployment("fraud", stable=stable, canary=canary, canary_weight=weight, **more)


class Rollout:
    """A rollout's status carried from one decision to the next, as the controller does through the API."""

    def __init__(self, s: CanaryRolloutSpec | None = None) -> None:
        self.spec = s or spec()
        self.phase: Any = None
        self.run: Run | None = None
        self.history: list[Any] = []
        self.last: Outcome | None = None

    def decide(self, deployment: Deployment, now: datetime, verbs: dict[str, str] | None = None,
               verdict: Verdict | None = None) -> Outcome:  # fmt: skip
        s = self.spec
        out = rollout.decide(rollout.stages(s), rollout.settings(s), s.candidate, rollout.spec_hash(s), self.phase,
                             self.run, self.history, deployment, verbs or {}, now, verdict)  # fmt: skip
        self.phase, self.run, self.history, self.last = out.phase, out.run, out.history, out
        return out

    def measured(self, deployment: Deployment, now: datetime, verdict: Verdict) -> Outcome:
        """A window closed at ``now``: the machine asks for it, gets ``verdict``."""
        s = self.spec
        asked = rollout.decide(rollout.stages(s), rollout.settings(s), s.candidate, rollout.spec_hash(s), self.phase,
                               self.run, self.history, deployment, {}, now)  # fmt: skip
        assert asked.window is not None, asked.message
        return self.decide(deployment, now, verdict=verdict)


PASS = Verdict("Pass", "errors 0 <= 0.01")
FAIL = Verdict("Fail", "errors 0.031 > 0.01")


def reasons(out: Outcome) -> list[str]:
    return [reason for reason, _, _ in out.events]


def at_analysis(r: Rollout) -> None:
    """Drives ``r`` to the analysis step (weight 10 applied at 1s, the 30s pause over at 31s)."""
    r.decide(md(), at(0))
    r.decide(md(weight=10), at(1))
    out = r.decide(md(weight=10), at(31))
    assert r.run is not None and r.run.step == 2, out.message


# --- stages -----------------------------------------------------------------------------------------------------------


def test_stages_expand_the_ramp_into_weights_and_analyses() -> None:
    s = spec(steps=None, ramp={"stepWeights": [5, 25, 50], "interval": "30s"})
    assert rollout.stages(s) == [
        Stage("weight", weight=5), Stage("analysis", count=3), Stage("weight", weight=25), Stage("analysis", count=3),
        Stage("weight", weight=50), Stage("analysis", count=3),
    ]  # fmt: skip


def test_stages_of_step_weight_stop_at_max_weight_and_hold_without_analysis() -> None:
    s = spec(steps=None, analysis=None, ramp={"stepWeight": 20, "maxWeight": 60, "interval": "1m"})
    assert rollout.stages(s) == [
        Stage("weight", weight=20), Stage("pause", duration=60), Stage("weight", weight=40),
        Stage("pause", duration=60), Stage("weight", weight=60), Stage("pause", duration=60),
    ]  # fmt: skip


def test_an_analysis_duration_is_as_many_measurements_as_whole_intervals_fit() -> None:
    s = spec(steps=[{"setWeight": 5}, {"analysis": {"duration": "35s"}}, {"analysis": {"metrics": ["errors"]}}])
    assert rollout.stages(s)[1:] == [Stage("analysis", count=3), Stage("analysis", count=1, metrics=("errors",))]


def test_the_hash_ignores_which_candidate_and_deployment() -> None:
    assert rollout.spec_hash(spec()) == rollout.spec_hash(spec(candidate="9.9.9"))
    assert rollout.spec_hash(spec()) != rollout.spec_hash(spec(progressDeadline="5m"))


# --- starting ---------------------------------------------------------------------------------------------------------


def test_a_policy_starts_a_run_when_the_deployment_runs_a_canary_and_asks_for_the_first_weight() -> None:
    r = Rollout()
    out = r.decide(md(), T0)

    assert out.phase == "Progressing" and out.weight == 10 and out.reason == "WaitingForWeight"
    assert r.run is not None and (r.run.candidate, r.run.stable, r.run.step) == ("1.1.0", "1.0.0", 0)
    assert out.new_run and reasons(out) == ["RunStarted"]


def test_without_a_canary_the_policy_is_idle() -> None:
    out = Rollout().decide(md(canary=None), T0)
    assert (out.phase, out.reason, out.weight, out.run) == ("Idle", "Idle", 0, None)


def test_a_rollout_for_one_candidate_waits_for_the_deployment_to_run_it() -> None:
    out = Rollout(spec(candidate="2.0.0")).decide(md(), T0)
    assert (out.phase, out.reason) == ("Idle", "WaitingForCandidate")
    assert "waiting for deployment fraud to run 2.0.0" in out.message


@pytest.mark.parametrize(
    ("deployment", "reason"),
    [(Deployment("fraud", exists=False), "DeploymentNotFound"), (md(canary_strategy=False), "StrategyNotCanary")],
)
def test_a_deployment_missing_or_not_canary_is_said(deployment: Deployment, reason: str) -> None:
    out = Rollout().decide(deployment, T0)
    assert out.reason == reason and out.degraded


# --- weights and pauses -----------------------------------------------------------------------------------------------


def test_a_step_clock_starts_when_the_weight_is_applied_not_when_it_was_asked() -> None:
    r = Rollout()
    r.decide(md(), at(0))
    out = r.decide(md(weight=0), at(20))  # asked at 0, not applied yet
    assert r.run is not None and r.run.step == 0 and out.weight == 10
    out = r.decide(md(weight=10), at(25))
    assert r.run.step == 1 and r.run.step_started_at == at(25)
    assert out.phase == "Paused" and out.requeue_after == 30
    out = r.decide(md(weight=10), at(54))
    assert r.run.step == 1 and out.requeue_after == pytest.approx(1)
    r.decide(md(weight=10), at(55))
    assert r.run.step == 2


def test_a_weight_not_applied_within_the_progress_deadline_rolls_back_naming_it() -> None:
    r = Rollout(spec(progressDeadline="1m"))
    r.decide(md(), at(0))
    out = r.decide(md(weight=0, message="1.1.0 0/1 ready"), at(61))
    # Nothing had moved to the candidate: rolled back at once.
    assert out.phase == "RolledBack" and out.weight == 0 and out.reason == "ProgressDeadlineExceeded"
    assert "did not apply 10% to 1.1.0" in out.message and "1.1.0 0/1 ready" in out.message


def test_a_pause_without_duration_waits_for_resume_naming_its_step_and_a_stale_resume_is_ignored() -> None:
    r = Rollout(spec(steps=[{"setWeight": 10}, {"pause": {}}, {"setWeight": 20}, {"pause": {}}]))
    r.decide(md(), at(0))
    out = r.decide(md(weight=10), at(1))
    assert out.phase == "Paused" and "mlops.io/resume=1" in out.message
    out = r.decide(md(weight=10), at(2), {RESUME: "3"})
    assert r.run is not None and r.run.step == 1 and out.consumed == [RESUME] and reasons(out) == ["VerbIgnored"]
    out = r.decide(md(weight=10), at(3), {RESUME: "1"})
    assert r.run.step == 2 and out.weight == 20 and r.run.resumed == [1]
    # The same annotation seen again (its removal not yet seen) cannot skip the next pause.
    out = r.decide(md(weight=20), at(4), {RESUME: "1"})
    assert r.run.step == 3 and out.phase == "Paused" and reasons(out) == ["StepCompleted", "VerbIgnored"]


# --- analysis ---------------------------------------------------------------------------------------------------------


def test_an_analysis_step_measures_window_after_window_then_goes_on() -> None:
    r = Rollout()
    at_analysis(r)
    out = r.decide(md(weight=10), at(35))
    assert out.measuring is not None and out.measuring.start == at(31) and out.requeue_after == pytest.approx(6)
    r.measured(md(weight=10), at(41), PASS)
    assert r.run is not None and r.run.measurements == 1 and r.run.window_start == at(41)
    out = r.measured(md(weight=10), at(51), PASS)
    assert r.run.step == 3 and out.weight == 50


def test_the_first_window_opens_after_the_initial_delay() -> None:
    r = Rollout(spec(analysis={**ANALYSIS, "initialDelay": "20s"}))
    at_analysis(r)
    out = r.decide(md(weight=10), at(40))
    # Looked at again when the window opens (a provider that reads the servers takes its first reading then).
    assert r.run is not None and r.run.window_start == at(51) and out.measuring is None
    assert out.requeue_after == pytest.approx(11)


def test_failures_beyond_the_limit_roll_back_then_the_run_ends_when_the_stable_version_has_it_all() -> None:
    r = Rollout(spec(analysis={**ANALYSIS, "failureLimit": 1}))
    at_analysis(r)
    out = r.measured(md(weight=10), at(41), FAIL)
    assert out.phase == "Progressing" and r.run is not None and r.run.failed == 1
    out = r.measured(md(weight=10), at(51), FAIL)
    assert out.phase == "RollingBack" and out.weight == 0 and out.reason == "AnalysisFailed"
    assert out.message == "rolling back 1.1.0 (10% still on it): errors 0.031 > 0.01 at step 2 (2 failed " \
        "measurements, 1 tolerated)"  # fmt: skip
    out = r.decide(md(weight=0), at(52))
    assert out.phase == "RolledBack" and r.run.ended_at == at(52) and out.degraded and out.reason == "AnalysisFailed"
    out = r.decide(md(canary=None, stopped="1.1.0"), at(60))
    assert out.phase == "RolledBack" and out.reason == "AnalysisFailed" and out.run is r.run


def test_a_critical_failure_rolls_back_at_once_whatever_the_limit() -> None:
    r = Rollout(spec(analysis={**ANALYSIS, "failureLimit": 5}))
    at_analysis(r)
    out = r.measured(md(weight=10), at(41), Verdict("Fail", "errors 0.5 > 0.01", critical=True))
    assert out.phase == "RollingBack" and "(a critical metric: no failure tolerated)" in out.message


def test_no_data_waits_until_its_deadline_then_rolls_back_naming_the_metric() -> None:
    r = Rollout(spec(analysis={**ANALYSIS, "noDataDeadline": "30s"}))
    at_analysis(r)
    nodata = Verdict("NoData", "no data: errors: no data for the candidate")
    out = r.measured(md(weight=10), at(41), nodata)
    assert out.phase == "Progressing" and r.run is not None and r.run.measurements == 0
    assert r.run.no_data_since == at(31) and reasons(out) == ["NoData"]
    out = r.measured(md(weight=10), at(51), nodata)
    assert reasons(out) == []  # one NoData Event per wait
    out = r.measured(md(weight=10), at(61), nodata)
    assert out.phase == "RollingBack" and out.reason == "NoDataDeadlineExceeded"
    assert "no data for 30s at step 2: no data: errors: no data for the candidate" in out.message


@pytest.mark.parametrize(("policy", "failed", "measurements"), [("pass", 0, 1), ("fail", 1, 1), ("inconclusive", 0, 1)])
def test_no_data_counts_as_the_policy_says(policy: str, failed: int, measurements: int) -> None:
    r = Rollout(spec(analysis={**ANALYSIS, "noData": policy, "failureLimit": 3, "inconclusiveLimit": 3}))
    at_analysis(r)
    r.measured(md(weight=10), at(41), Verdict("NoData", "no data"))
    assert r.run is not None and (r.run.failed, r.run.measurements) == (failed, measurements)
    assert r.run.inconclusive == (1 if policy == "inconclusive" else 0)


def test_errors_in_a_row_beyond_the_limit_roll_back_and_a_success_resets_them() -> None:
    r = Rollout(spec(analysis={**ANALYSIS, "consecutiveErrorLimit": 1}))
    at_analysis(r)
    error = Verdict("Error", "errors: connection refused")
    r.measured(md(weight=10), at(41), error)
    r.measured(md(weight=10), at(51), PASS)
    assert r.run is not None and r.run.consecutive_errors == 0 and r.run.measurements == 1
    r.measured(md(weight=10), at(61), error)
    out = r.measured(md(weight=10), at(71), error)
    assert out.phase == "RollingBack" and out.reason == "MeasurementErrors"


def test_inconclusive_beyond_the_limit_holds_for_a_person_and_resume_goes_on() -> None:
    r = Rollout()
    at_analysis(r)
    out = r.measured(md(weight=10), at(41), Verdict("Inconclusive", "score 80 (Marginal)"))
    assert out.phase == "Paused" and out.reason == "AnalysisInconclusive" and "mlops.io/resume=2" in out.message
    out = r.decide(md(weight=10), at(100))
    assert out.phase == "Paused" and out.window is None
    out = r.decide(md(weight=10), at(101), {RESUME: "2"})
    assert out.phase == "Progressing" and r.run is not None and r.run.held is None


def test_a_late_machine_opens_the_next_window_now_rather_than_in_the_past() -> None:
    r = Rollout()
    at_analysis(r)
    r.measured(md(weight=10), at(141), PASS)
    assert r.run is not None and r.run.window_start == at(141)


def test_background_analysis_measures_during_a_pause_and_its_failures_count() -> None:
    r = Rollout(spec(steps=[{"setWeight": 10}, {"pause": {}}], analysis={**ANALYSIS, "background": {"fromStep": 1}}))
    r.decide(md(), at(0))
    out = r.decide(md(weight=10), at(1))
    assert out.phase == "Paused" and out.measuring is not None and "measuring in the background" in out.message
    out = r.measured(md(weight=10), at(11), FAIL)
    assert out.phase == "RollingBack" and out.reason == "AnalysisFailed"


# --- promotion --------------------------------------------------------------------------------------------------------


def test_after_the_last_step_the_candidate_is_promoted_once_the_deployment_makes_it_stable() -> None:
    r = Rollout(spec(steps=[{"setWeight": 50}]))
    r.decide(md(), at(0))
    out = r.decide(md(weight=50), at(1))
    assert out.phase == "Promoting" and out.weight == 100
    out = r.decide(md(weight=100), at(2))
    assert out.phase == "Promoting"
    out = r.decide(md(canary=None, stable="1.1.0"), at(3))
    assert out.phase == "Promoted" and out.weight == 100 and r.run is not None and r.run.result == "Promoted"


def test_manual_promotion_waits_for_the_promote_verb_naming_the_candidate() -> None:
    r = Rollout(spec(steps=[{"setWeight": 50}], promotion="manual"))
    r.decide(md(), at(0))
    out = r.decide(md(weight=50), at(1))
    assert out.phase == "Paused" and out.reason == "AwaitingPromotion"
    out = r.decide(md(weight=50), at(2), {PROMOTE: "0.9.0"})
    assert out.phase == "Paused" and reasons(out) == ["VerbIgnored"]
    out = r.decide(md(weight=50), at(3), {PROMOTE: "1.1.0"})
    assert out.phase == "Promoting" and out.consumed == [PROMOTE]


def test_promote_skips_the_remaining_steps() -> None:
    r = Rollout()
    r.decide(md(), at(0))
    out = r.decide(md(weight=10), at(1), {PROMOTE: "1.1.0"})
    assert out.phase == "Promoting" and out.weight == 100 and "mlops.io/promote" in out.message


# --- abort, retry, superseded, spec changes ---------------------------------------------------------------------------


def test_abort_names_the_candidate_rolls_back_and_ends_aborted() -> None:
    r = Rollout()
    r.decide(md(), at(0))
    out = r.decide(md(weight=10), at(1), {ABORT: "1.0.0"})
    assert out.phase == "Paused" and "VerbIgnored" in reasons(out)
    out = r.decide(md(weight=10), at(2), {ABORT: "1.1.0"})
    assert out.phase == "RollingBack" and out.weight == 0 and out.reason == "Aborted"
    out = r.decide(md(weight=0), at(3))
    assert out.phase == "Aborted" and r.run is not None and r.run.result == "Aborted"


def test_retry_after_a_rollback_starts_a_new_run_and_keeps_the_old_one_in_history() -> None:
    r = Rollout(spec(steps=[{"setWeight": 10}, {"analysis": {}}]))
    r.decide(md(), at(0))
    r.decide(md(weight=10), at(1))
    r.measured(md(weight=10), at(11), FAIL)
    r.decide(md(weight=0), at(12))
    stopped = md(canary=None, stopped="1.1.0")
    out = r.decide(stopped, at(20), {RETRY: "1.2.0"})
    assert out.phase == "RolledBack" and reasons(out) == ["VerbIgnored"]
    assert r.run is not None and r.run.candidate == "1.1.0"
    out = r.decide(stopped, at(21), {RETRY: "1.1.0"})
    assert out.phase == "Progressing" and out.new_run and out.weight == 10
    assert [(h.candidate, h.result) for h in out.history] == [("1.1.0", "RolledBack")]


def test_the_policy_runs_every_new_version_and_keeps_a_history() -> None:
    r = Rollout(spec(steps=[{"setWeight": 50}]))
    r.decide(md(), at(0))
    r.decide(md(weight=50), at(1))
    r.decide(md(canary=None, stable="1.1.0"), at(2))
    out = r.decide(md(canary="1.2.0", stable="1.1.0"), at(100))
    assert out.phase == "Progressing" and r.run is not None and (r.run.candidate, r.run.stable) == ("1.2.0", "1.1.0")
    assert [(h.candidate, h.result) for h in out.history] == [("1.1.0", "Promoted")]


def test_a_canary_replaced_mid_run_ends_the_run_as_superseded_and_starts_the_next() -> None:
    r = Rollout()
    r.decide(md(), at(0))
    out = r.decide(md(canary="1.2.0"), at(5))
    assert r.run is not None and r.run.candidate == "1.2.0"
    assert [(h.candidate, h.result) for h in out.history] == [("1.1.0", "Aborted")]
    assert "superseded" in (out.history[0].reason or "")


def test_a_spec_edited_mid_run_restarts_the_steps() -> None:
    r = Rollout()
    at_analysis(r)
    r.spec = spec(progressDeadline="20m")
    out = r.decide(md(weight=10), at(40))
    assert r.run is not None and r.run.step == 1 and "StepsRestarted" in reasons(out)


def test_history_is_bounded() -> None:
    r = Rollout(spec(steps=[{"setWeight": 50}]))
    stable = "1.0.0"
    for i in range(1, 14):
        version = f"1.{i}.0"
        r.decide(md(canary=version, stable=stable), at(i * 10))
        r.decide(md(canary=version, weight=50, stable=stable), at(i * 10 + 1))
        r.decide(md(canary=None, stable=version), at(i * 10 + 2))
        stable = version
    out = r.decide(md(canary="2.0.0", stable=stable), at(1000))
    assert len(out.history) == 10 and out.history[-1].candidate == "1.13.0"


def test_a_retried_candidate_the_deployment_has_not_started_again_yet_is_waited_for() -> None:
    r = Rollout(spec(steps=[{"setWeight": 10}, {"analysis": {}}]))
    r.decide(md(), at(0))
    r.decide(md(weight=10), at(1))
    r.measured(md(weight=10), at(11), FAIL)
    r.decide(md(weight=0), at(12))
    stopped = md(canary=None, stopped="1.1.0", target="1.1.0")
    r.decide(stopped, at(20), {RETRY: "1.1.0"})
    # The deployment still reports the candidate stopped (it has not read the new run yet): no supersession.
    out = r.decide(stopped, at(21))
    assert out.phase == "Progressing" and r.run is not None and r.run.result is None
    out = r.decide(md(canary=None, target=None), at(22))
    assert out.phase == "Progressing"
    # Not picked up within a minute (the deployment was pinned elsewhere meanwhile): superseded.
    out = r.decide(md(canary=None, target=None), at(82))
    assert out.phase == "Aborted" and r.run.cause == "Superseded"


def test_a_long_failure_message_is_clipped_to_the_status_field_limit() -> None:
    r = Rollout()
    at_analysis(r)
    r.measured(md(weight=10), at(41), Verdict("Fail", "errors " + "x" * 3000, critical=True))
    assert r.run is not None and r.run.reason is not None and len(r.run.reason) == 1024
    assert r.run.reason.endswith("...")
