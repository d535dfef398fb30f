"""Shared route dependencies and documented error responses."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from pydantic import BaseModel

from ..state import ServiceState


class ErrorBody(BaseModel):
    """Every error answer: a human message and a stable machine code."""

    error: str
    code: str


def get_state(request: Request) -> ServiceState:
    """The running service's state."""
    state: ServiceState = request.app.state.service
    return state


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
