"""ModelDeployment: serves versions of one model, with autoscaling and traffic weights."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import ConfigDict, Field

from mlops_operator.api.common import (
    ApiModel,
    DnsLabel,
    Duration,
    Quantity,
    StatusBase,
    VersionName,
    cel,
    exactly_one,
    rule,
)


class Autoscaling(ApiModel):
    """A HorizontalPodAutoscaler (autoscaling/v2) per served version."""

    model_config = ConfigDict(
        json_schema_extra=cel(
            rule("self.minReplicas <= self.maxReplicas", "minReplicas must not exceed maxReplicas", ".minReplicas"),
        )
    )

    min_replicas: int = Field(default=1, ge=1, le=1000)
    """The fewest replicas."""
    max_replicas: int = Field(ge=1, le=1000)
    """The most replicas."""
    target_cpu_utilization_percentage: int = Field(default=70, ge=1, le=100, alias="targetCPUUtilizationPercentage")
    """Average CPU utilisation, in percent of the requests, that the autoscaler aims for."""


class Resources(ApiModel):
    """Compute resources of each model server container."""

    requests: dict[str, Quantity] | None = None
    """Requested resources, for example cpu: 500m, memory: 1Gi."""
    limits: dict[str, Quantity] | None = None
    """Resource limits."""


class ParentRef(ApiModel):
    """A Gateway API parent (usually a Gateway) that the HTTPRoute attaches to."""

    name: str = Field(min_length=1, max_length=253)
    """The Gateway's name."""
    namespace: str | None = Field(default=None, max_length=63)
    """The Gateway's namespace; by default the resource's own."""
    section_name: str | None = Field(default=None, max_length=253)
    """A listener of the Gateway."""


class Router(ApiModel):
    """How traffic is split between served versions."""

    model_config = ConfigDict(
        json_schema_extra=cel(
            rule(
                "self.type != 'gatewayAPI' || (has(self.parentRefs) && size(self.parentRefs) > 0)",
                "router.parentRefs is required when router.type is gatewayAPI",
                ".parentRefs",
                "FieldValueRequired",
            ),
        )
    )

    type: Literal["gatewayAPI", "istio", "replicas"] = "replicas"
    """gatewayAPI: an HTTPRoute with weighted backends; istio: a VirtualService; replicas: no mesh, the weight is
    approximated by replica counts behind one Service."""
    parent_refs: list[ParentRef] | None = Field(default=None, max_length=16)
    """gatewayAPI: the Gateways the HTTPRoute attaches to."""
    hostnames: list[Annotated[str, Field(max_length=253)]] | None = Field(default=None, max_length=16)
    """gatewayAPI and istio: the hostnames routed."""
    gateways: list[Annotated[str, Field(max_length=253)]] | None = Field(default=None, max_length=16)
    """istio: the Istio Gateways the VirtualService binds to (default: the mesh)."""


class BlueGreen(ApiModel):
    """Blue-green: a preview Service to the new version, then a switch once it is ready."""

    auto_promote: bool = True
    """Switch traffic as soon as the new version is ready; false waits for the promote verb."""
    scale_down_delay: Duration = "30s"
    """How long the old version is kept after the switch."""


class Rollout(ApiModel):
    """How a version change is rolled out."""

    strategy: Literal["rolling", "blueGreen", "canary"] = "rolling"
    """rolling: the new version becomes available, traffic moves, the old one is removed; blueGreen: preview, then
    switch; canary: a CanaryRollout drives the weights."""
    blue_green: BlueGreen | None = None
    """Settings of the blueGreen strategy."""
    drain_delay: Duration = "10s"
    """rolling and canary: how long a version that lost its traffic keeps running before it is removed, so that
    proxies and clients still sending to it are answered (blueGreen keeps it for blueGreen.scaleDownDelay)."""
    progress_deadline: Duration = "10m"
    """How long a version's Deployment may take to make progress (new Pods ready) before it counts as failed: the
    deployment is then Degraded with reason ProgressDeadlineExceeded, and the old version keeps the traffic."""


class Shadow(ApiModel):
    """Mirrors a share of the traffic to another version; its responses are discarded."""

    version: VersionName
    """The version receiving mirrored traffic."""
    percent: int = Field(default=100, ge=0, le=100)
    """The share of requests mirrored."""


class Batching(ApiModel):
    """Concurrent requests predicted together in one call of the model."""

    max_size: int = Field(default=16, ge=1, le=1024)
    """The most rows predicted together; 1 turns batching off."""
    max_latency: Duration = "2ms"
    """The longest a request waits for companions; a request alone never waits."""


class ServerSettings(ApiModel):
    """Settings of the model server Pods."""

    model_config = ConfigDict(
        json_schema_extra=cel(
            rule(
                "!has(self.grpcPort) || !has(self.port) || self.grpcPort == 0 || self.grpcPort != self.port",
                "grpcPort must differ from port (8080 and 8081 by default): the two endpoints need their own ports",
                ".grpcPort",
            ),
        )
    )

    image: str | None = Field(default=None, max_length=512)
    """The model server image; by default the operator's own image."""
    port: int = Field(default=8080, ge=1, le=65535)
    """The HTTP port of the Open Inference Protocol V2 endpoints (REST)."""
    grpc_port: int = Field(default=8081, ge=0, le=65535)
    """The port of the protocol's gRPC endpoint (inference.GRPCInferenceService, and grpc.health.v1.Health for
    gRPC probes); 0 turns it off. The Pods and the Services expose it as the port named grpc."""
    max_request_bytes: int = Field(default=10 * 1024 * 1024, ge=1024)
    """Requests with a larger body get 413."""
    batching: Batching | None = None
    """Adaptive batching of concurrent requests; without it the server's defaults (16 rows, 2ms)."""


class ModelDeploymentSpec(ApiModel):
    """Serves one model: a pinned version, or whatever version the registry grants production."""

    model_config = ConfigDict(
        json_schema_extra=cel(
            exactly_one("version", "follow"),
            rule(
                "!has(self.shadow) || !has(self.version) || self.shadow.version != self.version",
                "shadow.version must differ from version",
                ".shadow.version",
            ),
            rule(
                "!has(self.shadow) || (has(self.router) && has(self.router.type) && self.router.type != 'replicas')",
                "shadow needs router.type gatewayAPI or istio: the replicas router cannot mirror requests",
                ".shadow",
            ),
        )
    )

    model: DnsLabel = Field(
        json_schema_extra=cel(
            rule(
                "self == oldSelf",
                "model is immutable: a ModelDeployment serves one model; create another ModelDeployment to serve "
                "another model",
                reason="FieldValueForbidden",
            )
        )
    )
    """The registered model (ModelVersion spec.model); immutable."""
    version: VersionName | None = None
    """The version served; exactly one of version and follow."""
    follow: Literal["production"] | None = None
    """Serve the model's production version, and roll to each new one."""
    replicas: int = Field(default=1, ge=0, le=1000)
    """Replicas of the served version; ignored when autoscaling is set."""
    autoscaling: Autoscaling | None = None
    """Scale each served version with its own HorizontalPodAutoscaler."""
    resources: Resources | None = None
    """Resources of each model server container."""
    router: Router = Router()
    """How traffic is split between versions."""
    rollout: Rollout = Rollout()
    """How a version change is rolled out."""
    shadow: Shadow | None = None
    """Mirror traffic to another version."""
    server: ServerSettings = ServerSettings()
    """Model server settings."""


class ServedVersion(ApiModel):
    """One served version and its share of the traffic."""

    version: str
    """The version."""
    role: Literal["stable", "incoming", "canary", "preview", "shadow", "retiring"]
    """What the version is doing: stable takes the traffic; incoming (rolling) and preview (blueGreen) are starting
    and take none yet; canary takes the share a CanaryRollout gives it; shadow receives mirrored requests;
    retiring lost its traffic and is removed after the strategy's delay."""
    since: datetime | None = None
    """When the version took this role."""
    deployment: str | None = None
    """Its apps/v1 Deployment."""
    service: str | None = None
    """Its Service."""
    replicas: int = 0
    """Desired replicas."""
    ready_replicas: int = 0
    """Ready replicas."""
    weight: int = Field(default=0, ge=0, le=100)
    """Its share of the traffic, in percent."""


class CanaryDriver(ApiModel):
    """The CanaryRollout that drives the canary, and what it says."""

    rollout: str
    """The CanaryRollout's name."""
    phase: str | None = None
    """Its phase."""
    candidate: str | None = None
    """The version it is about."""
    stopped: str | None = None
    """The candidate it rolled back or aborted: not run until retried (mlops.io/retry=<candidate> on the
    rollout)."""
    message: str | None = Field(default=None, max_length=4096)
    """Why: the rollout's own account."""


class ModelDeploymentStatus(StatusBase):
    """What is served and how traffic is split."""

    version: str | None = None
    """The stable version."""
    url: str | None = None
    """The in-cluster URL of the front Service."""
    preview_url: str | None = None
    """blueGreen: the in-cluster URL of the preview Service, while a version is in preview."""
    replicas: int | None = None
    """Desired replicas across versions."""
    ready_replicas: int | None = None
    """Ready replicas across versions."""
    traffic: str | None = None
    """The weights in one line, for example 1.0.0=90 1.1.0=10."""
    versions: list[ServedVersion] = Field(default=[], max_length=16)
    """Every served version."""
    canary: CanaryDriver | None = None
    """canary strategy: the CanaryRollout that drives the canary (none yet: the canary waits at 0%)."""
