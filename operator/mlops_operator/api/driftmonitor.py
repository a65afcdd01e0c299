"""DriftMonitor: scheduled data and prediction drift analysis against the reference profile."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

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
    rule,
)

Method = Literal["psi", "ks", "jensenShannon", "wasserstein", "chiSquare"]


class FeatureDrift(ApiModel):
    """How one feature's drift is measured."""

    name: str = Field(min_length=1, max_length=128)
    """The feature (a column of the reference profile)."""
    method: Method | None = None
    """The statistic; by default psi for numeric and chiSquare for categorical features."""
    threshold: float | None = Field(default=None, ge=0)
    """The score above which (or p-value below which, for ks and chiSquare) the feature has drifted; by default
    the method's usual threshold."""


class PredictionDrift(ApiModel):
    """Drift of the model's predictions."""

    enabled: bool = True
    """Whether predictions are analysed."""
    method: Method | None = None
    """The statistic; by default as for features."""
    threshold: float | None = Field(default=None, ge=0)
    """The drift threshold; by default the method's usual one."""


class DriftMonitorSpec(ApiModel):
    """Compares live inputs and predictions of a ModelDeployment with its version's reference profile."""

    model_config = ConfigDict(
        json_schema_extra=cel(
            rule(
                "duration(self.window) >= duration(self.interval)",
                "window must not be shorter than interval",
                ".window",
            ),
        )
    )

    deployment_ref: DnsLabel
    """The ModelDeployment whose model servers count the live data."""
    version: VersionName | None = None
    """The served version analysed; by default the stable one."""
    interval: Duration = "5m"
    """How often drift is computed."""
    window: Duration = "1h"
    """How much recent traffic each analysis covers."""
    min_samples: int = Field(default=500, ge=1)
    """Fewer live samples than this in the window: no verdict (status says so)."""
    features: list[FeatureDrift] | None = Field(default=None, max_length=1024, json_schema_extra=LIST_MAP_BY_NAME)
    """Per-feature settings; features not listed use the defaults."""
    prediction: PredictionDrift = PredictionDrift()
    """Prediction drift."""
    dataset_drift_share: float = Field(default=0.5, ge=0, le=1)
    """The dataset has drifted when at least this share of features has."""
    provider: MetricProvider = MetricProvider(direct={})
    """Where the live counts come from."""


class FeatureResult(ApiModel):
    """The drift verdict of one feature."""

    name: str
    """The feature, or the prediction."""
    method: Method
    """The statistic used."""
    score: float | None = None
    """The statistic's value."""
    p_value: float | None = None
    """The p-value, for the tests that give one."""
    threshold: float
    """The threshold applied."""
    drifted: bool
    """Whether the feature has drifted."""


class DriftMonitorStatus(StatusBase):
    """The latest drift analysis."""

    last_check: datetime | None = None
    """When drift was last computed."""
    version: str | None = None
    """The version analysed."""
    samples: int | None = None
    """Live samples in the window."""
    features: list[FeatureResult] = Field(default=[], max_length=1025)
    """Per-feature results."""
    drifted_share: float | None = None
    """The share of features that have drifted."""
    dataset_drift: bool | None = None
    """Whether driftedShare reached spec.datasetDriftShare."""
