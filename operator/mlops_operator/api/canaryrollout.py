"""CanaryRollout: progressive delivery of a candidate version with automatic analysis."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import ConfigDict, Field

from mlops_operator.api.common import (
    LIST_MAP_BY_NAME,
    ApiModel,
    DnsLabel,
    Duration,
    MetricProvider,
    StatusBase,
    VersionName,
    cel,
    exactly_one,
    rule,
)

Weight = Annotated[int, Field(ge=0, le=100)]


class Pause(ApiModel):
    """Waits before the next step."""

    duration: Duration | None = None
    """How long to wait; without it, the rollout waits for the resume verb."""


class AnalysisStep(ApiModel):
    """Runs the analysis at this step before going on."""

    metrics: list[Annotated[str, Field(max_length=128)]] | None = Field(default=None, max_length=32)
    """The analysis metrics to run; by default all of spec.analysis.metrics."""
    duration: Duration | None = None
    """How long to measure; by default the analysis interval."""


class Step(ApiModel):
    """One step: exactly one of setWeight, pause and analysis."""

    model_config = ConfigDict(json_schema_extra=cel(exactly_one("setWeight", "pause", "analysis")))

    set_weight: Weight | None = None
    """Send this percentage of the traffic to the candidate."""
    pause: Pause | None = None
    """Wait."""
    analysis: AnalysisStep | None = None
    """Measure and judge."""


class Compare(ApiModel):
    """Compares the candidate's measurements with the stable version's."""

    judge: Literal["mannWhitney", "ratio"] = "mannWhitney"
    """mannWhitney: a one-sided Mann-Whitney U test on the samples; ratio: the candidate's mean over stable's."""
    direction: Literal["increase", "decrease", "either"] = "increase"
    """Which change is bad: increase for latency and errors, decrease for scores."""
    confidence: float = Field(default=0.95, gt=0, lt=1)
    """The statistical confidence at which a change counts as real."""
    allowed_increase: float | None = Field(default=None, ge=1)
    """ratio: the largest accepted ratio of candidate to stable, for example 1.1."""


class AnalysisMetric(ApiModel):
    """A metric measured on the candidate (and the stable version, to compare)."""

    model_config = ConfigDict(
        json_schema_extra=cel(
            exactly_one("builtin", "query"),
            rule(
                "has(self.min) || has(self.max) || has(self.compare)",
                "a metric needs at least one of min, max, compare",
            ),
            rule("!has(self.min) || !has(self.max) || self.min <= self.max", "min must not exceed max", ".min"),
        )
    )

    name: str = Field(min_length=1, max_length=128)
    """The metric's name, unique in the analysis."""
    builtin: Literal["errorRate", "latencyP50", "latencyP95", "latencyP99", "requestRate"] | None = None
    """A metric of our model servers, no query needed."""
    query: str | None = Field(default=None, max_length=8192)
    """A PromQL query; {{ version }}, {{ model }} and {{ namespace }} are substituted."""
    min: float | None = None
    """The candidate's value must be at least this."""
    max: float | None = None
    """The candidate's value must be at most this."""
    compare: Compare | None = None
    """Judge the candidate against the stable version."""


class Analysis(ApiModel):
    """Automatic analysis of the candidate against thresholds and against the stable version."""

    provider: MetricProvider = MetricProvider(direct={})
    """Where measurements come from."""
    interval: Duration = "1m"
    """How often to measure."""
    metrics: list[AnalysisMetric] = Field(min_length=1, max_length=32, json_schema_extra=LIST_MAP_BY_NAME)
    """The metrics."""
    failure_limit: int = Field(default=1, ge=0, le=100)
    """Failed measurements tolerated before rolling back."""
    no_data: Literal["pass", "fail", "inconclusive", "wait"] = "wait"
    """What a measurement without data counts as; wait retries until noDataDeadline."""
    no_data_deadline: Duration = "10m"
    """With noData wait: how long to wait for data before failing."""


class CanaryRolloutSpec(ApiModel):
    """Moves traffic of a ModelDeployment to a candidate version step by step, analysing as it goes."""

    model_config = ConfigDict(
        json_schema_extra=cel(
            exactly_one("steps", "stepWeight"),
            rule(
                "!has(self.steps) || self.steps.filter(s, has(s.setWeight)).map(s, s.setWeight).isSorted()",
                "steps[].setWeight must never decrease along the steps",
                ".steps",
            ),
            rule(
                "!has(self.stepWeight) || self.stepWeight <= self.maxWeight",
                "stepWeight must not exceed maxWeight",
                ".stepWeight",
            ),
            rule(
                "!has(self.steps) || !self.steps.exists(s, has(s.analysis)) || has(self.analysis)",
                "spec.analysis is required when a step runs an analysis",
                ".analysis",
                "FieldValueRequired",
            ),
        )
    )

    deployment_ref: DnsLabel
    """The ModelDeployment whose traffic is shifted."""
    candidate: VersionName
    """The version rolled out."""
    steps: list[Step] | None = Field(default=None, min_length=1, max_length=64)
    """The steps, in order; exactly one of steps and stepWeight."""
    step_weight: Weight | None = Field(default=None, gt=0)
    """Shorthand: add this weight each interval, analysing before each increase, up to maxWeight, then promote."""
    max_weight: Weight = Field(default=50, gt=0)
    """Shorthand: the largest weight before promotion."""
    interval: Duration = "1m"
    """Shorthand: the time between increases."""
    analysis: Analysis | None = None
    """The analysis run at analysis steps (and between shorthand increases)."""
    progress_deadline: Duration = "10m"
    """A step that makes no progress for this long fails the rollout."""


class Measurement(ApiModel):
    """One measurement of one analysis metric."""

    metric: str
    """The metric."""
    at: datetime
    """When it was taken."""
    canary: float | None = None
    """The candidate's value."""
    stable: float | None = None
    """The stable version's value."""
    verdict: Literal["Pass", "Fail", "Inconclusive", "NoData", "Error"]
    """The judgement."""
    message: str | None = None
    """Why."""
    query: str | None = None
    """The query run, with its placeholders substituted."""


class Weights(ApiModel):
    """The traffic split."""

    stable: int = 100
    """Percent to the stable version."""
    canary: int = 0
    """Percent to the candidate."""


class CanaryRolloutStatus(StatusBase):
    """Where the rollout is and why."""

    phase: Literal["Pending", "Progressing", "Paused", "Promoted", "RolledBack", "Failed", "Aborted"] | None = None
    """The rollout's phase."""
    current_step: int | None = None
    """The index of the step in progress."""
    step_started_at: datetime | None = None
    """When the current step started."""
    stable_version: str | None = None
    """The version the candidate replaces."""
    weights: Weights | None = None
    """The traffic split."""
    failed_measurements: int | None = None
    """Failed measurements so far."""
    measurements: list[Measurement] = Field(default=[], max_length=100)
    """The latest measurements, newest last."""
