"""Running the app under uvicorn, with the shutdown operators expect.

First SIGTERM, SIGINT or SIGHUP: readiness turns 503 and the service keeps serving for
`shutdown_grace_s`; then it stops accepting connections, every answer closes its connection,
the engine stops admitting (503) and finishes what it accepted within `drain_timeout_s`, and
uvicorn closes the connections left. A second signal answers everything still queued or
running with 503 and exits within about a second; a third exits at once.

uvicorn internals used here (besides the protocol's, listed in
`batchserve.server.doors.uvicorn`): ``Server.handle_exit``, ``capture_signals``,
``should_exit``, ``force_exit``, ``started``, ``servers`` and ``config``.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import math
import signal
import socket
import threading
import time
from collections.abc import Iterator
from types import FrameType
from typing import Final

import uvicorn

from ..config import Settings
from ..errors import ModelLoadError
from .app import create_app
from .doors.uvicorn import protocol_for
from .lifecycle import drain_service, load_configured_model
from .state import ServiceState

logger = logging.getLogger("batchserve.server")
LATE_REQUEST_WINDOW_S = 0.2
EXIT_NOW_GRACE_S = 1
STARTUP_FAILURE = 3  # uvicorn's own exit status when the application cannot start


class DrainingServer(uvicorn.Server):
    """uvicorn's server with the shutdown of the module docstring."""

    def __init__(self, config: uvicorn.Config, state: ServiceState) -> None:
        super().__init__(config)
        self.service = state
        self._loop: asyncio.AbstractEventLoop | None = None
        self._signals = 0
        self._drain_task: asyncio.Task[None] | None = None

    async def serve(self, sockets: list[object] | None = None) -> None:  # type: ignore[override]
        self._loop = asyncio.get_running_loop()
        await super().serve(sockets)  # type: ignore[arg-type]

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            freeze_startup_objects()

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        with super().capture_signals():
            if threading.current_thread() is not threading.main_thread():
                yield
                return
            previous = signal.signal(signal.SIGHUP, self.handle_exit)
            try:
                yield
            finally:
                signal.signal(signal.SIGHUP, previous)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        loop = self._loop
        if loop is None or not self.started:
            super().handle_exit(sig, frame)
            return
        self._signals += 1
        if self._signals == 1:
            logger.info("signal %d: draining before exit", sig)
            loop.call_soon_threadsafe(self._start_drain)
        elif self._signals == 2:
            logger.warning("signal %d again: answering what is left with 503 and exiting", sig)
            loop.call_soon_threadsafe(self._exit_now)
        else:
            self.force_exit = self.should_exit = True

    def _start_drain(self) -> None:
        self._drain_task = asyncio.ensure_future(self._drain_then_exit())

    async def _drain_then_exit(self) -> None:
        try:
            await drain_service(self.service, self.stop_accepting)
            # Requests already on their way over open connections: let them arrive and be
            # answered (503, connection: close) before uvicorn closes the idle connections.
            await asyncio.sleep(LATE_REQUEST_WINDOW_S)
        finally:
            self.should_exit = True

    def _exit_now(self) -> None:
        self.stop_accepting()
        self.service.closing = True
        processor = self.service.processor
        if processor is not None:
            processor.abort("the server is exiting: a second shutdown signal arrived")
        self.config.timeout_graceful_shutdown = EXIT_NOW_GRACE_S
        if self._drain_task is not None:
            self._drain_task.cancel()
        self.should_exit = True

    def stop_accepting(self) -> None:
        """Close the listening sockets: new connections are refused from now on."""
        for server in getattr(self, "servers", ()):
            server.close()


_YOUNG_GENERATION_THRESHOLD: Final = 10_000


def freeze_startup_objects() -> None:
    """Move everything alive once the model is loaded (modules, the framework, the model)
    out of the cycle collector's reach: it lives as long as the process, and a full
    collection walking it holds the GIL for tens of milliseconds. Then collect the youngest
    generation less often."""
    gc.collect()
    gc.freeze()
    # 64 requests in flight keep about 700 young objects alive, the default threshold: the
    # youngest generation was collected every few requests, each pass walking all of them
    # for nothing (reference counting frees them). At 64 clients this took the collector's
    # share of the event loop's instructions from 2.2% to 1.1%.
    gc.set_threshold(_YOUNG_GENERATION_THRESHOLD, *gc.get_threshold()[1:])


def serve(settings: Settings) -> None:
    """Load the model, then serve until a signal ends the drain. A model that cannot be
    loaded stops the process with its message (exit status 3), not a traceback."""
    begin = time.perf_counter()
    try:
        model = load_configured_model(settings)
    except ModelLoadError as exc:
        logger.error("cannot load the model: %s", exc)
        raise SystemExit(STARTUP_FAILURE) from None
    app = create_app(settings, model=model)
    app.state.model_load_s = time.perf_counter() - begin
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        http=protocol_for(app),
        ws="none",  # no route speaks WebSocket
        log_config=None,
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=max(1, math.ceil(settings.drain_timeout_s)),
    )
    DrainingServer(config, app.state).run()
