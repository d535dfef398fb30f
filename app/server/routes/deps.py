"""Shared route dependencies and documented error responses."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import Request
from pydantic import BaseModel

from ...errors import MalformedRequest
from ..state import ServiceState


class ErrorBody(BaseModel):
    """Every error answer: a human message and a stable machine code."""

    error: str
    code: str


def get_state(request: Request) -> ServiceState:
    """The running service's state."""
    state: ServiceState = request.app.state.service
    return state


async def json_object(request: Request, example: str = "") -> dict[str, Any] | None:
    """The request's body as a JSON object, None when it is empty; `MalformedRequest` for
    anything else (`example` shows what is expected, e.g. ``{"batch_size": 8}``)."""
    body = await request.body()
    if not body.strip():
        return None
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise MalformedRequest(f"body is not valid JSON: {exc}") from exc
    if not isinstance(doc, dict):
        such_as = f" such as {example}" if example else ""
        raise MalformedRequest(f"body must be a JSON object{such_as}")
    return doc


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for the given error statuses."""
    descriptions = {
        400: "Malformed body or header",
        401: "No admin token given",
        403: "Wrong admin token, or admin disabled",
        404: "Unknown model",
        413: "Body over max_body_bytes, or an item over the batch memory cap",
        415: "Unsupported content type",
        422: "Wrong shape, dtype or rank; empty instances; non-finite values",
        429: "Queue full (see Retry-After)",
        500: "The model failed for this request",
        503: "Not ready, or shutting down (see Retry-After)",
        504: "The deadline passed before the model answered",
    }
    return {c: {"model": ErrorBody, "description": descriptions[c]} for c in codes}
