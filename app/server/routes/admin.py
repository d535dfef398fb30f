"""Admin routes: pause, resume and the target batch size, behind a bearer token."""

from __future__ import annotations

import hmac
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field

from ...batching import BatchProcessor
from ...errors import Forbidden, InvalidInput, NotReady, Unauthorized
from ..state import ServiceState
from .deps import error_responses, get_state

State = Annotated[ServiceState, Depends(get_state)]


def require_admin(request: Request, state: State) -> ServiceState:
    """Let the call through only with `Authorization: Bearer <BATCHSERVE_ADMIN_TOKEN>`.

    The comparison is constant-time; no message ever repeats what the client sent."""
    token = state.settings.admin_token
    if token is None:
        raise Forbidden("admin routes are disabled; set BATCHSERVE_ADMIN_TOKEN to enable them")
    header = request.headers.get("authorization")
    if not header:
        raise Unauthorized("admin routes need 'Authorization: Bearer <token>'")
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer" or not given:
        raise Unauthorized("admin routes need 'Authorization: Bearer <token>'")
    expected = token.get_secret_value().encode("utf-8")
    if not hmac.compare_digest(given.strip().encode("utf-8"), expected):
        raise Forbidden("invalid admin token")
    return state


Admin = Annotated[ServiceState, Depends(require_admin)]
router = APIRouter(prefix="/admin", tags=["admin"], responses=error_responses(401, 403, 503))


class EngineState(BaseModel):
    """The engine's dispatch state after an admin call."""

    paused: bool
    queue_size: int


class BatchSize(BaseModel):
    """The target batch size (items)."""

    batch_size: int = Field(ge=1)
    min_batch_size: int | None = None
    max_batch_size: int | None = None


def _processor(state: ServiceState) -> BatchProcessor[Any, Any]:
    processor = state.processor
    if processor is None:
        raise NotReady("the model is still loading")
    return processor


def _engine_state(processor: BatchProcessor[Any, Any]) -> EngineState:
    return EngineState(paused=processor.is_paused, queue_size=len(processor))


@router.post("/pause", summary="Stop dispatching batches; queued requests wait")
def pause(state: Admin) -> EngineState:
    """Queued and new requests wait (their deadlines still apply) until `/admin/resume`."""
    processor = _processor(state)
    processor.pause()
    state.metrics.set_paused(True)
    return _engine_state(processor)


@router.post("/resume", summary="Resume dispatching batches")
def resume(state: Admin) -> EngineState:
    """Waiting requests are dispatched again, highest priority first."""
    processor = _processor(state)
    processor.resume()
    state.metrics.set_paused(False)
    return _engine_state(processor)


@router.get("/batch-size", summary="The current target batch size")
def get_batch_size(state: Admin) -> BatchSize:
    """The target the engine fills batches up to, with its bounds."""
    processor = _processor(state)
    cfg = processor.config
    return BatchSize(
        batch_size=processor.current_batch_size,
        min_batch_size=cfg.min_batch_size,
        max_batch_size=cfg.max_batch_size,
    )


@router.put("/batch-size", summary="Set the target batch size", responses=error_responses(422))
def put_batch_size(body: BatchSize, state: Admin) -> BatchSize:
    """Sets the target (within [min_batch_size, max_batch_size]; 422 otherwise). Under the
    ADAPTIVE strategy the controller continues from the new value."""
    try:
        _processor(state).update_batch_size(body.batch_size)
    except ValueError as exc:
        raise InvalidInput(str(exc)) from exc
    return get_batch_size(state)
