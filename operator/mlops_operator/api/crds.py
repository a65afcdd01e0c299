"""The five kinds, and the CustomResourceDefinitions generated from their models."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

from mlops_operator import GROUP, VERSION
from mlops_operator.api import alertrule, canaryrollout, driftmonitor, modeldeployment, modelversion
from mlops_operator.api.schema import structural_schema

CATEGORY = "mlops"


@dataclass(frozen=True)
class Column:
    """A printer column of ``kubectl get``."""

    name: str
    json_path: str
    type: str = "string"
    description: str = ""
    priority: int = 0

    def render(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "type": self.type, "jsonPath": self.json_path}
        if self.description:
            out["description"] = self.description
        if self.priority:
            out["priority"] = self.priority
        return out


READY = Column("Ready", '.status.conditions[?(@.type=="Ready")].status', description="The Ready condition")
MESSAGE = Column("Message", '.status.conditions[?(@.type=="Ready")].message', description="Why it is (not) ready")
AGE = Column("Age", ".metadata.creationTimestamp", "date")


@dataclass(frozen=True)
class Kind:
    """One custom resource kind of the mlops.io group."""

    kind: str
    plural: str
    short_names: tuple[str, ...]
    spec: type[BaseModel]
    status: type[BaseModel]
    columns: tuple[Column, ...]
    selectable_fields: tuple[str, ...] = ()

    @property
    def singular(self) -> str:
        return self.kind.lower()

    @property
    def crd_name(self) -> str:
        return f"{self.plural}.{GROUP}"

    @property
    def description(self) -> str:
        return (self.spec.__doc__ or self.kind).strip()

    def spec_problem(self, spec: dict[str, Any]) -> str | None:
        """Why the typed model rejects ``spec`` (fields and reasons), or None when it parses: what the API server
        admitted is also what the controllers read."""
        try:
            self.spec.model_validate(spec)
        except ValidationError as exc:
            return "; ".join(
                f"spec.{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors(include_url=False)
            )
        return None

    def crd(self) -> dict[str, Any]:
        """The apiextensions.k8s.io/v1 CustomResourceDefinition of this kind."""
        schema = {
            "type": "object",
            "description": self.description,
            "required": ["spec"],
            "properties": {
                "apiVersion": {"type": "string", "description": "APIVersion of the object: mlops.io/v1alpha1."},
                "kind": {"type": "string", "description": f"Kind of the object: {self.kind}."},
                "metadata": {"type": "object"},
                "spec": structural_schema(self.spec),
                "status": structural_schema(self.status),
            },
        }
        return {
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "CustomResourceDefinition",
            "metadata": {
                "name": self.crd_name,
                "labels": {"app.kubernetes.io/name": "mlops-operator", "app.kubernetes.io/part-of": "mlops-operator"},
            },
            "spec": {
                "group": GROUP,
                "scope": "Namespaced",
                "names": {
                    "kind": self.kind,
                    "listKind": f"{self.kind}List",
                    "plural": self.plural,
                    "singular": self.singular,
                    "shortNames": list(self.short_names),
                    "categories": [CATEGORY],
                },
                "versions": [
                    {
                        "name": VERSION,
                        "served": True,
                        "storage": True,
                        "subresources": {"status": {}},
                        "additionalPrinterColumns": [c.render() for c in self.columns],
                        **(
                            {"selectableFields": [{"jsonPath": f} for f in self.selectable_fields]}
                            if self.selectable_fields
                            else {}
                        ),
                        "schema": {"openAPIV3Schema": schema},
                    }
                ],
            },
        }


KINDS: tuple[Kind, ...] = (
    Kind(
        "ModelVersion",
        "modelversions",
        ("mv",),
        modelversion.ModelVersionSpec,
        modelversion.ModelVersionStatus,
        (
            Column("Model", ".spec.model"),
            Column("Version", ".spec.version"),
            Column("Stage", ".status.stage", description="The granted stage"),
            Column("Desired", ".spec.stage", description="The desired stage", priority=1),
            READY,
            MESSAGE,
            AGE,
        ),
        selectable_fields=(".spec.model", ".spec.version", ".spec.stage"),
    ),
    Kind(
        "ModelDeployment",
        "modeldeployments",
        ("mdep",),
        modeldeployment.ModelDeploymentSpec,
        modeldeployment.ModelDeploymentStatus,
        (
            Column("Model", ".spec.model"),
            Column("Version", ".status.version", description="The stable version served"),
            READY,
            Column("Replicas", ".status.readyReplicas", "integer", "Ready replicas across versions"),
            Column("Weight", ".status.traffic", description="Traffic per version, in percent"),
            Column("URL", ".status.url", priority=1),
            MESSAGE,
            AGE,
        ),
    ),
    Kind(
        "CanaryRollout",
        "canaryrollouts",
        ("canary",),
        canaryrollout.CanaryRolloutSpec,
        canaryrollout.CanaryRolloutStatus,
        (
            Column("Deployment", ".spec.deploymentRef.name"),
            Column("Candidate", ".status.candidate"),
            Column("Phase", ".status.phase"),
            Column("Weight", ".status.weights.canary", "integer", "Percent of traffic asked for the candidate"),
            Column("Applied", ".status.applied.canary", "integer", "Percent the deployment applied", priority=1),
            Column("Step", ".status.currentStep", "integer", priority=1),
            READY,
            MESSAGE,
            AGE,
        ),
    ),
    Kind(
        "DriftMonitor",
        "driftmonitors",
        ("drift",),
        driftmonitor.DriftMonitorSpec,
        driftmonitor.DriftMonitorStatus,
        (
            Column("Deployment", ".spec.deploymentRef.name"),
            Column("Drift", '.status.conditions[?(@.type=="DriftDetected")].status', description="DriftDetected"),
            Column("Share", ".status.driftedShare", "number", "Share of drifted features"),
            Column("Checked", ".status.lastCheck", "date", "Last analysis"),
            READY,
            MESSAGE,
            AGE,
        ),
    ),
    Kind(
        "AlertRule",
        "alertrules",
        ("alert",),
        alertrule.AlertRuleSpec,
        alertrule.AlertRuleStatus,
        (
            Column("State", ".status.state"),
            Column("Severity", ".spec.severity"),
            Column("Since", ".status.activeSince", "date", "Since when the worst state holds"),
            Column("Instances", ".status.instances", "integer", "Instances pending or firing"),
            READY,
            MESSAGE,
            AGE,
        ),
    ),
)

BY_KIND = {k.kind: k for k in KINDS}


def crd_file_name(kind: Kind) -> str:
    """The file under crds/ holding ``kind``'s CRD."""
    return f"{GROUP}_{kind.plural}.yaml"


def render_yaml(document: dict[str, Any]) -> str:
    """A CRD as YAML, keys in model order, stable across runs."""
    import yaml

    header = "# Generated from operator/mlops_operator/api by `make crds`. Do not edit.\n"
    return header + yaml.safe_dump(document, sort_keys=False, width=120, allow_unicode=True)
