"""Liveness, readiness and the detailed health report."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends

from ..responses import JSONResponse
from ..state import ServiceState
from .deps import get_state

router = APIRouter(tags=["health"])
State = Annotated[ServiceState, Depends(get_state)]


def _liveness(state: ServiceState) -> tuple[bool, list[str]]:
    processor = state.processor
    if processor is None:
        return True, []  # still loading: alive, not ready
    report = processor.check_health()
    state.metrics.set_stuck_batches(report.stuck_batches)
    unhealthy = [] if report.live else list(report.reasons)
    return report.live, unhealthy


@router.get("/health/live", summary="Liveness: the process and its batch worker are alive")
def live(state: State) -> JSONResponse:
    """200 while the engine can make progress; 503 with reasons when its worker died or a
    batch is stuck past `stuck_batch_timeout`."""
    alive, reasons = _liveness(state)
    return JSONResponse({"live": alive, "reasons": reasons}, status_code=200 if alive else 503)


@router.get("/health/ready", summary="Readiness: model loaded and warmed, not draining")
def ready(state: State) -> JSONResponse:
    """200 when the service should receive traffic; 503 while loading, draining, or with the
    model unloaded (then ``model_loaded`` is false)."""
    ok = state.ready
    body: dict[str, Any] = {"ready": ok, "phase": state.phase.value}
    if state.unloaded:
        body["model_loaded"] = False
    return JSONResponse(body, status_code=200 if ok else 503)


@router.get("/health", summary="Full health report with the monitor's checks and reasons")
def health(state: State) -> JSONResponse:
    """Liveness, readiness and every engine check (memory, queue growth, stuck batches)."""
    alive, _ = _liveness(state)
    body: dict[str, Any] = {"live": alive, "ready": state.ready, "phase": state.phase.value}
    if state.unloaded:
        body["model_loaded"] = False
    if state.processor is not None:
        body["engine"] = state.processor.check_health().as_dict()
        body["paused"] = state.processor.is_paused
    ok = alive and state.ready
    return JSONResponse(body, status_code=200 if ok else 503)
