"""Awaiting engine futures from the event loop, with a deadline and client-disconnect watch."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from concurrent.futures import Future
from typing import Any

from app.errors import DeadlineExceeded

Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]


class ClientDisconnected(Exception):
    """The client went away before its answer was ready."""


def _gather(futures: Sequence[Future[Any]], loop: asyncio.AbstractEventLoop) -> asyncio.Future[Any]:
    """One loop future resolved when every engine future is done (or the first one fails).

    Engine futures complete on the worker thread; each completion costs one thread-safe
    wake-up of the loop, and the loop side counts them.
    """
    waiter: asyncio.Future[Any] = loop.create_future()
    results: list[Any] = [None] * len(futures)
    remaining = [len(futures)]

    def settle(index: int, future: Future[Any]) -> None:
        if waiter.done():
            return
        if future.cancelled():
            waiter.set_exception(asyncio.CancelledError())
            return
        error = future.exception()
        if error is not None:
            waiter.set_exception(error)
            return
        results[index] = future.result()
        remaining[0] -= 1
        if remaining[0] == 0:
            waiter.set_result(results)

    for index, future in enumerate(futures):
        future.add_done_callback(
            lambda f, i=index: loop.call_soon_threadsafe(settle, i, f)  # type: ignore[misc]
        )
    return waiter


async def _watch_disconnect(receive: Receive) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return


async def await_results(
    futures: Sequence[Future[Any]], receive: Receive | None, timeout_s: float | None
) -> list[Any]:
    """Wait for every future's result, in order.

    Raises the first engine error; `DeadlineExceeded` when `timeout_s` passes first (a running
    batch is not interrupted, its result is discarded); `ClientDisconnected` when the client
    goes away. On both, the still-queued items are cancelled so they never reach the model.
    """
    loop = asyncio.get_running_loop()
    waiter = _gather(futures, loop)
    watcher = loop.create_task(_watch_disconnect(receive)) if receive is not None else None
    timer = (
        loop.call_later(timeout_s, _expire, waiter, timeout_s) if timeout_s is not None else None
    )
    if watcher is not None:
        watcher.add_done_callback(lambda _: _disconnect(waiter))
    try:
        return list(await waiter)
    except (DeadlineExceeded, ClientDisconnected, asyncio.CancelledError):
        for future in futures:
            future.cancel()
        raise
    finally:
        if timer is not None:
            timer.cancel()
        if watcher is not None and not watcher.done():
            watcher.cancel()


def _expire(waiter: asyncio.Future[Any], timeout_s: float) -> None:
    if not waiter.done():
        waiter.set_exception(
            DeadlineExceeded(f"no answer within the request timeout of {timeout_s:g}s")
        )


def _disconnect(waiter: asyncio.Future[Any]) -> None:
    if not waiter.done():
        waiter.set_exception(ClientDisconnected())
