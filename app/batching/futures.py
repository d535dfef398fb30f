"""Futures for items submitted from asyncio.

`concurrent.futures.Future` wakes its waiters through a condition variable and, for an
asyncio caller, each completion costs a thread-safe call into the event loop (one write to
the loop's wake-up pipe). Under load a batch of 64 items would wake the loop 64 times. The
types here settle like a `Future` (the engine treats both alike: `ItemFuture`) but hand their
completion to a `LoopNotifier`, which wakes the loop once for everything completed since its
last run, and resolve one asyncio future per submission.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import threading
import weakref
from collections.abc import Callable, Sequence
from concurrent.futures import InvalidStateError
from typing import Any, Protocol

_PENDING, _RUNNING, _CANCELLED, _FINISHED = range(4)
logger = logging.getLogger(__name__)
_LOCK = threading.Lock()  # sections are a few bytecodes long: one lock for all is cheaper


class ItemFuture(Protocol):
    """The part of `concurrent.futures.Future` the engine uses on an item's future."""

    def set_running_or_notify_cancel(self) -> bool: ...

    def set_result(self, result: Any) -> None: ...

    def set_exception(self, exception: BaseException | None) -> None: ...

    def cancel(self) -> bool: ...

    def cancelled(self) -> bool: ...

    def done(self) -> bool: ...


class CallbackFuture:
    """An `ItemFuture` that calls `on_done(self)` once, in the settling thread, when it
    finishes (not when it is cancelled: the canceller knows). `index` is its caller's tag."""

    __slots__ = ("_exception", "_on_done", "_result", "_state", "deliver", "index", "notifier")

    def __init__(
        self,
        on_done: Callable[[CallbackFuture], None],
        index: int = 0,
        notifier: LoopNotifier | None = None,
        deliver: Callable[[CallbackFuture], None] | None = None,
    ) -> None:
        self._state = _PENDING
        self._result: Any = None
        self._exception: BaseException | None = None
        self._on_done = on_done
        self.index = index
        # With both set, `settle_later` may settle it on the notifier's loop, where `deliver`
        # stands in for `on_done`.
        self.notifier = notifier
        self.deliver = deliver

    def set_running_or_notify_cancel(self) -> bool:
        with _LOCK:
            if self._state == _PENDING:
                self._state = _RUNNING
                return True
            if self._state == _CANCELLED:
                return False
        raise RuntimeError("future already finished")

    def cancel(self) -> bool:
        with _LOCK:
            if self._state == _PENDING:
                self._state = _CANCELLED
            return self._state == _CANCELLED

    def cancelled(self) -> bool:
        return self._state == _CANCELLED

    def done(self) -> bool:
        return self._state in (_CANCELLED, _FINISHED)

    def set_result(self, result: Any) -> None:
        self._finish(result, None)

    def set_exception(self, exception: BaseException | None) -> None:
        self._finish(None, exception)

    def _finish(self, result: Any, exception: BaseException | None) -> None:
        with _LOCK:
            if self._state in (_CANCELLED, _FINISHED):
                raise InvalidStateError("future already settled")
            self._state = _FINISHED
            self._result, self._exception = result, exception
        self._on_done(self)

    def outcome(self) -> tuple[Any, BaseException | None]:
        """(result, exception) of a finished future."""
        return self._result, self._exception

    def _settle_on_loop(self, result: Any) -> None:
        with _LOCK:
            if self._state in (_CANCELLED, _FINISHED):
                return  # settled meanwhile (an engine failure path): that outcome stands
            self._state = _FINISHED
            self._result = result
        assert self.deliver is not None
        self.deliver(self)


def settle_later(futures: Sequence[Any], results: Sequence[Any]) -> bool:
    """Settle `futures` with `results` on their event loop, in one hand-off, when all are
    `CallbackFuture`s reporting to one loop; False, and nothing done, otherwise.

    The worker thread settles a batch's futures between two model calls, so that time is
    the model's idle time. Handed to the loop, which delivers each result there anyway, the
    worker goes straight on to its next batch while the loop settles this one.
    """
    notifier: LoopNotifier | None = None
    for future in futures:
        if type(future) is not CallbackFuture or future.deliver is None:
            return False
        if future.notifier is not notifier:
            if notifier is not None:
                return False
            notifier = future.notifier
    if notifier is None:
        return False
    notifier.post(functools.partial(_settle_all, futures, results))
    return True


def _settle_all(futures: Sequence[CallbackFuture], results: Sequence[Any]) -> None:
    for future, result in zip(futures, results, strict=True):
        future._settle_on_loop(result)


class LoopNotifier:
    """Runs callbacks on an event loop, posted from any thread, with one wake-up per burst."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._pending: list[Callable[[], None]] = []
        self._scheduled = False
        self._lock = threading.Lock()

    def post(self, callback: Callable[[], None]) -> None:
        """Queue `callback` to run on the loop soon."""
        with self._lock:
            self._pending.append(callback)
            if self._scheduled:
                return
            self._scheduled = True
        with contextlib.suppress(RuntimeError):  # a closed loop has nobody waiting any more
            self.loop.call_soon_threadsafe(self._flush)

    def _flush(self) -> None:
        with self._lock:
            callbacks, self._pending, self._scheduled = self._pending, [], False
        for callback in callbacks:
            callback()


_NOTIFIERS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, LoopNotifier] = (
    weakref.WeakKeyDictionary()
)


def notifier_for(loop: asyncio.AbstractEventLoop) -> LoopNotifier:
    """The notifier of `loop` (one per loop)."""
    notifier = _NOTIFIERS.get(loop)
    if notifier is None:
        notifier = _NOTIFIERS[loop] = LoopNotifier(loop)
    return notifier


Settled = Callable[[list[Any] | None, BaseException | None], None]


class Gathering:
    """Results of one submission of `size` items, resolved on the running loop.

    By default `waiter` gets the list of results in order, or the first error. With
    `on_settled`, no asyncio future is made: ``on_settled(results, None)`` or
    ``on_settled(None, error)`` is called once, on the loop, and `waiter` is None. `loop`
    (the running loop) and `notifier` (its `notifier_for`) may be given by a caller that
    knows them: looking them up costs a system call and a weak-reference lookup.
    """

    __slots__ = ("_on_settled", "_post", "_remaining", "_results", "futures", "settled", "waiter")

    def __init__(
        self,
        size: int,
        on_settled: Settled | None = None,
        loop: asyncio.AbstractEventLoop | None = None,
        notifier: LoopNotifier | None = None,
    ) -> None:
        if loop is None:
            loop = asyncio.get_running_loop()
        self.waiter: asyncio.Future[list[Any]] | None = (
            None if on_settled is not None else loop.create_future()
        )
        self._on_settled = on_settled
        self.settled = False
        self._results: list[Any] = [None] * size
        self._remaining = size
        if notifier is None:
            notifier = notifier_for(loop)
        self._post = notifier.post
        on_done, deliver = self._on_done, self._deliver
        if size == 1:  # the usual request: one row, without a comprehension's frame
            self.futures = [CallbackFuture(on_done, 0, notifier, deliver)]
        else:
            self.futures = [CallbackFuture(on_done, i, notifier, deliver) for i in range(size)]
        if size == 0:  # nothing to wait for; a callback still runs later, as for any other
            if self.waiter is None:
                loop.call_soon(self._settle, [], None)
            else:
                self._settle([], None)

    def _on_done(self, future: CallbackFuture) -> None:
        self._post(functools.partial(self._deliver, future))

    def _deliver(self, future: CallbackFuture) -> None:
        waiter = self.waiter
        if self.settled or (waiter is not None and waiter.done()):
            return
        result, error = future.outcome()
        if error is not None:
            self._settle(None, error)
            return
        self._results[future.index] = result
        self._remaining -= 1
        if self._remaining == 0:
            self._settle(self._results, None)

    def _settle(self, results: list[Any] | None, error: BaseException | None) -> None:
        if self.settled:
            return
        self.settled = True
        if error is None:
            # Every item is done: nothing is left to cancel. The futures point back at this
            # object; dropping them here lets reference counting free both, not the GC.
            self.futures = []
        on_settled, self._on_settled = self._on_settled, None
        if on_settled is not None:
            try:
                on_settled(results, error)
            except Exception:  # the other submissions of this wake-up must still be answered
                logger.exception("a submission's completion callback failed")
            return
        waiter = self.waiter
        assert waiter is not None
        if waiter.done():
            return
        if error is not None:
            waiter.set_exception(error)
        else:
            waiter.set_result(results if results is not None else [])

    def cancel(self) -> None:
        """Cancel every item still queued (running ones finish; their results are dropped).
        With `on_settled`, the callback is not called afterwards."""
        if self._on_settled is not None:
            self.settled = True
            self._on_settled = None
        for future in self.futures:
            future.cancel()
