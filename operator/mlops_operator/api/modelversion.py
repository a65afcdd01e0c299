"""ModelVersion: one immutable version of one model in the registry, with its stage lifecycle."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import ConfigDict, Field

from mlops_operator.api.common import (
    LIST_MAP_BY_NAME,
    ApiModel,
    DeploymentRef,
    DnsLabel,
    Sha256,
    StatusBase,
    Uri,
    VersionName,
    cel,
    immutable,
    rule,
)

Stage = Literal["development", "staging", "production", "archived"]
Format = Literal["sklearn", "onnx", "xgboost", "lightgbm"]
Datatype = Literal[
    "BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64",
    "FP16", "FP32", "FP64", "BF16", "BYTES",
]  # fmt: skip


class TensorSpec(ApiModel):
    """One named tensor of the model's signature, as in the Open Inference Protocol V2 metadata."""

    name: str = Field(min_length=1, max_length=128)
    """The tensor's name, as sent in a V2 inference request."""
    datatype: Datatype
    """The V2 datatype of every element."""
    shape: list[Annotated[int, Field(ge=-1)]] = Field(min_length=1, max_length=8)
    """The tensor's shape; -1 marks a variable dimension (usually the batch)."""
    features: list[Annotated[str, Field(max_length=128)]] | None = Field(default=None, max_length=4096)
    """Names of the columns along the last dimension, matched with the reference dataset's columns for drift."""


class Signature(ApiModel):
    """The model's inputs and outputs; the model server validates every request against it."""

    inputs: list[TensorSpec] = Field(min_length=1, max_length=64, json_schema_extra=LIST_MAP_BY_NAME)
    """Input tensors."""
    outputs: list[TensorSpec] = Field(default=[], max_length=64, json_schema_extra=LIST_MAP_BY_NAME)
    """Output tensors."""


class DatasetRef(ApiModel):
    """A dataset the model was trained or evaluated on."""

    uri: Uri
    """Where the dataset is."""
    checksum: Sha256 | None = None
    """The dataset's sha256."""


class Lineage(ApiModel):
    """Where the version came from. Immutable once the object exists."""

    run_id: str | None = Field(default=None, max_length=256)
    """The training run's id in the experiment tracker."""
    experiment: str | None = Field(default=None, max_length=256)
    """The experiment the run belongs to."""
    commit: str | None = Field(default=None, max_length=256)
    """The source commit the training code was built from."""
    dataset: DatasetRef | None = None
    """The training dataset."""
    parent: VersionName | None = None
    """The version this one was fine-tuned or retrained from."""


class Metric(ApiModel):
    """An offline evaluation metric of the version."""

    name: str = Field(min_length=1, max_length=128)
    """The metric's name, for example accuracy, auc or logloss."""
    value: float
    """The measured value."""
    lower_is_better: bool = False
    """Direction: true for losses and error rates, false (the default) for scores."""


class Gate(ApiModel):
    """A quality gate on one metric: absolute bounds, or not worse than the current production version."""

    model_config = ConfigDict(
        json_schema_extra=cel(
            rule(
                "has(self.min) || has(self.max) || has(self.notWorseThan)",
                "a gate needs at least one of min, max, notWorseThan",
            ),
            rule("!has(self.min) || !has(self.max) || self.min <= self.max", "min must not exceed max"),
            rule(
                "!has(self.tolerance) || has(self.notWorseThan)",
                "tolerance applies only with notWorseThan",
                field_path=".tolerance",
            ),
        )
    )

    metric: str = Field(min_length=1, max_length=128)
    """The metric's name in spec.metrics. A missing metric fails the gate."""
    min: float | None = None
    """The metric must be at least this."""
    max: float | None = None
    """The metric must be at most this."""
    not_worse_than: Literal["production"] | None = None
    """Compare with the model's current production version, in the metric's direction."""
    tolerance: float | None = Field(default=None, ge=0)
    """With notWorseThan: how much worse than production is still accepted (absolute, default 0)."""


class ReferenceData(ApiModel):
    """A reference dataset: the controller profiles it once per version for drift detection."""

    uri: Uri
    """Where the dataset is (CSV or Parquet)."""
    format: Literal["csv", "parquet"] | None = None
    """The file format; by default taken from the URI's extension."""
    features: list[Annotated[str, Field(max_length=128)]] | None = Field(default=None, max_length=4096)
    """Columns to profile; by default every column."""
    prediction: str | None = Field(default=None, max_length=128)
    """The column holding the model's predictions, profiled as the prediction distribution."""


class LiveCanary(ApiModel):
    """The live-canary gate."""

    deployment_ref: DeploymentRef
    """The ModelDeployment (following production, with the canary strategy) that runs the version as its canary."""


class ModelVersionSpec(ApiModel):
    """One immutable version of one model. Its identity (model, version), source and lineage never change."""

    model_config = ConfigDict(
        json_schema_extra=cel(
            rule(
                "has(self.lineage) == has(oldSelf.lineage) && (!has(self.lineage) || self.lineage == oldSelf.lineage)",
                "lineage is immutable",
                field_path=".lineage",
                reason="FieldValueForbidden",
            ),
        )
    )

    model: DnsLabel = Field(json_schema_extra=immutable("model"))
    """The registered model's name; with version, unique in the namespace. Immutable."""
    version: VersionName = Field(json_schema_extra=immutable("version"))
    """The version, for example 1.2.0. Immutable."""
    description: str | None = Field(default=None, max_length=4096)
    """What changed in this version."""
    source: Uri = Field(json_schema_extra=immutable("source"))
    """The artifact's location: file://, http(s)://, s3://, gs:// or pvc://. Immutable."""
    checksum: Sha256 | None = None
    """The artifact's sha256, verified by streaming the artifact."""
    format: Format
    """The artifact's format, which selects the model server's runtime."""
    signature: Signature | None = None
    """The model's inputs and outputs."""
    lineage: Lineage | None = None
    """Where the version came from. Immutable."""
    metrics: list[Metric] = Field(default=[], max_length=64, json_schema_extra=LIST_MAP_BY_NAME)
    """Offline evaluation metrics, used by the gates and the comparison with production."""
    reference: ReferenceData | None = None
    """Reference data for the drift profile."""
    stage: Stage = "development"
    """The desired stage; the controller grants it when the artifact is verified and, for production, every gate
    passes."""
    gates: list[Gate] = Field(default=[], max_length=32)
    """Quality gates that production requires."""
    live_canary: LiveCanary | None = None
    """Production also waits for live evidence: the version runs as the canary of this deployment under its
    CanaryRollout, and is granted production once the rollout promotes it (refused if it rolls it back)."""


class CanaryRun(ApiModel):
    """A CanaryRollout's run of this version."""

    rollout: str
    """The CanaryRollout."""
    deployment: str
    """The ModelDeployment it steered."""
    result: Literal["Running", "Promoted", "RolledBack", "Aborted"]
    """How it ended, or Running."""
    reason: str | None = Field(default=None, max_length=1024)
    """Why it ended so."""
    started_at: datetime | None = None
    """When it started."""
    ended_at: datetime | None = None
    """When it ended."""


class GateResult(ApiModel):
    """The verdict of one gate."""

    metric: str
    """The gated metric."""
    value: float | None = None
    """The version's value of the metric, when it has one."""
    required: str
    """What the gate requires, for example '>= 0.9' or '>= 0.94 (production 1.0.0 0.95, tolerance 0.01)'."""
    passed: bool
    """Whether the gate passes."""
    reason: str | None = None
    """Why it fails, when it does."""


class MetricComparison(ApiModel):
    """One metric compared with the production version."""

    name: str
    """The metric."""
    from_: float | None = Field(default=None, alias="from")
    """Production's value."""
    to: float | None = None
    """This version's value."""
    change: float | None = None
    """to - from."""
    improved: bool | None = None
    """Whether the change is an improvement in the metric's direction."""


class Comparison(ApiModel):
    """This version's metrics compared with the model's current production version."""

    against: str | None = None
    """The production version compared with."""
    metrics: list[MetricComparison] = []
    """One entry per metric."""


class HistoryEntry(ApiModel):
    """A granted stage transition."""

    stage: Stage
    """The stage entered."""
    at: datetime
    """When."""
    reason: str
    """Why, as a CamelCase word: Requested, Promoted, SupersededBy, ..."""
    message: str | None = None
    """Details."""


class ArtifactStatus(ApiModel):
    """What the artifact check found."""

    verified: bool = False
    """Whether the source was reached and, when a checksum is given, matched."""
    sha256: str | None = None
    """The sha256 computed from the artifact."""
    size: int | None = None
    """The artifact's size in bytes."""
    checked_at: datetime | None = None
    """When the artifact was last checked."""
    attempts: int | None = None
    """Failed attempts since the last success."""
    checksum: str | None = None
    """The spec.checksum the artifact was checked against (the check is redone when it changes)."""
    mismatch: bool | None = None
    """The artifact did not match spec.checksum: final until spec.checksum changes."""
    refused: bool | None = None
    """The operator's outbound policy refuses the source (reason SourceNotAllowed): nothing was read. Looked at again
    when the spec changes or the operator restarts."""
    error: str | None = None
    """The last error, when the check failed."""


class ProfileStatus(ApiModel):
    """The reference profile computed from spec.reference."""

    config_map: str
    """The ConfigMap holding the profile (key profile.json), owned by this ModelVersion."""
    uri: str | None = None
    """The reference dataset profiled."""
    rows: int | None = None
    """Reference rows profiled."""
    features: int | None = None
    """Features profiled."""
    computed_at: datetime | None = None
    """When the profile was computed."""
    attempts: int | None = None
    """Failed attempts to read an unreachable dataset since the last success."""


class StageRequest(ApiModel):
    """When spec.stage was set to its current value."""

    stage: Stage
    """The requested stage."""
    at: datetime
    """When it was requested: the time of the write that set it (from managedFields), or when it was first seen."""


class ModelVersionStatus(StatusBase):
    """What the registry granted and verified."""

    stage: Stage | None = None
    """The granted stage."""
    requested: StageRequest | None = None
    """The stage request being acted on; among versions asking for production, the latest request wins."""
    artifact: ArtifactStatus | None = None
    """The artifact check."""
    gates: list[GateResult] = []
    """Each gate's value, requirement and verdict."""
    comparison: Comparison | None = None
    """Metrics compared with the current production version."""
    profile: ProfileStatus | None = None
    """The reference profile."""
    history: list[HistoryEntry] = Field(default=[], max_length=50)
    """Granted stage transitions, oldest first, the latest 50."""
    canaries: list[CanaryRun] = Field(default=[], max_length=10)
    """The CanaryRollout runs of this version on any deployment of its model, oldest first, the latest 10."""
