"""The step machine of a CanaryRollout: from its spec, its status (the machine's only memory), what its
ModelDeployment reports, the verbs given and the time, the next status, the weight to ask for and when to look again.

Pure, no I/O. A measurement is the one thing it cannot do itself: when a measurement window has closed, ``decide``
answers with ``Outcome.window`` set and nothing else changed; the caller measures that window and calls again with
the verdict. Order-safe: every clock (a step's, a pause's, the first measurement window's) starts when the
deployment reports the weight applied, never when it was asked for.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

from mlops_operator.api.canaryrollout import (
    HISTORY_LIMIT,
    CanaryRolloutSpec,
    HistoryEntry,
    Phase,
    Run,
)
from mlops_operator.api.common import duration_seconds

PICKUP_SECONDS = 60.0
"""How long a new run waits for its deployment to run the candidate before it counts as superseded."""
RESUME, PROMOTE, ABORT, RETRY = "mlops.io/resume", "mlops.io/promote", "mlops.io/abort", "mlops.io/retry"
VERBS = (RESUME, PROMOTE, ABORT, RETRY)
Result = Literal["Pass", "Fail", "Inconclusive", "NoData", "Error"]


@dataclass(frozen=True)
class Stage:
    """One step, expanded (the ramp shorthand becomes stages too)."""

    kind: Literal["weight", "pause", "analysis"]
    weight: int | None = None
    duration: float | None = None
    """pause: seconds (None: until resumed)."""
    count: int | None = None
    """analysis: measurements."""
    metrics: tuple[str, ...] | None = None
    """analysis: the metrics judged (None: all)."""

    def describe(self) -> str:
        if self.kind == "weight":
            return f"setWeight {self.weight}"
        if self.kind == "pause":
            return f"pause {_human(self.duration)}" if self.duration is not None else "pause until resumed"
        return f"analysis ({self.count} measurement{'s' if self.count != 1 else ''})"


@dataclass(frozen=True)
class Settings:
    """The spec's timing and limits, in seconds."""

    interval: float = 60.0
    initial_delay: float = 0.0
    failure_limit: int = 0
    inconclusive_limit: int = 0
    consecutive_error_limit: int = 4
    no_data: str = "wait"
    no_data_deadline: float = 300.0
    background_from: int | None = None
    progress_deadline: float = 600.0
    manual_promotion: bool = False
    analysed: bool = False
    """spec.analysis is set."""


def stages(spec: CanaryRolloutSpec) -> list[Stage]:
    """The steps of ``spec`` in order, the ramp shorthand expanded: for each weight, set it, then analyse for the
    ramp's interval (as many measurements as whole analysis intervals fit, at least one) or, without an analysis,
    hold it for the interval."""
    interval = duration_seconds(spec.analysis.interval) if spec.analysis else 60.0

    def count(seconds: float) -> int:
        return max(1, math.floor(seconds / interval + 1e-9))

    if spec.steps is not None:
        out = []
        for step in spec.steps:
            if step.set_weight is not None:
                out.append(Stage("weight", weight=step.set_weight))
            elif step.pause is not None:
                seconds = duration_seconds(step.pause.duration) if step.pause.duration else None
                out.append(Stage("pause", duration=seconds))
            elif step.analysis is not None:
                a = step.analysis
                n = a.count if a.count is not None else count(duration_seconds(a.duration)) if a.duration else 1
                out.append(Stage("analysis", count=n, metrics=tuple(a.metrics) if a.metrics else None))
        return out
    ramp = spec.ramp
    assert ramp is not None
    if ramp.step_weights:
        weights = list(ramp.step_weights)
    else:
        assert ramp.step_weight is not None
        weights = list(range(ramp.step_weight, ramp.max_weight + 1, ramp.step_weight))
    held = duration_seconds(ramp.interval)
    out = []
    for w in weights:
        out.append(Stage("weight", weight=w))
        out.append(Stage("analysis", count=count(held)) if spec.analysis else Stage("pause", duration=held))
    return out


def settings(spec: CanaryRolloutSpec) -> Settings:
    a = spec.analysis
    common = {"progress_deadline": duration_seconds(spec.progress_deadline),
              "manual_promotion": spec.promotion == "manual"}  # fmt: skip
    if a is None:
        return Settings(**common)  # type: ignore[arg-type]
    return Settings(
        interval=duration_seconds(a.interval),
        initial_delay=duration_seconds(a.initial_delay),
        failure_limit=a.failure_limit,
        inconclusive_limit=a.inconclusive_limit,
        consecutive_error_limit=a.consecutive_error_limit,
        no_data=a.no_data,
        no_data_deadline=duration_seconds(a.no_data_deadline),
        background_from=a.background.from_step if a.background else None,
        analysed=True,
        **common,  # type: ignore[arg-type]
    )


def spec_hash(spec: CanaryRolloutSpec) -> str:
    """A short hash of what decides the steps (the candidate and deployment excluded: they pick the run)."""
    wire = spec.wire()
    wire.pop("candidate", None)
    wire.pop("deploymentRef", None)
    return hashlib.sha256(json.dumps(wire, sort_keys=True).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Deployment:
    """What the rollout reads of its ModelDeployment (its status, and its strategy)."""

    name: str
    exists: bool = True
    canary_strategy: bool = True
    stable: str | None = None
    canary: str | None = None
    """The version running as its canary."""
    canary_weight: int = 0
    """The canary's weight as the deployment applied it."""
    stopped: str | None = None
    """A canary version the deployment stopped running because a rollout rolled it back."""
    target: str | None = None
    """The new version the deployment is moving to (its canary, or about to be: retried, scaling up)."""
    message: str | None = None
    """The deployment's Ready message (quoted when a wait on it runs out)."""


@dataclass(frozen=True)
class Verdict:
    """The judgement of one measurement window (see ``logic.analysis``)."""

    result: Result
    message: str
    critical: bool = False


@dataclass(frozen=True)
class Window:
    """A measurement window to judge."""

    start: datetime
    end: datetime
    step: int
    metrics: tuple[str, ...] | None
    """The metrics judged (None: all)."""


@dataclass
class Outcome:
    phase: Phase
    run: Run | None
    history: list[HistoryEntry]
    weight: int
    """The canary weight to ask for."""
    reason: str
    """A CamelCase word for the decision, for conditions."""
    message: str
    events: list[tuple[str, str, Literal["Normal", "Warning"]]] = field(default_factory=list)
    consumed: list[str] = field(default_factory=list)
    """Verb annotations to clear (after the status is written)."""
    requeue_after: float | None = None
    window: Window | None = None
    """Set when a measurement window closed: measure it and call again with its verdict."""
    measuring: Window | None = None
    """The window open now (to sample for the direct provider)."""
    new_run: bool = False
    """A run started: per-metric status starts afresh."""
    degraded: bool = False
    """The last decision is a failure (a rollback, a deadline, a refused verb has no part in it)."""


def _clip(text: str, limit: int = 1024) -> str:
    """``text`` within a status field's limit (the API server refuses longer)."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _human(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.0f}s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes}m{rest:02d}s" if rest else f"{minutes}m"


def _since(now: datetime, when: datetime | None) -> float:
    return (now - when).total_seconds() if when else 0.0


def desired_weight(plan: list[Stage], step: int) -> int:
    """The weight the last setWeight at or before ``step`` asked for (0 before any)."""
    return next((s.weight or 0 for s in reversed(plan[: step + 1]) if s.kind == "weight"), 0)


def decide(
    plan: list[Stage],
    config: Settings,
    candidate: str | None,
    hash_: str,
    phase: Phase | None,
    run: Run | None,
    history: list[HistoryEntry],
    md: Deployment,
    verbs: dict[str, str],
    now: datetime,
    verdict: Verdict | None = None,
) -> Outcome:
    """The next state. ``candidate``: spec.candidate (None: every new version of the deployment); ``phase``,
    ``run`` and ``history``: from status; ``verbs``: the verb annotations present (key -> value)."""
    return _Machine(plan, config, candidate, hash_, phase, run, list(history), md, verbs, now, verdict).decide()


class _Machine:
    def __init__(
        self, plan: list[Stage], config: Settings, candidate: str | None, hash_: str, phase: Phase | None,
        run: Run | None, history: list[HistoryEntry], md: Deployment, verbs: dict[str, str], now: datetime,
        verdict: Verdict | None,
    ) -> None:  # fmt: skip
        self.plan, self.config, self.candidate, self.hash = plan, config, candidate, hash_
        self.phase: Phase = phase or "Idle"
        self.run = run.model_copy(deep=True) if run else None
        self.history, self.md, self.verbs, self.now, self.verdict = history, md, verbs, now, verdict
        self.events: list[tuple[str, str, Literal["Normal", "Warning"]]] = []
        self.consumed: list[str] = []
        self.requeue: list[float] = []
        self.new_run = False
        self.measuring: Window | None = None

    # --- helpers -------------------------------------------------------------------------------------------------

    def out(self, reason: str, message: str, weight: int | None = None, degraded: bool = False,
            window: Window | None = None) -> Outcome:  # fmt: skip
        if weight is None:
            weight = self._weight()
        return Outcome(
            self.phase, self.run, self.history[-HISTORY_LIMIT:], weight, reason, message, self.events,
            self.consumed, min(self.requeue) if self.requeue else None, window, self.measuring, self.new_run,
            degraded,
        )  # fmt: skip

    def _weight(self) -> int:
        run = self.run
        if run is None or run.ended_at is not None:
            return 100 if run is not None and run.result == "Promoted" else 0
        if run.result == "Promoted":
            return 100
        if run.result is not None:
            return 0
        return desired_weight(self.plan, min(run.step, len(self.plan) - 1)) if self.plan else 0

    def event(self, reason: str, message: str, warning: bool = False) -> None:
        self.events.append((reason, message, "Warning" if warning else "Normal"))

    def verb(self, key: str) -> str | None:
        value = self.verbs.get(key)
        if value is not None and key not in self.consumed:
            self.consumed.append(key)
        return value

    def ignore(self, key: str, value: str, why: str) -> None:
        self.event("VerbIgnored", f"{key}={value} ignored: {why}", warning=True)

    def resumed(self, what: str) -> bool:
        """Whether the resume verb names the current step; consumed either way (another step's is ignored, so that
        a stale one cannot skip a later pause)."""
        assert self.run is not None
        resume = self.verb(RESUME)
        if resume == str(self.run.step):
            return True
        if resume is not None:
            self.ignore(RESUME, resume, f"{what} is step {self.run.step}")
        return False

    def active(self) -> bool:
        return self.run is not None and self.run.ended_at is None

    def start(self, version: str, why: str) -> None:
        self.archive()
        self.run = Run(candidate=version, stable=self.md.stable, spec_hash=self.hash, started_at=self.now,
                       step_started_at=self.now)  # fmt: skip
        self.phase = "Progressing"
        self.new_run = True
        self.event("RunStarted", f"rolling out {version} over {self.md.stable or 'nothing'}: {why}")

    def archive(self) -> None:
        run = self.run
        if run is not None and run.ended_at is not None and run.result is not None:
            entry = HistoryEntry(candidate=run.candidate, stable=run.stable, result=run.result, reason=run.reason,
                                 started_at=run.started_at, ended_at=run.ended_at)  # fmt: skip
            if not self.history or self.history[-1] != entry:
                self.history.append(entry)
            self.history = self.history[-HISTORY_LIMIT:]

    def roll_back(self, result: Literal["RolledBack", "Aborted"], reason: str, message: str) -> Outcome:
        run = self.run
        assert run is not None
        run.result, run.reason, run.cause = result, _clip(message), reason
        run.step_started_at = self.now
        run.window_start = None
        self.phase = "RollingBack"
        self.event(reason, f"rolling back {run.candidate}: {message}", warning=True)
        return self.rolling_back(reason)

    def rolling_back(self, reason: str) -> Outcome:
        run = self.run
        assert run is not None and run.result in ("RolledBack", "Aborted")
        md = self.md
        if md.canary != run.candidate or md.canary_weight == 0:
            run.ended_at = self.now
            self.phase = run.result
            back = md.stable or run.stable or "the stable version"
            self.event(run.result, f"{back} takes all traffic back from {run.candidate}")
            ended = "rolled back" if run.result == "RolledBack" else "aborted"
            return self.out(run.cause or reason, f"{ended} {run.candidate}: {run.reason}", 0,
                            degraded=run.result == "RolledBack")  # fmt: skip
        return self.out(reason, f"rolling back {run.candidate} ({md.canary_weight}% still on it): {run.reason}", 0,
                        degraded=True)  # fmt: skip

    def promote(self, why: str) -> Outcome:
        run = self.run
        assert run is not None
        run.result, run.reason, run.cause = "Promoted", _clip(why), "Promoted"
        run.step_started_at = self.now
        run.window_start = None
        self.phase = "Promoting"
        self.event("Promoting", f"{run.candidate} to 100%: {why}")
        return self.promoting()

    def promoting(self) -> Outcome:
        run = self.run
        assert run is not None
        md = self.md
        if md.stable == run.candidate:
            run.ended_at = self.now
            self.phase = "Promoted"
            self.event("Promoted", f"{run.candidate} is the stable version of {md.name}")
            return self.out("Promoted", f"promoted {run.candidate}: {run.reason}", 100)
        waited = _since(self.now, run.step_started_at)
        if waited > self.config.progress_deadline:
            return self.out("ProgressDeadlineExceeded", f"promoting {run.candidate}: deployment {md.name} has not "
                            f"made it stable in {_human(waited)}: {md.message or 'no message'}", 100,
                            degraded=True)  # fmt: skip
        self.requeue.append(max(1.0, self.config.progress_deadline - waited))
        return self.out("Promoting", f"promoting {run.candidate} ({run.reason}): waiting for deployment {md.name} "
                        "to make it stable", 100)  # fmt: skip

    def advance(self, why: str) -> None:
        run = self.run
        assert run is not None
        stage = self.plan[run.step]
        self.event("StepCompleted", f"step {run.step} ({stage.describe()}) of {run.candidate}: {why}")
        run.step += 1
        run.step_started_at = self.now
        run.measurements = 0
        run.window_start = None
        run.no_data_since = None

    # --- the decision ---------------------------------------------------------------------------------------------

    def decide(self) -> Outcome:
        md = self.md
        if not md.exists:
            return self.out("DeploymentNotFound", f"ModelDeployment {md.name} not found", degraded=True)
        if not md.canary_strategy:
            return self.out("StrategyNotCanary", f"ModelDeployment {md.name} does not use the canary strategy: set "
                            "its spec.rollout.strategy to canary", degraded=True)  # fmt: skip
        run = self.run

        # The deployment moved away from the candidate (its version edited, a newer production version): the run is
        # superseded. While promoting or rolling back, the candidate leaving its canary role is the expected end.
        moved = (
            run is not None
            and md.canary != run.candidate
            and (
                md.canary is not None
                or (md.target is not None and md.target != run.candidate)
                # Running nothing new: a run just started (retried, or asked by the registry's live-canary gate) gives
                # the deployment time to pick its candidate up.
                or (md.target is None and _since(self.now, run.started_at) > PICKUP_SECONDS)
            )
        )
        if self.active() and run is not None and run.result is None and moved:
            now_running = f" (it now runs {md.canary})" if md.canary else ""
            run.result, run.cause, run.ended_at = "Aborted", "Superseded", self.now
            run.reason = _clip(
                f"superseded: deployment {md.name} no longer runs {run.candidate} as its canary{now_running}"
            )
            self.phase = "Aborted"
            self.event("Superseded", run.reason, warning=True)

        retry = self.verb(RETRY)
        if not self.active():
            wanted = md.canary if self.candidate in (None, md.canary) else None
            if retry is not None:
                stopped = run is not None and run.candidate == retry and run.result in ("RolledBack", "Aborted")
                if stopped:
                    self.start(retry, f"retried by {RETRY}")
                else:
                    self.ignore(RETRY, retry, "not the candidate of a run that was rolled back or aborted")
            if not self.active() and wanted and (run is None or run.candidate != wanted):
                self.start(wanted, f"deployment {md.name} runs it as its canary")
        elif retry is not None:
            self.ignore(RETRY, retry, "a run is in progress")
        for key in (RESUME, PROMOTE, ABORT):
            if not self.active() and key in self.verbs:
                self.ignore(key, self.verb(key) or "", "no run in progress")
        if not self.active():
            return self.idle()

        run = self.run
        assert run is not None
        abort = self.verb(ABORT)
        if abort is not None:
            if abort != run.candidate:
                self.ignore(ABORT, abort, f"the run in progress is of {run.candidate}")
            elif run.result is None or (run.result == "Promoted" and self.phase == "Promoting"):
                return self.roll_back("Aborted", "Aborted", f"aborted by {ABORT}")
        if run.result in ("RolledBack", "Aborted"):
            return self.rolling_back("RollingBack")
        if run.result == "Promoted":
            return self.promoting()

        promote = self.verb(PROMOTE)
        if promote is not None:
            if promote == run.candidate:
                return self.promote(f"promoted by {PROMOTE}")
            self.ignore(PROMOTE, promote, f"the run in progress is of {run.candidate}")

        if run.spec_hash != self.hash:
            run.spec_hash, run.step, run.step_started_at = self.hash, 0, self.now
            run.measurements = run.failed = run.inconclusive = run.consecutive_errors = 0
            run.window_start = run.no_data_since = None
            run.resumed = []
            run.held = None
            self.event("StepsRestarted", f"the spec changed during the run of {run.candidate}: its steps start again")
        return self.steps()

    def idle(self) -> Outcome:
        run, md = self.run, self.md
        if run is not None and run.result is not None and run.ended_at is not None:
            self.phase = run.result
            verb = {"Promoted": "promoted", "RolledBack": "rolled back"}.get(run.result, "aborted")
            reason = run.cause or run.result
            return self.out(reason, f"{verb} {run.candidate}: {run.reason}", degraded=run.result == "RolledBack")
        self.phase = "Idle"
        if self.candidate is not None:
            return self.out("WaitingForCandidate", f"waiting for deployment {md.name} to run {self.candidate} as its "
                            "canary (set its spec.version, or make it the production version it follows)")  # fmt: skip
        return self.out("Idle", f"deployment {md.name} serves {md.stable or 'nothing'}; a new version it moves to "
                        "rolls out through these steps")  # fmt: skip

    def steps(self) -> Outcome:
        run, md, config = self.run, self.md, self.config
        assert run is not None
        while run.step < len(self.plan):
            stage = self.plan[run.step]
            if run.held:
                if self.resumed("the analysis held"):
                    run.held = None
                    run.inconclusive = 0
                    self.event("Resumed", f"analysis of {run.candidate} resumed at step {run.step} by {RESUME}")
                    continue
                self.phase = "Paused"
                return self.out("AnalysisInconclusive", f"held at step {run.step}: {run.held}; resume with kubectl "
                                f"mlops resume <rollout> (mlops.io/resume={run.step}) or abort")  # fmt: skip
            self.phase = "Progressing"
            if stage.kind == "weight":
                if md.canary == run.candidate and md.canary_weight == stage.weight:
                    self.advance(f"deployment {md.name} applied {stage.weight}%")
                    continue
                waited = _since(self.now, run.step_started_at)
                if waited > config.progress_deadline:
                    return self.roll_back("RolledBack", "ProgressDeadlineExceeded", f"progress deadline exceeded at "
                                          f"step {run.step}: deployment {md.name} did not apply {stage.weight}% to "
                                          f"{run.candidate} in {_human(waited)} (applied {md.canary_weight}%: "
                                          f"{md.message or 'no message'})")  # fmt: skip
                self.requeue.append(max(1.0, config.progress_deadline - waited))
                return self.with_background(
                    "WaitingForWeight", f"step {run.step}: waiting for deployment {md.name} to apply {stage.weight}% "
                    f"to {run.candidate} (applied {md.canary_weight}%)")  # fmt: skip
            if stage.kind == "pause":
                if stage.duration is not None:
                    left = stage.duration - _since(self.now, run.step_started_at)
                    if left <= 0:
                        self.advance(f"paused {_human(stage.duration)}")
                        continue
                    self.requeue.append(left)
                    self.phase = "Paused"
                    return self.with_background("Paused", f"step {run.step}: pause {_human(stage.duration)}, "
                                                f"{_human(left)} left")  # fmt: skip
                if self.resumed("the pause in progress"):
                    run.resumed = [*run.resumed, run.step][-64:]
                    self.event("Resumed", f"step {run.step} of {run.candidate} resumed by {RESUME}")
                    self.advance(f"resumed by {RESUME}")
                    continue
                self.phase = "Paused"
                return self.with_background("Paused", f"paused at step {run.step} until resumed: kubectl mlops resume "
                                            f"<rollout> (mlops.io/resume={run.step})")  # fmt: skip
            # analysis
            if not config.analysed:
                self.advance("no analysis configured")
                continue
            outcome = self.analyse(stage.metrics, counts=True)
            if outcome is not None:
                return outcome
            if run.measurements >= (stage.count or 1):
                self.advance(f"{run.measurements} measurement{'s' if run.measurements != 1 else ''} passed")
                continue
            return self.waiting_for_window("Analysing", f"step {run.step}: analysis, measurement "
                                           f"{run.measurements + 1} of {stage.count}")  # fmt: skip
        if config.manual_promotion:
            promote = self.verb(PROMOTE)
            if promote == run.candidate:
                return self.promote(f"promoted by {PROMOTE}")
            self.phase = "Paused"
            message = (f"every step of {run.candidate} passed; promote it with kubectl mlops promote <rollout> "
                       f"(mlops.io/promote={run.candidate})")  # fmt: skip
            return self.with_background("AwaitingPromotion", message)
        return self.promote("every step passed")

    def waiting_for_window(self, reason: str, message: str) -> Outcome:
        run = self.run
        assert run is not None and run.window_start is not None
        self.requeue.append(self.next_look(run.window_start))
        if run.no_data_since is not None:
            message += f"; no data since {run.no_data_since.isoformat()}"
        return self.out(reason, message)

    def next_look(self, start: datetime) -> float:
        """Seconds until the window that starts at ``start`` needs the machine: its opening (a provider that reads
        the servers takes its first reading then), else its end."""
        if self.now < start:
            return max(0.5, (start - self.now).total_seconds())
        end = start + timedelta(seconds=self.config.interval)
        return max(0.5, (end - self.now).total_seconds())

    def with_background(self, reason: str, message: str) -> Outcome:
        """A wait of a step other than an analysis: the background analysis measures meanwhile, from its step on,
        once the candidate takes traffic."""
        run, config = self.run, self.config
        assert run is not None
        if (
            config.analysed and config.background_from is not None and run.step >= config.background_from
            and self.md.canary == run.candidate and self.md.canary_weight > 0
        ):  # fmt: skip
            outcome = self.analyse(None, counts=False)
            if outcome is not None:
                return outcome
            if run.window_start is not None:
                self.requeue.append(self.next_look(run.window_start))
            message += "; measuring in the background"
        return self.out(reason, message)

    def analyse(self, metrics: tuple[str, ...] | None, counts: bool) -> Outcome | None:
        """Opens, closes and judges measurement windows. Returns an outcome when the machine must stop here: a
        window to measure, a rollback, a hold."""
        run, config = self.run, self.config
        assert run is not None
        if run.window_start is None:
            opens = (run.step_started_at or self.now) + timedelta(seconds=config.initial_delay)
            run.window_start = max(opens, self.now)
        start = run.window_start
        end = start + timedelta(seconds=config.interval)
        window = Window(start, end, run.step, metrics)
        if self.now < end:
            self.measuring = window if self.now >= start else None
            return None
        verdict = self.verdict
        if verdict is None:
            return self.out("Measuring", f"step {run.step}: measuring", window=window)
        self.verdict = None
        # The next window follows this one, unless the machine was away for longer than a window.
        run.window_start = end if (self.now - end).total_seconds() < config.interval else self.now
        result = verdict.result
        where = f"at step {run.step}"
        if result == "NoData":
            if config.no_data == "wait":
                first = run.no_data_since is None
                run.no_data_since = run.no_data_since or start
                waited = _since(self.now, run.no_data_since)
                if waited >= config.no_data_deadline:
                    return self.roll_back("RolledBack", "NoDataDeadlineExceeded", f"no data for {_human(waited)} "
                                          f"{where}: {verdict.message}")  # fmt: skip
                if first:  # once per wait: the status says how long it has lasted
                    self.event("NoData", f"{verdict.message}; waiting for data up to "
                               f"{_human(config.no_data_deadline)}")  # fmt: skip
                return self.analyse(metrics, counts)
            result = {"pass": "Pass", "fail": "Fail", "inconclusive": "Inconclusive"}[config.no_data]  # type: ignore[assignment]
        run.no_data_since = None
        if result == "Error":
            run.consecutive_errors += 1
            if run.consecutive_errors > config.consecutive_error_limit:
                return self.roll_back("RolledBack", "MeasurementErrors", f"{run.consecutive_errors} measurements in "
                                      f"a row could not be taken {where}: {verdict.message}")  # fmt: skip
            self.event("MeasurementError", f"{verdict.message} ({run.consecutive_errors} in a row, "
                       f"{config.consecutive_error_limit} tolerated)", warning=True)  # fmt: skip
            return self.analyse(metrics, counts)
        run.consecutive_errors = 0
        if counts:
            run.measurements += 1
        if result == "Fail":
            run.failed += 1
            self.event("MeasurementFailed", f"{verdict.message} {where}", warning=True)
            if verdict.critical or run.failed > config.failure_limit:
                tally = (
                    "a critical metric: no failure tolerated" if verdict.critical
                    else f"{run.failed} failed measurement{'s' if run.failed != 1 else ''}, {config.failure_limit} "
                    "tolerated"
                )  # fmt: skip
                return self.roll_back("RolledBack", "AnalysisFailed", f"{verdict.message} {where} ({tally})")
        elif result == "Inconclusive":
            run.inconclusive += 1
            self.event("MeasurementInconclusive", f"{verdict.message} {where}", warning=True)
            if run.inconclusive > config.inconclusive_limit:
                run.held = _clip(f"{run.inconclusive} inconclusive measurements ({verdict.message})")
                self.phase = "Paused"
                self.event("Held", f"analysis of {run.candidate} held at step {run.step}: {run.held}", warning=True)
                return self.out("AnalysisInconclusive", f"held at step {run.step}: {run.held}; resume with kubectl "
                                f"mlops resume <rollout> (mlops.io/resume={run.step}) or abort")  # fmt: skip
        return None
