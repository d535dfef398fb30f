"""`POST /predict`, documented here. With `fast_path` on (the default) the same exchange is
run by the uvicorn door under `batchserve serve`, or by the ASGI door before routing under any
other ASGI server; this route runs it otherwise."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response

from ..doors.asgi import route_exchange
from .deps import error_responses

router = APIRouter(tags=["inference"])

_TENSOR = {
    "type": "object",
    "description": "A binary tensor: the whole batch as raw little-endian bytes (msgpack only).",
    "properties": {
        "dtype": {"type": "string", "example": "float32"},
        "shape": {"type": "array", "items": {"type": "integer"}},
        "data": {"type": "string", "format": "binary"},
    },
    "required": ["dtype", "shape", "data"],
}
_REQUEST_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["instances"],
    "properties": {
        "instances": {
            "description": "One entry per row: a nested list of numbers, or an object of named"
            " inputs for multi-input models.",
            "type": "array",
            "minItems": 1,
            "items": {},
        }
    },
    "example": {"instances": [[0.0] * 64]},
}
_MSGPACK_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["instances"],
    "properties": {"instances": {"oneOf": [{"type": "array", "items": {}}, _TENSOR]}},
    "description": "The same map as JSON, msgpack-encoded. `instances` may also be a binary"
    " tensor or msgpack-numpy array (a `msgpack_numpy` client works unchanged).",
}
_RESPONSE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "predictions": {
            "type": "array",
            "description": "One entry per instance, in order: the output row, or an object of"
            " named outputs for multi-output models.",
            "items": {},
        }
    },
    "example": {"predictions": [{"label": 0, "probabilities": [0.9] + [0.01] * 9}]},
}
OPENAPI_EXTRA: dict[str, Any] = {
    "parameters": [
        {
            "name": "X-Priority",
            "in": "header",
            "required": False,
            "schema": {"type": "string", "enum": ["high", "normal", "low"], "default": "normal"},
            "description": "Scheduling priority: HIGH before NORMAL before LOW, FIFO within one.",
        },
        {
            "name": "X-Request-Timeout-Seconds",
            "in": "header",
            "required": False,
            "schema": {"type": "number", "exclusiveMinimum": 0},
            "description": "Deadline for the request; 504 if the model has not answered by then.",
        },
    ],
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": _REQUEST_SCHEMA},
            "application/msgpack": {"schema": _MSGPACK_SCHEMA},
        },
    },
    "responses": {
        "200": {
            "description": "Predictions, in the request's format unless Accept asks otherwise",
            "content": {
                "application/json": {"schema": _RESPONSE_SCHEMA},
                "application/msgpack": {"schema": _RESPONSE_SCHEMA},
            },
        }
    },
}


@router.post(
    "/predict",
    summary="Predict a batch of instances",
    response_class=Response,
    responses=error_responses(400, 413, 415, 422, 429, 500, 503, 504),
    openapi_extra=OPENAPI_EXTRA,
)
async def predict(request: Request) -> Response:
    """Rows are validated against the model, queued as one group, batched with other
    requests' rows, and returned in order. A client that disconnects has its queued rows
    cancelled before they reach the model."""
    return await route_exchange(request, request.app.state.inference.predict, ())
