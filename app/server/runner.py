"""Running the app under uvicorn with a drain-aware SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import gc
import logging
import math
import socket
from types import FrameType

import uvicorn

from ..config import Settings
from .app import create_app
from .lifecycle import drain_service
from .middleware import ServiceMiddleware
from .state import ServiceState

logger = logging.getLogger("batchserve.server")
LATE_REQUEST_WINDOW_S = 0.2


class DrainingServer(uvicorn.Server):
    """On the first SIGTERM/SIGINT: readiness 503, grace window, drain the engine (every
    accepted request answered), then let uvicorn close. A second signal exits at once."""

    def __init__(self, config: uvicorn.Config, state: ServiceState) -> None:
        super().__init__(config)
        self.service = state
        self._loop: asyncio.AbstractEventLoop | None = None
        self._draining = False
        self._drain_task: asyncio.Task[None] | None = None

    async def serve(self, sockets: list[object] | None = None) -> None:  # type: ignore[override]
        self._loop = asyncio.get_running_loop()
        await super().serve(sockets)  # type: ignore[arg-type]

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            freeze_startup_objects()

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self._draining or self._loop is None or not self.started:
            super().handle_exit(sig, frame)
            return
        self._draining = True
        logger.info("signal %d: draining before exit", sig)
        self._loop.call_soon_threadsafe(self._start_drain)

    def _start_drain(self) -> None:
        self._drain_task = asyncio.ensure_future(self._drain_then_exit())

    async def _drain_then_exit(self) -> None:
        try:
            await drain_service(self.service)
            # Requests on connections accepted a moment ago may still be in transit: let them
            # arrive and be answered (503) before uvicorn closes every idle connection.
            await asyncio.sleep(LATE_REQUEST_WINDOW_S)
        finally:
            self.should_exit = True


def freeze_startup_objects() -> None:
    """Move everything alive once the model is loaded (modules, the framework, the model)
    out of the cycle collector's reach: it lives as long as the process, and a full
    collection walking it holds the GIL for tens of milliseconds."""
    gc.collect()
    gc.freeze()


def http_protocol(app: ServiceMiddleware) -> type[asyncio.Protocol] | str:
    """The protocol that serves plain `POST /predict` itself; uvicorn's choice without httptools."""
    try:
        from .protocol import protocol_for
    except ImportError:  # httptools is missing: uvicorn falls back to h11
        return "auto"
    return protocol_for(app)


def serve(settings: Settings) -> None:
    """Serve until a signal ends the drain."""
    app = create_app(settings)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        http=http_protocol(app) if settings.fast_path else "auto",
        log_config=None,
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=max(1, math.ceil(settings.drain_timeout_s)),
    )
    DrainingServer(config, app.state).run()
