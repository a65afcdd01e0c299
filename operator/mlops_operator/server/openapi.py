"""The OpenAPI 3 document of the server's endpoints (served at /v2/openapi.json)."""

from __future__ import annotations

from typing import Any

DATATYPES = ["BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64", "FP16", "FP32",
             "FP64", "BF16", "BYTES"]  # fmt: skip


def document(model: str) -> dict[str, Any]:
    """The document, with ``model`` as the name the paths accept."""
    error = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}

    def responses(ok: str, *codes: int) -> dict[str, Any]:
        out: dict[str, Any] = {"200": {"description": "OK",
                                       "content": {"application/json": {"schema": {"$ref": ok}}}}}  # fmt: skip
        for code in codes:
            out[str(code)] = {"description": {400: "Bad request", 404: "Unknown model or version",
                                              405: "Method not allowed", 413: "Body too large",
                                              503: "Model not ready"}[code], **error}  # fmt: skip
        return out

    name = {"name": "model_name", "in": "path", "required": True, "schema": {"type": "string", "example": model}}
    version = {"name": "model_version", "in": "path", "required": True, "schema": {"type": "string"}}
    infer = {
        "summary": "Run inference",
        "requestBody": {"required": True,
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/InferRequest"}}}},
        "responses": responses("#/components/schemas/InferResponse", 400, 404, 413, 503),
    }  # fmt: skip
    tensor_data = {"type": "array", "items": {}, "description": "Row-major data, flat or nested."}
    return {
        "openapi": "3.0.3",
        "info": {"title": "mlops-server: Open Inference Protocol V2", "version": "2"},
        "paths": {
            "/v2/health/live": {"get": {"summary": "Liveness", "responses": responses("#/components/schemas/Live")}},
            "/v2/health/ready": {"get": {"summary": "Readiness",
                                         "responses": responses("#/components/schemas/Ready", 503)}},
            "/v2": {"get": {"summary": "Server metadata", "responses": responses("#/components/schemas/Server")}},
            "/v2/models/{model_name}": {"get": {"parameters": [name], "summary": "Model metadata",
                                                "responses": responses("#/components/schemas/Model", 404, 503)}},
            "/v2/models/{model_name}/versions/{model_version}": {
                "get": {"parameters": [name, version], "summary": "Model version metadata",
                        "responses": responses("#/components/schemas/Model", 404, 503)}},
            "/v2/models/{model_name}/ready": {"get": {"parameters": [name], "summary": "Model readiness",
                                                      "responses": responses("#/components/schemas/ModelReady", 404)}},
            "/v2/models/{model_name}/versions/{model_version}/ready": {
                "get": {"parameters": [name, version], "summary": "Model version readiness",
                        "responses": responses("#/components/schemas/ModelReady", 404)}},
            "/v2/models/{model_name}/infer": {"post": {"parameters": [name], **infer}},
            "/v2/models/{model_name}/versions/{model_version}/infer": {
                "post": {"parameters": [name, version], **infer}},
        },
        "components": {
            "schemas": {
                "Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}},
                "Live": {"type": "object", "properties": {"live": {"type": "boolean"}}},
                "Ready": {"type": "object", "properties": {"ready": {"type": "boolean"}}},
                "ModelReady": {"type": "object", "properties": {"name": {"type": "string"},
                                                                "ready": {"type": "boolean"}}},
                "Server": {"type": "object", "properties": {"name": {"type": "string"}, "version": {"type": "string"},
                                                            "extensions": {"type": "array",
                                                                           "items": {"type": "string"}}}},
                "Tensor": {"type": "object", "required": ["name", "datatype", "shape"],
                           "properties": {"name": {"type": "string"}, "datatype": {"type": "string",
                                                                                   "enum": DATATYPES},
                                          "shape": {"type": "array", "items": {"type": "integer"}}}},
                "Model": {"type": "object", "properties": {
                    "name": {"type": "string"}, "versions": {"type": "array", "items": {"type": "string"}},
                    "platform": {"type": "string"},
                    "inputs": {"type": "array", "items": {"$ref": "#/components/schemas/Tensor"}},
                    "outputs": {"type": "array", "items": {"$ref": "#/components/schemas/Tensor"}}}},
                "InputTensor": {"type": "object", "required": ["name", "shape", "datatype", "data"], "properties": {
                    "name": {"type": "string"}, "shape": {"type": "array", "items": {"type": "integer", "minimum": 0}},
                    "datatype": {"type": "string", "enum": DATATYPES}, "parameters": {"type": "object"},
                    "data": tensor_data}},
                "InferRequest": {"type": "object", "required": ["inputs"], "properties": {
                    "id": {"type": "string"}, "parameters": {"type": "object"},
                    "inputs": {"type": "array", "items": {"$ref": "#/components/schemas/InputTensor"}},
                    "outputs": {"type": "array", "items": {"type": "object", "required": ["name"],
                                                           "properties": {"name": {"type": "string"}}}}}},
                "OutputTensor": {"type": "object", "required": ["name", "shape", "datatype", "data"], "properties": {
                    "name": {"type": "string"}, "shape": {"type": "array", "items": {"type": "integer"}},
                    "datatype": {"type": "string", "enum": DATATYPES}, "data": tensor_data}},
                "InferResponse": {"type": "object", "required": ["model_name", "outputs"], "properties": {
                    "model_name": {"type": "string"}, "model_version": {"type": "string"}, "id": {"type": "string"},
                    "outputs": {"type": "array", "items": {"$ref": "#/components/schemas/OutputTensor"}}}},
            }
        },
    }  # fmt: skip
