"""Start-up and shutdown of the service: load, warm up, serve, then drain within a deadline."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import threading
import time
from collections.abc import Callable

from ..config import Settings
from ..models import LoadedModel, load_model
from ..models.padding import model_collator
from .engine import ServingEngine
from .state import Phase, ServiceState
from .statistics import EngineCollector, ModelStatistics

logger = logging.getLogger("batchserve.server")


def load_configured_model(settings: Settings) -> LoadedModel:
    """The model the settings name; raises `ModelLoadError` saying what to fix."""
    return load_model(
        settings.model or None, settings.model_name or None, settings.model_search_path
    )


async def start_service(state: ServiceState) -> None:
    """Load the model, start the engine, warm it up with one batch, then report ready."""
    settings = state.settings
    begin = time.perf_counter()
    model = state.model
    if model is None:
        model = await asyncio.to_thread(load_configured_model, settings)
    load_time = state.model_load_s or time.perf_counter() - begin
    state.metrics.set_model_loaded(model.name, model.platform, load_time)
    state.metrics.set_model_version(model.name, state.version)
    processor = start_engine(state, model, state.version)
    state.metrics.set_queue_capacity(processor.config.max_queue_size)
    state.metrics.on_target_size(processor.current_batch_size)
    state.model, state.processor = model, processor
    state.reference = settings.model
    if settings.warmup:
        row = model.warmup_row()
        if row is not None:
            await processor.submit(row)
    # What start-up loaded (framework, model, numpy) lives as long as the process: move it out
    # of the collector's way so full collections under load do not rescan it.
    gc.collect()
    gc.freeze()
    state.set_phase(Phase.READY)
    logger.info(
        "serving model %r version %d (%s), loaded in %.2fs",
        model.name,
        state.version,
        model.platform,
        load_time,
    )


def start_engine(state: ServiceState, model: LoadedModel, version: int) -> ServingEngine:
    """A started engine running `model` (one function per model instance, batches shaped by
    the model's collator), booking its calls as `version`'s statistics."""
    config = state.settings.engine_config()
    statistics = ModelStatistics(model.name, str(version))
    processor = ServingEngine(config, EngineCollector(state.metrics, statistics))
    processor.start(
        model.instance_functions(config.instances), collator=model_collator(model, state.metrics)
    )
    return processor


async def drain_service(
    state: ServiceState, stop_accepting: Callable[[], None] | None = None
) -> None:
    """Report not-ready and keep serving for the grace window; then stop accepting
    connections (`stop_accepting`), make every answer close its connection, let in the
    requests begun before that (bodies still arriving), stop admitting (new requests get
    503) and answer every accepted request within `drain_timeout_s` (what is still queued
    then gets a shutting-down error). Idempotent."""
    if state.phase in (Phase.DRAINING, Phase.STOPPED):
        return
    settings = state.settings
    state.set_phase(Phase.DRAINING)
    logger.info("draining: readiness is now 503")
    if settings.shutdown_grace_s > 0:
        await asyncio.sleep(settings.shutdown_grace_s)
    if stop_accepting is not None:
        stop_accepting()
    state.closing = True
    loop = asyncio.get_running_loop()
    deadline = loop.time() + settings.drain_timeout_s
    if state.receiving:
        # Begun before the drain, these are accepted: their rows go in before the engine
        # stops admitting. A stalled body ends with its body timeout, all within the deadline.
        logger.info("waiting for %d request(s) still being received", state.receiving)
        state.all_received = asyncio.Event()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(state.all_received.wait(), settings.drain_timeout_s)
    processor = state.processor
    if processor is not None:
        pending = len(processor)
        logger.info("stopping the engine: %d queued item(s) to finish", pending)
        await in_daemon_thread(processor.stop, max(0.0, deadline - loop.time()))
    if state.retiring:  # earlier versions' engines, each within drain_timeout_s of its switch
        await asyncio.gather(*state.retiring)
    state.set_phase(Phase.STOPPED)
    logger.info("drained")


async def in_daemon_thread(fn: Callable[[float], None], arg: float) -> None:
    """Run ``fn(arg)`` on a daemon thread and await it. Unlike `asyncio.to_thread`, a process
    told to exit at once does not wait for it at interpreter exit (a model may hold it)."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()

    def run() -> None:
        try:
            fn(arg)
        finally:
            with contextlib.suppress(RuntimeError):  # the loop is gone: nobody waits
                loop.call_soon_threadsafe(_set_done, done)

    threading.Thread(target=run, name="batchserve-drain", daemon=True).start()
    await done


def _set_done(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
