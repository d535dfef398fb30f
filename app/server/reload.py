"""Loading a model into the running service, and unloading it: one call at a time, without
dropping or mixing a request.

A load (of a new reference, or of the current one again) happens beside the served model:

1. the model is loaded on a thread, never on the event loop, under the served name;
2. a new engine is started with it and warmed up with one batch, as at start-up; a model
   that fails either step is stopped and the error returned (`ModelLoadFailed`): the served
   model never stopped serving;
3. on the event loop, in one step: the new engine takes over the target batch size and the
   pause of the served one, becomes the served engine with the next version (1, 2, 3...),
   and the old engine hands its admissions over to it (`ServingEngine.hand_over`);
4. the old engine drains what it holds with its own model, then stops (`drain_timeout_s`).

Every request is queued wholly on one engine, so it is answered wholly by one model, and
readiness never drops. An unload makes the model unavailable (503 `model_unavailable`,
readiness 503) until the next load; requests already queued are still answered.

The served name never changes: a new reference is served under the name clients already
use (``BATCHSERVE_MODEL_NAME``, or the name the first model was given).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Final

from ..errors import BatchServeError, ModelLoadFailed, NotReady, ShuttingDown
from ..models import LoadedModel, load_model
from .engine import ServingEngine
from .lifecycle import in_daemon_thread, start_engine
from .state import Phase, ServiceState

logger = logging.getLogger("batchserve.server")

READY: Final = "READY"
UNAVAILABLE: Final = "UNAVAILABLE"


async def load(state: ServiceState, reference: str | None = None) -> None:
    """Load `reference` (None: the current model's reference again) as the next version and
    serve it; see the module docstring. The work goes on if the caller is cancelled.

    Raises `ModelLoadFailed` when the model cannot be loaded or fails its warm-up (the served
    model keeps serving), `NotReady` before start-up finished, `ShuttingDown` once draining.
    """
    task = asyncio.ensure_future(_load_locked(state, reference))
    # _load_locked logs a failure; with its caller gone, nobody else would read the error.
    task.add_done_callback(_observed)
    await asyncio.shield(task)


async def unload(state: ServiceState) -> None:
    """Stop serving the model until the next `load` (idempotent). Raises `NotReady` before
    start-up finished, `ShuttingDown` once draining."""
    async with state.reload_lock:
        model = _check_serving(state)
        if not state.unloaded:
            state.set_unloaded(True)
            logger.info("model %r version %d unloaded", model.name, state.version)


def repository_index(state: ServiceState, ready_only: bool = False) -> list[dict[str, str]]:
    """The model repository as Triton's repository extension lists it: the served model with
    its version, ``READY`` or ``UNAVAILABLE`` (reason ``unloaded``)."""
    model = state.model
    if model is None or (ready_only and state.unloaded):
        return []
    status, reason = (UNAVAILABLE, "unloaded") if state.unloaded else (READY, "")
    return [{"name": model.name, "version": str(state.version), "state": status, "reason": reason}]


def model_status(state: ServiceState) -> dict[str, Any]:
    """The served model's name, version, platform and state (what a load returns)."""
    (entry,) = repository_index(state) or [{"name": "", "version": "", "state": UNAVAILABLE}]
    model = state.model
    return {
        "name": entry["name"],
        "version": entry["version"],
        "platform": model.platform if model is not None else "",
        "state": entry["state"],
    }


def _check_serving(state: ServiceState) -> LoadedModel:
    if state.phase is Phase.STARTING or state.model is None or state.processor is None:
        raise NotReady("the service is still starting")
    if state.phase is not Phase.READY:
        raise ShuttingDown("the server is shutting down")
    return state.model


async def _load_locked(state: ServiceState, reference: str | None) -> None:
    async with state.reload_lock:
        try:
            await _load(state, reference)
        except BaseException as exc:
            state.metrics.count_reload(False)
            if isinstance(exc, BatchServeError):
                logger.warning("model load refused; the served model keeps serving: %s", exc)
            else:
                logger.exception("model load failed; the served model keeps serving")
            raise
        state.metrics.count_reload(True)


async def _load(state: ServiceState, reference: str | None) -> None:
    current = _check_serving(state)
    settings = state.settings
    ref = state.reference if reference is None else reference
    begin = time.perf_counter()
    try:
        model = await asyncio.to_thread(
            load_model, ref or None, current.name, settings.model_search_path
        )
    except Exception as exc:
        raise ModelLoadFailed(f"cannot load {_shown(ref)}: {exc}") from exc
    version = state.version + 1
    engine = start_engine(state, model, version)
    try:
        await _warm_up(state, model, engine)
        _check_serving(state)  # a drain that began meanwhile has stopped the served engine
    except BaseException:
        await in_daemon_thread(engine.stop, 0.0)
        raise
    load_time = time.perf_counter() - begin
    _switch(state, model, ref, engine, version)
    state.metrics.set_model_loaded(model.name, model.platform, load_time)
    logger.info(
        "serving model %r version %d (%s) from %s, loaded in %.2fs",
        model.name,
        version,
        model.platform,
        _shown(ref),
        load_time,
    )


async def _warm_up(state: ServiceState, model: LoadedModel, engine: ServingEngine) -> None:
    """One batch through the new engine, as at start-up, bounded by the request timeout."""
    row = model.warmup_row() if state.settings.warmup else None
    if row is None:
        return
    limit = state.settings.request_timeout_s
    try:
        await asyncio.wait_for(engine.submit(row), limit)
    except TimeoutError:
        raise ModelLoadFailed(
            f"the new model did not answer its warm-up within {limit:g}s"
        ) from None
    except Exception as exc:
        raise ModelLoadFailed(f"the new model failed its warm-up: {exc}") from exc


def _switch(
    state: ServiceState, model: LoadedModel, ref: str, engine: ServingEngine, version: int
) -> None:
    """Make `engine` the served one, in one step on the event loop (no await in here)."""
    old = state.processor
    assert old is not None  # _check_serving
    engine.update_batch_size(old.current_batch_size)
    if old.is_paused:
        engine.pause()
    state.model, state.processor, state.version, state.reference = model, engine, version, ref
    state.set_unloaded(False)
    old.hand_over(engine)
    metrics = state.metrics
    metrics.set_model_version(model.name, version)
    metrics.on_target_size(engine.current_batch_size)
    retiring = asyncio.ensure_future(in_daemon_thread(old.stop, state.settings.drain_timeout_s))
    state.retiring.add(retiring)
    retiring.add_done_callback(state.retiring.discard)


def _observed(task: asyncio.Future[None]) -> None:
    if not task.cancelled():
        task.exception()


def _shown(ref: str) -> str:
    return repr(ref[:200]) if ref else "the embedded default model"
