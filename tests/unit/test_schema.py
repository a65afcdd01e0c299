"""The pydantic to structural schema conversion."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import pytest
from pydantic import ConfigDict, Field

from mlops_operator.api.common import DURATION_SYNTAX, ApiModel, Duration, Quantity, cel, exactly_one
from mlops_operator.api.schema import SchemaError, structural_schema


class Inner(ApiModel):
    """An inner object."""

    size: int = Field(gt=0)
    """A positive size."""


class Sample(ApiModel):
    """A sample."""

    model_config = ConfigDict(json_schema_extra=cel(exactly_one("inner", "free")))

    required_name: str
    """Required."""
    optional_inner: Inner | None = None
    """Optional, from a model."""
    mode: Literal["a", "b"] = "a"
    """An enum with a default."""
    quantity: Quantity | None = None
    """int or string."""
    every: Duration = "5m"
    """How often."""
    wait: Duration | None = None
    free: dict[str, Any] | None = None
    """Anything."""
    labels: dict[str, str] = {}
    """A map."""
    fixed: Literal["only"] | None = None
    """A single value."""


def test_conversion() -> None:
    s = structural_schema(Sample)
    assert s["type"] == "object" and s["description"] == "A sample."
    assert s["required"] == ["requiredName"]
    props = s["properties"]
    assert props["requiredName"] == {"type": "string", "description": "Required."}
    inner = props["optionalInner"]
    assert inner["type"] == "object" and inner["description"] == "Optional, from a model."
    assert inner["properties"]["size"] == {
        "type": "integer", "description": "A positive size.", "minimum": 0, "exclusiveMinimum": True,
    }  # fmt: skip
    assert props["mode"] == {
        "type": "string",
        "enum": ["a", "b"],
        "default": "a",
        "description": "An enum with a default.",
    }
    assert props["quantity"]["x-kubernetes-int-or-string"] is True and "type" not in props["quantity"]
    assert props["quantity"]["pattern"].startswith("^([+-]?")
    assert props["every"]["pattern"] and props["every"]["default"] == "5m"
    # The type's words end the field's own; a field without any has only them.
    assert props["every"]["description"] == f"How often. {DURATION_SYNTAX}"
    assert props["wait"]["description"] == DURATION_SYNTAX
    assert props["free"] == {
        "type": "object",
        "description": "Anything.",
        "x-kubernetes-preserve-unknown-fields": True,
    }
    assert props["labels"]["additionalProperties"] == {"type": "string"} and "default" not in props["labels"]
    assert props["fixed"]["enum"] == ["only"]
    assert s["x-kubernetes-validations"][0]["message"] == "exactly one of inner, free must be set"


def test_union_without_structural_form_is_refused() -> None:
    class Bad(ApiModel):
        value: Annotated[float | str, Field()]

    with pytest.raises(SchemaError, match=r"Bad.value"):
        structural_schema(Bad)
