"""Turns pydantic models into Kubernetes structural OpenAPI v3 schemas.

pydantic emits JSON Schema 2020-12 with ``$defs`` references, ``anyOf`` for optional fields and titles; a CRD needs
a structural schema: every node typed and inlined, no references, nullable fields simply optional, integers or
strings marked ``x-kubernetes-int-or-string``, free-form maps marked ``x-kubernetes-preserve-unknown-fields``.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

# Keys copied as they are from a pydantic node to the structural schema.
_PASSTHROUGH = {
    "pattern", "minimum", "maximum", "minLength", "maxLength", "minItems", "maxItems", "format",
    "minProperties", "maxProperties", "x-kubernetes-validations", "x-kubernetes-list-type",
    "x-kubernetes-list-map-keys", "x-kubernetes-map-type",
}  # fmt: skip
_DROPPED = {"title", "examples"}
# A description on an Annotated type would replace the docstring of every field of that type, so a type says what
# values it accepts under this key instead, and the field's description ends with it.
_SYNTAX = "x-mlops-syntax"


def syntax(text: str) -> dict[str, str]:
    """``json_schema_extra`` for an ``Annotated`` type: ``text``, a sentence on the values the type accepts, ends the
    description of each field of the type (and is the whole description of a field without one)."""
    return {_SYNTAX: text}


class SchemaError(ValueError):
    """A model uses a construct that has no structural schema equivalent."""


def structural_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The structural OpenAPI v3 schema of ``model``, with camelCase field names."""
    raw = model.model_json_schema(by_alias=True, mode="validation")
    defs = raw.pop("$defs", {})
    return _convert(raw, defs, path=model.__name__)


def _resolve(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    """Inlines a ``$ref`` (or a single-element ``allOf``); the referring node's own keys win."""
    if "$ref" in node:
        target = defs[node["$ref"].rsplit("/", 1)[-1]]
        rest = {k: v for k, v in node.items() if k != "$ref"}
        return {**_resolve(target, defs), **rest}
    if "allOf" in node and len(node["allOf"]) == 1:
        rest = {k: v for k, v in node.items() if k != "allOf"}
        return {**_resolve(node["allOf"][0], defs), **rest}
    return node


def _convert(node: dict[str, Any], defs: dict[str, Any], path: str) -> dict[str, Any]:
    node = _resolve(node, defs)
    if "anyOf" in node:
        branches = [_resolve(b, defs) for b in node["anyOf"] if b.get("type") != "null"]
        rest = {k: v for k, v in node.items() if k != "anyOf"}
        if rest.get("default", 0) is None:
            del rest["default"]
        if len(branches) == 1:
            return _convert({**branches[0], **rest}, defs, path)
        if sorted(b.get("type", "") for b in branches) == ["integer", "string"]:
            merged: dict[str, Any] = {"x-kubernetes-int-or-string": True}
            for branch in branches:
                merged.update({k: v for k, v in branch.items() if k != "type"})
            merged.update(rest)
            return _convert(merged, defs, path)
        raise SchemaError(f"{path}: a union of {[b.get('type') for b in branches]} has no structural schema")

    out: dict[str, Any] = {}
    if "type" in node:
        out["type"] = node["type"]
    if "const" in node:
        out["enum"] = [node["const"]]
        out.setdefault("type", _json_type(node["const"]))
    if "enum" in node:
        out["enum"] = list(node["enum"])
        out.setdefault("type", _json_type(node["enum"][0]))
    for key, value in node.items():
        if key in ("description", _SYNTAX):
            out.setdefault("description", _description(node))
        elif key in _PASSTHROUGH:
            out[key] = value
        elif key == "exclusiveMinimum":
            out["minimum"], out["exclusiveMinimum"] = value, True
        elif key == "exclusiveMaximum":
            out["maximum"], out["exclusiveMaximum"] = value, True
        elif key == "default" and _without_nulls(value) not in (None, {}, []):
            out["default"] = _without_nulls(value)
        elif key == "x-kubernetes-int-or-string":
            out[key] = value
            out.pop("type", None)
        elif key not in _DROPPED | {
            "type",
            "const",
            "enum",
            "properties",
            "required",
            "items",
            "additionalProperties",
            "default",
        }:
            raise SchemaError(f"{path}: unsupported schema key {key!r}")

    if "properties" in node:
        out["type"] = "object"
        out["properties"] = {name: _convert(sub, defs, f"{path}.{name}") for name, sub in node["properties"].items()}
        if node.get("required"):
            out["required"] = list(node["required"])
    if "items" in node:
        out["items"] = _convert(node["items"], defs, f"{path}[]")
    additional = node.get("additionalProperties")
    if isinstance(additional, dict) and additional:
        out["additionalProperties"] = _convert(additional, defs, f"{path}{{}}")
    elif additional is True or additional == {}:
        out["x-kubernetes-preserve-unknown-fields"] = True
    elif node.get("type") == "object" and "properties" not in node and additional is None:
        # An empty model (a receiver with no settings): an object with no fields.
        out["properties"] = {}
    if "type" not in out and "x-kubernetes-int-or-string" not in out:
        raise SchemaError(f"{path}: node has no type: {node}")
    return out


def _description(node: dict[str, Any]) -> str:
    """The node's own description, followed by what its type says about the values it accepts."""
    own, syntax_text = node.get("description"), node.get(_SYNTAX)
    if own and syntax_text:
        return f"{own.rstrip('.')}. {syntax_text}"
    return str(own or syntax_text)


def _without_nulls(value: Any) -> Any:
    """A default as the API server must see it: unset optional fields are absent, not null."""
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nulls(v) for v in value]
    return value


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    return "string"
