"""Test models and helpers for the HTTP service tests."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import numpy as np

from batchserve.config import Settings
from batchserve.metrics import Metrics
from batchserve.models import LoadedModel, TensorSpec
from batchserve.server.app import create_app
from batchserve.server.doors.asgi import ServiceMiddleware

POISON = -1.0


class RecordingModel:
    """Doubles its input; records every batch it sees; raises on rows whose first value is
    POISON; optionally blocks on `gate` until the test opens it."""

    def __init__(self, gated: bool = False) -> None:
        self.gate = threading.Event()
        if not gated:
            self.gate.set()
        self.entered = threading.Event()
        self.batches: list[np.ndarray] = []
        self._lock = threading.Lock()

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        with self._lock:
            self.batches.append(batch.copy())
        self.entered.set()
        self.gate.wait(30)
        if np.any(batch[:, 0] == POISON):
            raise ValueError("poison row")
        return batch * 2

    @property
    def rows_seen(self) -> list[float]:
        """First value of every row the model ran, in order."""
        with self._lock:
            return [float(row[0]) for batch in self.batches for row in batch]


def recording_model(fn: Callable[[np.ndarray], Any], width: int = 4) -> LoadedModel:
    """A float32 model of `width` inputs and outputs around `fn`."""
    return LoadedModel(
        name="echo",
        platform="test",
        predict_fn=fn,
        inputs=(TensorSpec("x", (width,), "float32"),),
        outputs=(TensorSpec("y", (width,), "float32"),),
    )


class LifespanRunner:
    """Drives the ASGI lifespan protocol of an app, as a server would."""

    def __init__(self, app: ServiceMiddleware) -> None:
        self.app = app
        self._to_app: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._from_app: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    async def _receive(self) -> dict[str, Any]:
        return await self._to_app.get()

    async def _send(self, message: Any) -> None:
        await self._from_app.put(dict(message))

    async def startup(self) -> None:
        scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
        self._task = asyncio.create_task(self.app(scope, self._receive, self._send))
        await self._to_app.put({"type": "lifespan.startup"})
        message = await self._from_app.get()
        assert message["type"] == "lifespan.startup.complete", message

    async def shutdown(self) -> None:
        await self._to_app.put({"type": "lifespan.shutdown"})
        message = await self._from_app.get()
        assert message["type"] == "lifespan.shutdown.complete", message
        assert self._task is not None
        await self._task


@asynccontextmanager
async def serving(
    settings: Settings | None = None,
    model: LoadedModel | None = None,
    metrics: Metrics | None = None,
) -> AsyncIterator[tuple[ServiceMiddleware, httpx.AsyncClient]]:
    """A started app and an httpx client talking to it in-process."""
    app = create_app(settings or Settings(), model=model, metrics=metrics)
    lifespan = LifespanRunner(app)
    await lifespan.startup()
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield app, client
    finally:
        await lifespan.shutdown()


async def until(predicate: Callable[[], bool], limit_s: float = 5.0) -> None:
    """Wait (yielding to the loop) until `predicate()` holds; fail after `limit_s` seconds."""
    loop = asyncio.get_running_loop()
    end = loop.time() + limit_s
    while not predicate():
        if loop.time() > end:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.001)
