"""DriftMonitor: data and prediction drift of live traffic (a ModelDeployment's servers) or of batch data (a CSV or
Parquet dataset) against a ModelVersion's reference profile, on a schedule. The statistics are ``logic.drift``'s."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import ConfigDict, Field

from mlops_operator.api.common import (
    LIST_MAP_BY_NAME,
    ApiModel,
    DeploymentRef,
    DnsLabel,
    Duration,
    MetricProvider,
    StatusBase,
    cel,
    exactly_one,
    rule,
)

Method = Literal["auto", "psi", "ks", "jensenShannon", "wasserstein", "chiSquare", "zTest"]
Verdict = Literal["Drifted", "NotDrifted", "NoData", "Error"]
P_VALUE_RULE = rule(
    "!has(self.threshold) || !has(self.method) || !(self.method in ['ks', 'chiSquare', 'zTest']) || "
    "self.threshold <= 1.0",
    "threshold of ks, chiSquare and zTest is a p-value: within 0..1",
    ".threshold",
)
HISTORY = 20
"""Dataset-level results kept in status.history."""


class FeatureDrift(ApiModel):
    """How one feature's drift is measured (overrides numMethod / catMethod and the method's threshold)."""

    model_config = ConfigDict(json_schema_extra=cel(P_VALUE_RULE))

    name: str = Field(min_length=1, max_length=128)
    """The feature (a column of the reference profile, or the prediction)."""
    method: Method = "auto"
    """The statistic; auto chooses by type and sample size (see numMethod)."""
    threshold: float | None = Field(default=None, ge=0)
    """The p-value below which (ks, chiSquare, zTest) or the distance at or above which (psi, jensenShannon,
    wasserstein) the feature has drifted; by default 0.05 for the tests and 0.1 for the distances."""


class PredictionDrift(ApiModel):
    """Drift of the model's predictions (the profile's prediction column)."""

    model_config = ConfigDict(json_schema_extra=cel(P_VALUE_RULE))

    enabled: bool = True
    """Whether predictions are analysed."""
    method: Method = "auto"
    """The statistic; by default as for features."""
    threshold: float | None = Field(default=None, ge=0)
    """The drift threshold; by default the method's."""
    counts_toward_share: bool = True
    """Whether a drifted prediction counts as a drifted feature in the dataset's share."""


class DatasetSource(ApiModel):
    """Batch data: scoring logs or any table of the model's inputs (and predictions), as CSV or Parquet."""

    uri: str = Field(pattern=r"^(file|https?|s3|gs)://.+$", max_length=2048)
    """Where the dataset is (file://, http(s)://, s3://, gs://), read with the registry's storage code under the
    operator's outbound policy."""
    format: Literal["csv", "parquet"] | None = None
    """By default from the file name's extension."""
    time_column: str | None = Field(default=None, min_length=1, max_length=128)
    """A timestamp column: only rows within spec.window of the newest are compared. Without it every row is."""
    prediction_column: str | None = Field(default=None, min_length=1, max_length=128)
    """The prediction column; by default the profile's."""


class ReferenceSource(ApiModel):
    """The reference the current data is compared with."""

    model_version: DnsLabel
    """A ModelVersion (object name, this namespace) whose reference profile is used."""


class PerformanceCheck(ApiModel):
    """The model's performance on labelled batch data (delayed labels joined to its predictions by the user's job)
    against the metric its ModelVersion registers: concept drift."""

    metric: Literal["accuracy", "auc", "logLoss", "rmse", "mae"]
    """accuracy (predictions equal to labels), auc and logLoss (two classes; the prediction column holds the
    positive class's score or probability), rmse and mae (regression)."""
    label_column: str = Field(min_length=1, max_length=128)
    """The column of true labels (rows without one are left out)."""
    prediction_column: str | None = Field(default=None, min_length=1, max_length=128)
    """The column the metric scores; by default dataset.predictionColumn, else the profile's prediction."""
    registered_metric: str | None = Field(default=None, min_length=1, max_length=128)
    """The name of the metric in the ModelVersion's spec.metrics; by default the metric's."""
    tolerance: float = Field(default=0.05, ge=0)
    """How much worse than registered (absolute) the metric may be before PerformanceDegraded is True."""
    min_samples: int = Field(default=100, ge=1)
    """Fewer labelled rows: no verdict (PerformanceDegraded Unknown)."""


class OnDrift(ApiModel):
    """What the operator does when the dataset drifts."""

    abort_canary: bool = False
    """Abort the deployment's running canary (the CanaryRollout's abort verb) when the drift is seen on the
    canary's traffic: with this set, a monitor of a deployment with a canary analyses the canary version."""


class DriftMonitorSpec(ApiModel):
    """Compares live inputs and predictions of a ModelDeployment, or a batch dataset, with a reference profile."""

    model_config = ConfigDict(
        json_schema_extra=cel(
            exactly_one("deploymentRef", "dataset"),
            rule(
                "duration(self.window) >= duration(self.interval)",
                "window must not be shorter than interval",
                ".window",
            ),
            rule("duration(self.interval) >= duration('10s')", "interval must be at least 10s", ".interval"),
            rule(
                "!has(self.dataset) || has(self.reference)",
                "a dataset monitor needs reference.modelVersion: there is no deployment to take it from",
                ".reference",
            ),
            rule(
                "!has(self.performance) || has(self.dataset)",
                "performance needs dataset: labels come with batch data",
                ".performance",
            ),
            rule(
                "!has(self.onDrift) || !self.onDrift.abortCanary || has(self.deploymentRef)",
                "onDrift.abortCanary needs deploymentRef: a dataset has no canary",
                ".onDrift.abortCanary",
            ),
        )
    )

    deployment_ref: DeploymentRef | None = None
    """The ModelDeployment whose servers count the live data (their drift sketches); exactly one of deploymentRef
    and dataset."""
    dataset: DatasetSource | None = None
    """A dataset compared as a whole, exactly (raw values)."""
    reference: ReferenceSource | None = None
    """The reference profile; by default the profile of the version the deployment serves (its stable version)."""
    interval: Duration = "5m"
    """How often drift is computed (at least 10s)."""
    window: Duration = "1h"
    """How much recent traffic each analysis covers (live: whole minutes, the servers keep 24h)."""
    min_samples: int = Field(default=500, ge=1)
    """Fewer samples than this in the window: no verdict (DriftDetected Unknown, reason NotEnoughSamples)."""
    num_method: Method = "auto"
    """The method of numeric features: auto is ks up to 1,000 samples on the smaller side and wasserstein above."""
    cat_method: Method = "auto"
    """The method of categorical features: auto is chiSquare (zTest for two categories) up to 1,000 samples and
    jensenShannon above."""
    features: list[FeatureDrift] | None = Field(default=None, max_length=1024, json_schema_extra=LIST_MAP_BY_NAME)
    """Per-feature settings; features not listed use numMethod / catMethod."""
    exclude: list[str] | None = Field(default=None, max_length=1024)
    """Features left out."""
    multiple_testing: Literal["none", "bonferroni", "benjaminiHochberg"] = "none"
    """Adjustment of the p-value methods' thresholds across features."""
    dataset_drift_share: float = Field(default=0.5, ge=0, le=1)
    """The dataset has drifted when at least this share of judged features has."""
    prediction: PredictionDrift = PredictionDrift()
    """Prediction drift."""
    performance: PerformanceCheck | None = None
    """Performance (concept) drift from labels in the dataset (condition PerformanceDegraded)."""
    on_drift: OnDrift | None = None
    """Actions on drift."""
    provider: MetricProvider | None = None
    """Where live counts come from: the servers themselves (direct), or a Prometheus that scrapes them (increase of
    mlops_server_feature_bin_total over the window). By default the operator's --prometheus-url, else direct."""


class FeatureResult(ApiModel):
    """The drift verdict of one feature."""

    name: str
    """The feature, or the prediction."""
    method: str
    """The statistic used (auto resolved)."""
    statistic: float | None = None
    """The statistic's value."""
    p_value: float | None = None
    """The p-value, for the tests."""
    threshold: float | None = None
    """The threshold applied (after multiple testing)."""
    verdict: Verdict
    """Drifted, NotDrifted, NoData (too few samples) or Error."""
    samples: int = 0
    """Non-missing values in the window."""
    missing_share: float | None = None
    """The share of missing values in the window."""
    reason: str | None = Field(default=None, max_length=1024)
    """What drifted (distribution, missing, outOfRange, unseen), or why there is no verdict."""


class ReferenceStatus(ApiModel):
    """The reference analysed against."""

    model_version: str | None = None
    """The ModelVersion whose profile it is."""
    config_map: str | None = None
    """The ConfigMap holding the profile."""
    digest: str | None = None
    """sha256 of the profile JSON."""


class PerformanceStatus(ApiModel):
    """The model's performance on the labelled rows of the last analysis."""

    metric: str
    """The metric."""
    value: float | None = None
    """Its value on the labelled rows."""
    registered: float | None = None
    """The ModelVersion's registered value."""
    tolerance: float
    """The tolerance applied."""
    degraded: bool | None = None
    """Whether it is worse than registered by more than the tolerance (unset: not judged)."""
    samples: int = 0
    """Labelled rows scored."""
    reason: str | None = Field(default=None, max_length=1024)
    """The comparison in words, or why there is none."""


class HistoryEntry(ApiModel):
    """One past analysis, dataset level."""

    at: datetime
    """When the analysis ran."""
    verdict: Verdict
    """The dataset's verdict."""
    drifted_share: float | None = None
    """The share of judged features that drifted."""
    samples: int | None = None
    """Samples in the window."""


class DriftMonitorStatus(StatusBase):
    """The latest drift analysis."""

    last_check: datetime | None = None
    """When drift was last computed."""
    window_start: datetime | None = None
    """The start of the data analysed."""
    window_end: datetime | None = None
    """Its end."""
    complete: bool | None = None
    """Whether every server counted for the whole window (a server that restarted within it did not)."""
    version: str | None = None
    """The version analysed (live)."""
    samples: int | None = None
    """Samples in the window."""
    reference: ReferenceStatus | None = None
    """The reference profile."""
    features: list[FeatureResult] = Field(default=[], max_length=1024)
    """Per-feature results."""
    prediction: FeatureResult | None = None
    """The prediction's result."""
    drifted_features: int | None = None
    """Features that drifted (the prediction included when it counts)."""
    judged_features: int | None = None
    """Features with a verdict."""
    drifted_share: float | None = None
    """drifted / judged."""
    verdict: Verdict | None = None
    """The dataset's verdict."""
    message: str | None = Field(default=None, max_length=4096)
    """What the last analysis found, in a sentence."""
    performance: PerformanceStatus | None = None
    """The performance check's result."""
    history: list[HistoryEntry] = Field(default=[], max_length=HISTORY)
    """The last dataset-level results, newest last."""
