"""Awaiting a submission's rows from the event loop, with a deadline and a watch for a client
that goes away."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from ..batching.futures import Gathering
from ..errors import DeadlineExceeded

Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]

# Most answers come back within a few milliseconds; only a longer wait is worth a watcher
# task. A client gone sooner than this has its rows run and the answer discarded.
DISCONNECT_WATCH_AFTER_S = 0.002


class ClientDisconnected(Exception):
    """The client went away before its answer was ready."""


async def _watch_disconnect(receive: Receive) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return


async def await_results(
    gathering: Gathering, receive: Receive | None, timeout_s: float | None
) -> list[Any]:
    """Wait for every row's result, in order.

    Raises the first engine error; `DeadlineExceeded` when `timeout_s` passes first (a running
    batch is not interrupted, its result is discarded); `ClientDisconnected` when the client
    goes away. On both, the rows still queued are cancelled so they never reach the model.
    """
    loop = asyncio.get_running_loop()
    waiter = gathering.waiter
    assert waiter is not None, "submitted without on_settled"
    watchers: list[asyncio.Task[None]] = []

    def watch() -> None:
        assert receive is not None
        task = loop.create_task(_watch_disconnect(receive))
        task.add_done_callback(lambda _: _fail(waiter, ClientDisconnected()))
        watchers.append(task)

    starter = loop.call_later(DISCONNECT_WATCH_AFTER_S, watch) if receive is not None else None
    timer = arm_deadline(waiter, timeout_s)
    try:
        return await waiter
    except (DeadlineExceeded, ClientDisconnected, asyncio.CancelledError):
        gathering.cancel()
        raise
    finally:
        for handle in (starter, timer):
            if handle is not None:
                handle.cancel()
        for task in watchers:
            task.cancel()


def arm_deadline(
    waiter: asyncio.Future[Any], timeout_s: float | None
) -> asyncio.TimerHandle | None:
    """Fail `waiter` with `DeadlineExceeded` once `timeout_s` passes (None: never)."""
    if timeout_s is None:
        return None
    return waiter.get_loop().call_later(timeout_s, _expire, waiter, timeout_s)


def _expire(waiter: asyncio.Future[Any], timeout_s: float) -> None:
    if not waiter.done():  # the error is built only for the rare request that needs it
        waiter.set_exception(
            DeadlineExceeded(f"no answer within the request timeout of {timeout_s:g}s")
        )


def _fail(waiter: asyncio.Future[Any], error: Exception) -> None:
    if not waiter.done():
        waiter.set_exception(error)
