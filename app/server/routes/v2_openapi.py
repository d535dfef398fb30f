"""OpenAPI description of the V2 inference request and response (JSON and binary forms)."""

from __future__ import annotations

from typing import Any, Final

_PARAMETERS: Final[dict[str, Any]] = {
    "type": "object",
    "additionalProperties": {
        "oneOf": [{"type": "string"}, {"type": "number"}, {"type": "boolean"}]
    },
}
_DATATYPES: Final = [
    "BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64",
    "FP16", "FP32", "FP64", "BYTES",
]  # fmt: skip
_TENSOR: Final[dict[str, Any]] = {
    "type": "object",
    "required": ["name", "shape", "datatype"],
    "properties": {
        "name": {"type": "string"},
        "shape": {"type": "array", "items": {"type": "integer", "minimum": 0}},
        "datatype": {"type": "string", "enum": _DATATYPES},
        "parameters": _PARAMETERS,
        "data": {
            "type": "array",
            "items": {},
            "description": "Row-major values, flat or nested; absent when the tensor travels"
            " as binary (parameters.binary_data_size bytes after the JSON).",
        },
    },
}
_REQUEST: Final[dict[str, Any]] = {
    "type": "object",
    "required": ["inputs"],
    "properties": {
        "id": {"type": "string"},
        "parameters": {
            **_PARAMETERS,
            "description": "priority (0 default, 1 HIGH, 2 NORMAL, >=3 LOW), timeout"
            " (microseconds), binary_data_output (bool).",
        },
        "inputs": {"type": "array", "minItems": 1, "items": _TENSOR},
        "outputs": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["name"],
                "properties": {"name": {"type": "string"}, "parameters": _PARAMETERS},
            },
        },
    },
    "example": {
        "id": "42",
        "inputs": [{"name": "pixels", "shape": [1, 64], "datatype": "FP32", "data": [0.0] * 64}],
        "outputs": [{"name": "label"}],
    },
}
_RESPONSE: Final[dict[str, Any]] = {
    "type": "object",
    "properties": {
        "model_name": {"type": "string"},
        "model_version": {"type": "string"},
        "id": {"type": "string"},
        "outputs": {"type": "array", "items": _TENSOR},
    },
}
_BINARY: Final[dict[str, Any]] = {
    "type": "string",
    "format": "binary",
    "description": "The JSON document (Inference-Header-Content-Length bytes), then the binary"
    " tensors in the order they are listed; or, with the header at 0, one input's raw bytes.",
}
_HEADER: Final = {"in": "header", "required": False}

INFER: Final[dict[str, Any]] = {
    "parameters": [
        {
            "name": "Inference-Header-Content-Length",
            **_HEADER,
            "schema": {"type": "integer", "minimum": 0},
            "description": "Length of the JSON part when binary tensor data follows it.",
        },
        {
            "name": "X-Priority",
            **_HEADER,
            "schema": {"type": "string", "enum": ["high", "normal", "low"]},
            "description": "Used when the request has no 'priority' parameter.",
        },
        {
            "name": "X-Request-Timeout-Seconds",
            **_HEADER,
            "schema": {"type": "number", "exclusiveMinimum": 0},
            "description": "Used when the request has no 'timeout' parameter.",
        },
    ],
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": _REQUEST},
            "application/octet-stream": {"schema": _BINARY},
        },
    },
    "responses": {
        "200": {
            "description": "Outputs; application/octet-stream when any travels as binary"
            " (then Inference-Header-Content-Length gives the JSON part's length).",
            "content": {
                "application/json": {"schema": _RESPONSE},
                "application/octet-stream": {"schema": _BINARY},
            },
        }
    },
}
