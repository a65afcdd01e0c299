"""Types shared by the spec and status models of every kind.

Every model here is the single source of truth for one part of a CRD schema: field docstrings become the schema's
descriptions, ``Field`` constraints its patterns and bounds, and ``cel`` rules its ``x-kubernetes-validations``.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from mlops_operator.api.schema import syntax

# A subset of Go's time.ParseDuration syntax, so that CEL's duration() can read every value the schema accepts.
DURATION_PATTERN = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"
# Kubernetes' resource.Quantity syntax.
QUANTITY_PATTERN = r"^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$"
# RFC 1123 label: names that end up in object names and label values.
DNS_LABEL_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
# A label value (versions such as 1.2.0, 2024-01-31 or v3_rc1).
LABEL_VALUE_PATTERN = r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"
# An artifact or dataset location.
URI_PATTERN = r"^(file|https?|s3|gs|pvc)://.+$"

_DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def duration_seconds(text: str) -> float:
    """The seconds a Duration (``30s``, ``1h30m``, ``250ms``) stands for; ValueError when it is not one."""
    if not re.fullmatch(DURATION_PATTERN, text):
        raise ValueError(f"not a duration: {text!r} (examples: 30s, 5m, 1h30m)")
    return sum(float(number) * _DURATION_UNITS[unit] for number, unit in _DURATION_PART.findall(text))


DURATION_SYNTAX = "A duration such as 30s, 5m, 1h or 1h30m (units ms, s, m, h)."
Duration = Annotated[str, Field(pattern=DURATION_PATTERN, max_length=32, json_schema_extra=syntax(DURATION_SYNTAX))]
Quantity = Annotated[
    int | Annotated[str, Field(pattern=QUANTITY_PATTERN, max_length=64)],
    Field(description="A Kubernetes quantity: 500m, 1, 2Gi."),
]
DnsLabel = Annotated[str, Field(pattern=DNS_LABEL_PATTERN, min_length=1, max_length=63)]
VersionName = Annotated[str, Field(pattern=LABEL_VALUE_PATTERN, min_length=1, max_length=63)]
Uri = Annotated[str, Field(pattern=URI_PATTERN, max_length=2048)]
Sha256 = Annotated[str, Field(pattern=r"^sha256:[a-f0-9]{64}$", description="sha256:<64 lowercase hex digits>.")]


def cel(*rules: dict[str, str]) -> dict[str, Any]:
    """Schema extra carrying CEL ``x-kubernetes-validations`` rules, for a model's config or a field."""
    return {"x-kubernetes-validations": list(rules)}


def rule(expr: str, message: str, field_path: str | None = None, reason: str | None = None) -> dict[str, str]:
    """One CEL validation rule; ``message`` must name the field and say why."""
    out = {"rule": expr, "message": message}
    if field_path:
        out["fieldPath"] = field_path
    if reason:
        out["reason"] = reason
    return out


def immutable(field: str) -> dict[str, Any]:
    """Field schema extra that makes a field immutable once the object exists."""
    return cel(rule("self == oldSelf", f"{field} is immutable", reason="FieldValueForbidden"))


def exactly_one(*fields: str) -> dict[str, str]:
    """A rule that exactly one of ``fields`` is set."""
    expr = " + ".join(f"(has(self.{f}) ? 1 : 0)" for f in fields) + " == 1"
    return rule(expr, f"exactly one of {', '.join(fields)} must be set")


LIST_MAP_BY_NAME: dict[str, Any] = {"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]}


class ApiModel(BaseModel):
    """Base of every API model: camelCase on the wire, attribute docstrings as descriptions."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="ignore",
        use_attribute_docstrings=True,
        validate_by_name=True,
    )

    def wire(self) -> dict[str, Any]:
        """The object as the API server stores it: camelCase keys, unset fields left out."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


class Condition(ApiModel):
    """A condition following the Kubernetes API conventions."""

    type: str = Field(pattern=r"^[A-Za-z][A-Za-z0-9]*$", max_length=316)
    """The condition's type in CamelCase: Ready, ArtifactVerified, Progressing, Degraded, DriftDetected, ..."""
    status: Literal["True", "False", "Unknown"]
    """Whether the condition holds."""
    reason: str | None = Field(default=None, pattern=r"^([A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?)?$", max_length=1024)
    """A CamelCase word for the last transition, for machines: GatesFailed, SourceUnreachable, ..."""
    message: str | None = Field(default=None, max_length=32768)
    """What happened, for people."""
    last_transition_time: datetime | None = None
    """When status last changed."""
    observed_generation: int | None = Field(default=None, ge=0)
    """The metadata.generation this condition was computed from."""


Conditions = Annotated[
    list[Condition],
    Field(json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]}, max_length=32),
]


class DeploymentRef(ApiModel):
    """A ModelDeployment in the resource's namespace."""

    name: DnsLabel
    """The ModelDeployment's name."""


class SecretKeyRef(ApiModel):
    """A key of a Secret in the resource's namespace. Secret values never appear in status, events or logs."""

    name: DnsLabel
    """The Secret's name."""
    key: str = Field(min_length=1, max_length=253, pattern=r"^[-._a-zA-Z0-9]+$")
    """The key within the Secret."""


class BasicAuth(ApiModel):
    """A user name and password, from Secrets."""

    username_secret_ref: SecretKeyRef
    """The user name."""
    password_secret_ref: SecretKeyRef
    """The password."""


class Header(ApiModel):
    """An HTTP header, its value given or from a Secret: exactly one of value and valueFrom."""

    model_config = ConfigDict(json_schema_extra=cel(exactly_one("value", "valueFrom")))

    name: str = Field(min_length=1, max_length=256, pattern=r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$")
    """The header's name."""
    value: str | None = Field(default=None, max_length=4096)
    """The value, in the clear (not for secrets)."""
    value_from: SecretKeyRef | None = None
    """The value, from a Secret."""


class PrometheusProvider(ApiModel):
    """Queries a Prometheus-compatible HTTP API."""

    address: str = Field(pattern=r"^https?://.+$", max_length=2048)
    """Base URL of the Prometheus HTTP API, for example http://prometheus.monitoring:9090."""
    timeout: Duration = "10s"
    """How long one query may take."""
    bearer_token_secret_ref: SecretKeyRef | None = None
    """A bearer token sent with every query, from a Secret."""
    basic_auth: BasicAuth | None = None
    """HTTP basic authentication, from a Secret."""
    headers: list[Header] | None = Field(default=None, max_length=16, json_schema_extra=LIST_MAP_BY_NAME)
    """Headers sent with every query (for example a tenant header of a multi-tenant proxy)."""
    ca_secret_ref: SecretKeyRef | None = None
    """A PEM CA bundle, from a Secret, that the server's certificate must chain to (https)."""


class DirectProvider(ApiModel):
    """Scrapes the model servers' /metrics endpoints directly: no Prometheus needed."""

    port: int = Field(default=8080, ge=1, le=65535)
    """The model servers' HTTP port."""


class MetricProvider(ApiModel):
    """Where measurements come from: exactly one of prometheus and direct."""

    model_config = ConfigDict(json_schema_extra=cel(exactly_one("prometheus", "direct")))

    prometheus: PrometheusProvider | None = None
    """A Prometheus server that scrapes the model servers."""
    direct: DirectProvider | None = None
    """Scrape the model servers' own metrics endpoints."""


class StatusBase(ApiModel):
    """Fields every status has."""

    observed_generation: int | None = Field(default=None, ge=0)
    """The metadata.generation the controller last acted on."""
    conditions: Conditions = []
    """Conditions following the Kubernetes conventions; Ready summarises the others."""
