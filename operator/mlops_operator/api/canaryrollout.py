"""CanaryRollout: progressive delivery of a deployment's new versions, judged on live traffic against the stable
version."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import ConfigDict, Field

from mlops_operator.api.common import (
    LIST_MAP_BY_NAME,
    ApiModel,
    DeploymentRef,
    Duration,
    MetricProvider,
    StatusBase,
    VersionName,
    cel,
    exactly_one,
    rule,
)

Weight = Annotated[int, Field(ge=0, le=100)]
MetricName = Annotated[str, Field(min_length=1, max_length=63, pattern=r"^[a-zA-Z][-a-zA-Z0-9_]*$")]
BUILTINS = ("errorRate", "clientErrorRate", "requestRate", "latencyP50", "latencyP95", "latencyP99", "predictionShift")
HISTORY_LIMIT = 10
RECENT_MEASUREMENTS = 5


class Pause(ApiModel):
    """Waits before the next step."""

    duration: Duration | None = None
    """How long to wait; without it, until the resume verb (mlops.io/resume=<step index>)."""


class AnalysisStep(ApiModel):
    """Measures and judges the candidate before going on: ``count`` measurements, or as many as fit in
    ``duration``; one measurement by default."""

    model_config = ConfigDict(
        json_schema_extra=cel(rule("!(has(self.count) && has(self.duration))", "set count or duration, not both"))
    )

    count: int | None = Field(default=None, ge=1, le=1000)
    """How many measurements (one per spec.analysis.interval)."""
    duration: Duration | None = None
    """How long to measure: as many measurements as whole intervals fit in it (at least one)."""
    metrics: list[MetricName] | None = Field(default=None, max_length=32)
    """The metrics judged at this step; by default every metric of spec.analysis."""


class Step(ApiModel):
    """One step: exactly one of setWeight, pause and analysis."""

    model_config = ConfigDict(json_schema_extra=cel(exactly_one("setWeight", "pause", "analysis")))

    set_weight: Weight | None = None
    """Send this percentage of the traffic to the candidate; the step ends when the deployment has applied it."""
    pause: Pause | None = None
    """Wait."""
    analysis: AnalysisStep | None = None
    """Measure and judge."""


class Ramp(ApiModel):
    """The shorthand for steps: for each weight, set it, then analyse for ``interval`` (or wait for it without
    spec.analysis). Exactly one of stepWeights and stepWeight."""

    model_config = ConfigDict(
        json_schema_extra=cel(
            exactly_one("stepWeights", "stepWeight"),
            rule(
                "!has(self.stepWeights) || self.stepWeights.isSorted()",
                "stepWeights must never decrease",
                ".stepWeights",
            ),
            rule(
                "!has(self.stepWeight) || self.stepWeight <= self.maxWeight",
                "stepWeight must not exceed maxWeight",
                ".stepWeight",
            ),
        )
    )

    step_weights: list[Annotated[int, Field(ge=1, le=100)]] | None = Field(default=None, min_length=1, max_length=64)
    """The weights in order, for example [5, 25, 50]."""
    step_weight: int | None = Field(default=None, ge=1, le=100)
    """Add this weight at each step, up to maxWeight."""
    max_weight: int = Field(default=50, ge=1, le=100)
    """With stepWeight: the largest weight before promotion."""
    interval: Duration = "1m"
    """How long each weight is analysed (or held) before the next."""


class Compare(ApiModel):
    """Judges the candidate against the stable version over the same window (Mann-Whitney U on the two versions'
    samples, the Hodges-Lehmann shift and its interval). A change fails when it is significant at ``confidence``, in
    a bad ``direction``, and larger than allowed as the ratio of the candidate's mean to the stable version's. Each
    side needs at least 3 samples per measurement (interval / step), else the metric has no data; a change can be
    significant at 95 % from 4 samples a side (at 98 % from 5)."""

    model_config = ConfigDict(
        json_schema_extra=cel(
            rule(
                "!has(self.criticalIncrease) || self.criticalIncrease >= self.allowedIncrease",
                "criticalIncrease must not be below allowedIncrease",
                ".criticalIncrease",
            ),
            rule(
                "!has(self.criticalDecrease) || self.criticalDecrease <= self.allowedDecrease",
                "criticalDecrease must not be above allowedDecrease",
                ".criticalDecrease",
            ),
        )
    )

    direction: Literal["increase", "decrease", "either"] = "increase"
    """Which change is bad: increase for latency and errors, decrease for scores and throughput."""
    allowed_increase: float = Field(default=1.0, ge=1)
    """The largest ratio of the candidate's mean to the stable version's that passes a significant increase (1.2:
    up to 20 % more is fine)."""
    allowed_decrease: float = Field(default=1.0, gt=0, le=1)
    """The smallest ratio that passes a significant decrease (0.8: down to 20 % less is fine)."""
    critical_increase: float | None = Field(default=None, ge=1)
    """A significant increase above this ratio fails the rollout at once, whatever the score."""
    critical_decrease: float | None = Field(default=None, gt=0, le=1)
    """A significant decrease below this ratio fails the rollout at once, whatever the score."""
    confidence: float = Field(default=0.95, ge=0.5, lt=1)
    """The confidence of the shift's interval: a change counts only when the interval excludes zero."""
    step: Duration = "10s"
    """The spacing of the samples within a measurement's window."""
    weight: float = Field(default=1, gt=0, le=100)
    """The metric's weight in the analysis score."""


class AnalysisMetric(ApiModel):
    """A metric measured on the candidate (and on the stable version, to compare), judged by thresholds on the
    candidate's value over the measurement's window, and or by comparison with the stable version."""

    model_config = ConfigDict(
        json_schema_extra=cel(
            exactly_one("builtin", "query"),
            rule(
                "has(self.min) || has(self.max) || has(self.compare)",
                "a metric needs at least one of min, max, compare",
            ),
            rule("!has(self.min) || !has(self.max) || self.min <= self.max", "min must not exceed max", ".min"),
            rule(
                "!has(self.builtin) || self.builtin != 'predictionShift' || !has(self.compare)",
                "predictionShift already compares the two versions: give it max, not compare",
                ".compare",
            ),
        )
    )

    name: MetricName
    """The metric's name, unique in the analysis."""
    builtin: Literal[BUILTINS] | None = None  # type: ignore[valid-type]
    """A metric of our model servers, no query needed: errorRate (share of 5xx answers, 0..1), clientErrorRate
    (share of 4xx, 0..1: a candidate with another signature shows here), requestRate (requests per second),
    latencyP50, latencyP95, latencyP99 (seconds), predictionShift (the Jensen-Shannon distance, 0..1, between the
    candidate's and the stable version's prediction distributions over the same window)."""
    query: str | None = Field(default=None, max_length=8192)
    """A PromQL query (prometheus provider) returning one number; {{ model }}, {{ version }}, {{ namespace }} and
    {{ interval }} are substituted, {{ version }} once per version measured."""
    min: float | None = None
    """The candidate's value must be at least this."""
    max: float | None = None
    """The candidate's value must be at most this."""
    compare: Compare | None = None
    """Judge the candidate against the stable version."""
    critical: bool = False
    """One failed measurement of this metric fails the rollout, whatever failureLimit says."""
    dry_run: bool = False
    """Measured and shown in status, never decides anything."""


class Background(ApiModel):
    """Keeps measuring during pauses and between analysis steps, from a given step on."""

    from_step: int = Field(default=0, ge=0, le=63)
    """The index of the first step measured in the background."""


class Judge(ApiModel):
    """How the compared metrics' verdicts make one score per measurement (100 x the weight of passing metrics over
    the weight of judged ones): Pass at ``pass`` or more, Marginal (counts as inconclusive) at ``marginal`` or more,
    Fail below."""

    model_config = ConfigDict(
        json_schema_extra=cel(rule("self.marginal <= self.pass", "marginal must not exceed pass", ".marginal"))
    )

    pass_: float = Field(default=90, ge=0, le=100, alias="pass")
    """The lowest passing score."""
    marginal: float = Field(default=75, ge=0, le=100)
    """The lowest marginal score."""


class Analysis(ApiModel):
    """Automatic analysis of the candidate against thresholds and against the stable version."""

    model_config = ConfigDict(
        json_schema_extra=cel(
            rule("duration(self.interval) >= duration('10s')", "interval must be at least 10s", ".interval"),
        )
    )

    provider: MetricProvider | None = None
    """Where measurements come from; by default the operator's (its --prometheus-url, else direct scraping of the
    model servers)."""
    interval: Duration = "1m"
    """The window of one measurement, and the time between measurements."""
    initial_delay: Duration = "0s"
    """Warm-up after a weight change before the first measurement's window opens."""
    failure_limit: int = Field(default=0, ge=0, le=100)
    """Failed measurements tolerated in a run; one more rolls back."""
    inconclusive_limit: int = Field(default=0, ge=0, le=100)
    """Inconclusive measurements tolerated in a run; one more pauses the rollout for a person (resume or abort)."""
    consecutive_error_limit: int = Field(default=4, ge=0, le=100)
    """Measurements in a row that could not be taken (provider errors) tolerated; one more rolls back."""
    no_data: Literal["pass", "fail", "inconclusive", "wait"] = "wait"
    """What a measurement without data counts as; wait measures again until data comes or noDataDeadline passes
    (then it fails, naming the metric)."""
    no_data_deadline: Duration = "5m"
    """With noData wait: how long to wait for data."""
    background: Background | None = None
    """Measure in the background too (pauses, between steps)."""
    judge: Judge = Judge()
    """The score thresholds of the compared metrics."""
    metrics: list[AnalysisMetric] = Field(min_length=1, max_length=32, json_schema_extra=LIST_MAP_BY_NAME)
    """The metrics."""


class CanaryRolloutSpec(ApiModel):
    """Moves traffic of a ModelDeployment (rollout strategy canary) to a candidate version step by step, analysing
    as it goes, then promotes it or rolls it back. Without a candidate it is the deployment's canary policy: every
    new version the deployment moves to runs through it."""

    model_config = ConfigDict(
        json_schema_extra=cel(
            exactly_one("steps", "ramp"),
            rule(
                "!has(self.steps) || self.steps.filter(s, has(s.setWeight)).map(s, s.setWeight).isSorted()",
                "steps[].setWeight must never decrease along the steps",
                ".steps",
            ),
            rule(
                "!has(self.steps) || !self.steps.exists(s, has(s.analysis)) || has(self.analysis)",
                "spec.analysis is required when a step runs an analysis",
                ".analysis",
                "FieldValueRequired",
            ),
            rule(
                "!has(self.steps) || !has(self.analysis) || self.steps.all(s, !has(s.analysis) || "
                "!has(s.analysis.metrics) || s.analysis.metrics.all(n, self.analysis.metrics.exists(m, m.name == n)))",
                "steps[].analysis.metrics must name metrics of spec.analysis.metrics",
                ".steps",
            ),
        )
    )

    deployment_ref: DeploymentRef
    """The ModelDeployment whose traffic is shifted."""
    candidate: VersionName | None = None
    """Only this version; without it, every new version of the deployment."""
    steps: list[Step] | None = Field(default=None, min_length=1, max_length=64)
    """The steps, in order; exactly one of steps and ramp."""
    ramp: Ramp | None = None
    """The shorthand for steps."""
    promotion: Literal["auto", "manual"] = "auto"
    """After the last step: auto promotes (100 %, then the candidate becomes stable); manual waits for the promote
    verb (mlops.io/promote=<candidate>)."""
    analysis: Analysis | None = None
    """The analysis of analysis steps, ramp steps and the background."""
    progress_deadline: Duration = "10m"
    """A step that makes no progress for this long (pauses excluded) rolls back, naming what it waited for."""


class Weights(ApiModel):
    """The traffic split."""

    stable: int = Field(default=100, ge=0, le=100)
    """Percent to the stable version."""
    canary: int = Field(default=0, ge=0, le=100)
    """Percent to the candidate."""


class Measurement(ApiModel):
    """One measurement of a metric."""

    at: datetime
    """When its window closed."""
    step: int | None = None
    """The step it was taken at."""
    canary: float | None = None
    """The candidate's value over the window."""
    stable: float | None = None
    """The stable version's value over the window."""
    verdict: Literal["Pass", "Fail", "Inconclusive", "NoData", "Error"]
    """The judgement."""
    message: str | None = Field(default=None, max_length=1024)
    """Why."""


class MetricStatus(ApiModel):
    """One metric's recent measurements and counts in the current run."""

    name: str
    """The metric."""
    source: str = Field(max_length=8192)
    """The builtin's name, or the query as written."""
    dry_run: bool = False
    """Shown, never decides."""
    canary: float | None = None
    """The candidate's last value."""
    stable: float | None = None
    """The stable version's last value."""
    verdict: str | None = None
    """The last verdict."""
    message: str | None = Field(default=None, max_length=1024)
    """The last verdict's reason."""
    passed: int = 0
    """Passed measurements."""
    failed: int = 0
    """Failed measurements."""
    inconclusive: int = 0
    """Inconclusive measurements."""
    no_data: int = 0
    """Measurements without data."""
    errors: int = 0
    """Measurements that could not be taken."""
    recent: list[Measurement] = Field(default=[], max_length=RECENT_MEASUREMENTS)
    """The latest measurements, newest last."""


class Run(ApiModel):
    """The run of one candidate through the steps."""

    candidate: str
    """The version rolled out."""
    stable: str | None = None
    """The version it is judged against and replaces."""
    spec_hash: str
    """The hash of the spec the run's steps came from: a spec edited mid-run restarts the steps."""
    started_at: datetime
    """When the run started."""
    step: int = 0
    """The index of the current step; the number of steps once they are all done."""
    step_started_at: datetime | None = None
    """When the current step started: for a weight change, when the deployment applied the weight."""
    measurements: int = 0
    """Measurements taken at the current analysis step."""
    window_start: datetime | None = None
    """When the open measurement window started."""
    failed: int = 0
    """Failed measurements in the run."""
    inconclusive: int = 0
    """Inconclusive measurements in the run."""
    consecutive_errors: int = 0
    """Measurements in a row that could not be taken."""
    no_data_since: datetime | None = None
    """With noData wait: since when measurements have had no data."""
    resumed: list[int] = Field(default=[], max_length=64)
    """The pauses resumed by the resume verb."""
    held: str | None = Field(default=None, max_length=1024)
    """Why the analysis is held for a person (too many inconclusive measurements)."""
    ended_at: datetime | None = None
    """When the run ended."""
    result: Literal["Promoted", "RolledBack", "Aborted"] | None = None
    """How the run ended."""
    reason: str | None = Field(default=None, max_length=1024)
    """Why it ended so."""
    cause: str | None = Field(default=None, max_length=64)
    """Why it ended, in one CamelCase word: Promoted, AnalysisFailed, ProgressDeadlineExceeded, ..."""


class HistoryEntry(ApiModel):
    """An ended run."""

    candidate: str
    """The version rolled out."""
    stable: str | None = None
    """The version it was judged against."""
    result: Literal["Promoted", "RolledBack", "Aborted"]
    """How the run ended."""
    reason: str | None = Field(default=None, max_length=1024)
    """Why."""
    started_at: datetime
    """When it started."""
    ended_at: datetime
    """When it ended."""


Phase = Literal["Idle", "Progressing", "Paused", "Promoting", "Promoted", "RollingBack", "RolledBack", "Aborted"]


class CanaryRolloutStatus(StatusBase):
    """Where the rollout is and why."""

    phase: Phase | None = None
    """Idle (no candidate to roll out), Progressing, Paused (a pause, a manual promotion, or inconclusive analysis
    waiting for a person), Promoting (100 % asked, waiting for the deployment), Promoted, RollingBack (the stable
    version is taking the traffic back), RolledBack, Aborted."""
    candidate: str | None = None
    """The current run's candidate: the version the weights are for."""
    stable: str | None = None
    """The version the candidate is judged against."""
    current_step: int | None = None
    """The index of the step in progress."""
    steps: int | None = None
    """The number of steps."""
    weights: Weights | None = None
    """The split asked of the deployment."""
    applied: Weights | None = None
    """The split the deployment reports."""
    message: str | None = Field(default=None, max_length=4096)
    """The reason of the last decision."""
    run: Run | None = None
    """The current run (or the last one, once ended)."""
    metrics: list[MetricStatus] = Field(default=[], max_length=32)
    """Every metric's last values and verdicts in the current run."""
    history: list[HistoryEntry] = Field(default=[], max_length=HISTORY_LIMIT)
    """Ended runs, newest last."""
