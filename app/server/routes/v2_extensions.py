"""Triton's model-configuration and statistics extensions on the V2 routes.

``GET /v2/models/{name}[/versions/{version}]/config`` describes the model and the live engine
settings as Triton's ``model_config.proto`` JSON; ``GET /v2/models[/{name}[/versions/
{version}]]/stats`` reports the served version's statistics (`batchserve.server.statistics`).
Errors are in the V2 format.
"""

from __future__ import annotations

from typing import Annotated, Any, Final

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, Field

from ..inference.v2_models import find_model, model_config, served_model
from ..responses import JSONResponse
from ..state import ServiceState
from .deps import get_state
from .v2 import v2_error, v2_errors

State = Annotated[ServiceState, Depends(get_state)]
router = APIRouter(prefix="/v2", tags=["v2"])


class DurationStat(BaseModel):
    """How many times, and how long in total."""

    count: int
    ns: int = Field(description="Total duration (nanoseconds).")


class InferenceStats(BaseModel):
    """Requests (success, fail) and rows (queue, compute_*) of one version."""

    success: DurationStat
    fail: DurationStat
    queue: DurationStat
    compute_input: DurationStat
    compute_infer: DurationStat
    compute_output: DurationStat
    cache_hit: DurationStat
    cache_miss: DurationStat


class BatchStat(BaseModel):
    """Model calls of one batch size."""

    batch_size: int
    compute_input: DurationStat
    compute_infer: DurationStat
    compute_output: DurationStat


class ModelStat(BaseModel):
    """One model version's statistics."""

    name: str
    version: str
    last_inference: int = Field(description="Last successful request (ms since the epoch).")
    inference_count: int = Field(description="Rows the model answered.")
    execution_count: int = Field(description="Model calls.")
    inference_stats: InferenceStats
    batch_stats: list[BatchStat]


class ModelStats(BaseModel):
    """Statistics of the served model versions."""

    model_stats: list[ModelStat]


class ModelConfig(BaseModel):
    """Triton's model configuration (``model_config.proto`` as JSON), main fields."""

    name: str
    platform: str
    backend: str
    max_batch_size: int
    input: list[dict[str, Any]]
    output: list[dict[str, Any]]
    dynamic_batching: dict[str, Any]
    instance_group: list[dict[str, Any]]


_CONFIG_DOC: Final[dict[int | str, dict[str, Any]]] = {
    200: {"model": ModelConfig},
    **v2_errors(404, 503),
}
_STATS_DOC: Final[dict[int | str, dict[str, Any]]] = {
    200: {"model": ModelStats},
    **v2_errors(404, 503),
}


def _config(request: Request, state: ServiceState, name: str, version: str | None) -> Response:
    try:
        model = find_model(state, name, version)
        processor = state.serving()[1]
    except Exception as exc:
        return v2_error(request, exc)
    return JSONResponse(model_config(model, processor.config, state.settings))


@router.get("/models/{model_name}/config", summary="Model configuration", responses=_CONFIG_DOC)
def config(request: Request, state: State, model_name: str) -> Response:
    """The model's tensors (dims per row, ``-1`` variable), ``max_batch_size``, the dynamic
    batcher (queue delay, priorities, queue policy) and instances, from the live settings;
    503 once unloaded."""
    return _config(request, state, model_name, None)


@router.get(
    "/models/{model_name}/versions/{model_version}/config",
    summary="Model version configuration",
    responses=_CONFIG_DOC,
)
def version_config(request: Request, state: State, model_name: str, model_version: str) -> Response:
    """As model configuration; only the served version exists."""
    return _config(request, state, model_name, model_version)


def _stats(
    request: Request, state: ServiceState, name: str | None, version: str | None
) -> Response:
    processor = state.processor
    try:
        if name is not None:
            served_model(state, name, version)
    except Exception as exc:
        return v2_error(request, exc)
    if processor is None:
        return JSONResponse({"model_stats": []})
    # The engine books a model call on its follow-up thread just after answering it; its
    # statistics read wait for those books (the figures then cover every answer sent).
    processor.get_stats()
    return JSONResponse({"model_stats": [processor.statistics.as_dict()]})


@router.get("/models/stats", summary="Statistics of every model", responses=_STATS_DOC)
def all_stats(request: Request, state: State) -> Response:
    """The served version's counts and durations (Triton's statistics extension)."""
    return _stats(request, state, None, None)


@router.get("/models/{model_name}/stats", summary="Model statistics", responses=_STATS_DOC)
def stats(request: Request, state: State, model_name: str) -> Response:
    """Rows inferred, model calls (their ratio is the mean batch size), request successes
    and failures, queue and compute time, and model calls per batch size; for the served
    version, which starts from zero (plus its warm-up row) at every load."""
    return _stats(request, state, model_name, None)


@router.get(
    "/models/{model_name}/versions/{model_version}/stats",
    summary="Model version statistics",
    responses=_STATS_DOC,
)
def version_stats(request: Request, state: State, model_name: str, model_version: str) -> Response:
    """As model statistics; only the served version exists."""
    return _stats(request, state, model_name, model_version)
