"""Deadlines of the requests that carry the service's default timeout, on one loop timer.

Most requests carry the same timeout, so their deadlines come due in the order they were
set: a FIFO keeps them and one timer, armed for its oldest entry, serves them all. Setting a
deadline is an append and clearing one only marks its entry; marked entries leave from the
front as new ones arrive, and requests finish roughly in arrival order, so the FIFO holds
little more than the requests in flight. A timer per request (``loop.call_later`` and its
``cancel``) costs about 2 us of the event loop's time under uvloop, a few percent of a small
request's whole cost; an entry here costs a quarter of that.

Bound: a cleared entry (a small object that no longer refers to its request) waits behind the
oldest request still running, which leaves when it is answered or when its own deadline comes,
so the FIFO holds at most one timeout's worth of arrivals. A request with any other timeout
(a client's own) gets a timer of its own, so no structure is keyed by what a client sends.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Callable

logger = logging.getLogger("batchserve.server")

# A timer may run this much before its time: libuv keeps the loop's clock in milliseconds.
_EARLY_S = 0.001


class Deadline:
    """One request's deadline in a `DeadlineQueue`; `cancel` clears it (idempotent)."""

    __slots__ = ("callback", "when")

    def __init__(self, when: float, callback: Callable[[], None]) -> None:
        self.when = when
        self.callback: Callable[[], None] | None = callback

    def cancel(self) -> None:
        """The request was answered: never call back (and let go of the request)."""
        self.callback = None


class DeadlineQueue:
    """Deadlines `timeout_s` after they are set, on `loop`, in setting order."""

    __slots__ = ("_entries", "_timer", "loop", "timeout_s")

    def __init__(self, loop: asyncio.AbstractEventLoop, timeout_s: float) -> None:
        self.loop = loop
        self.timeout_s = timeout_s
        self._entries: collections.deque[Deadline] = collections.deque()
        self._timer: asyncio.TimerHandle | None = None

    def __len__(self) -> int:
        return len(self._entries)

    def add(self, callback: Callable[[], None]) -> Deadline:
        """Call `callback` on the loop `timeout_s` from now, unless the entry is cancelled."""
        entries = self._entries
        while entries and entries[0].callback is None:
            entries.popleft()
        entry = Deadline(self.loop.time() + self.timeout_s, callback)
        entries.append(entry)
        if self._timer is None:
            self._timer = self.loop.call_at(entries[0].when, self._fire)
        return entry

    def _fire(self) -> None:
        self._timer = None
        entries = self._entries
        due = self.loop.time() + _EARLY_S
        while entries:
            first = entries[0]
            callback = first.callback
            if callback is not None and first.when > due:
                break
            entries.popleft()
            if callback is not None:
                first.callback = None
                try:
                    callback()
                except Exception:  # the deadlines behind it must still fire
                    logger.exception("a request deadline callback failed")
        if entries:
            self._timer = self.loop.call_at(entries[0].when, self._fire)
