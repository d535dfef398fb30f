"""`/stats` (JSON) and `/metrics` (Prometheus text exposition)."""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Response

from ... import __version__
from ..responses import JSONResponse
from ..state import ServiceState
from .deps import get_state

router = APIRouter(tags=["observability"])
State = Annotated[ServiceState, Depends(get_state)]


@router.get("/stats", summary="Engine statistics and server counters")
def stats(state: State) -> JSONResponse:
    """Window statistics of the engine (batch sizes, latencies, throughput, rejections),
    server request counters, the model (with its served version) and the effective settings
    (secrets excluded)."""
    body: dict[str, Any] = {
        "version": __version__,
        "phase": state.phase.value,
        "uptime_s": time.monotonic() - state.started_at,
        "server": dict(state.counters),
        "settings": state.settings.public_dict(),
    }
    if state.model is not None:
        body["model"] = {
            "name": state.model.name,
            "platform": state.model.platform,
            "version": str(state.version),
            "loaded": not state.unloaded,
        }
    if state.processor is not None:
        body["engine"] = state.processor.get_stats()
    return JSONResponse(body)


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
def metrics(state: State) -> Response:
    """Text exposition of every batchserve series (histograms, counters, gauges)."""
    processor = state.processor
    if processor is not None:
        state.metrics.set_stuck_batches(processor.check_health().stuck_batches)
        state.metrics.set_paused(processor.is_paused)
    body, content_type = state.metrics.render()
    return Response(body, media_type=content_type)
