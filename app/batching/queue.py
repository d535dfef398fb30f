"""The engine's bounded priority queue.

One lock guards everything. Items wait in one FIFO deque per priority level; `take` serves the
highest non-empty level first, except that an item that has waited longer than the aging limit
is served before younger items of higher levels, so LOW is never starved under sustained HIGH
load. Items leave the queue in one of three ways: taken for a batch, expired by the deadline
reaper (`expire`), or failed by `abort` at shutdown. Entries removed out of order stay in their
deque marked ``removed`` and are skipped lazily, which keeps every operation O(1) amortised.
"""

from __future__ import annotations

import heapq
import threading
import time
from collections import deque
from collections.abc import Callable

from ..errors import QueueFull, ShuttingDown, TooManyItems
from .config import BatchPriority, PrioritizedItem

Clock = Callable[[], float]


class ItemQueue:
    """Bounded, thread-safe priority queue of `PrioritizedItem` with deadlines and a pause gate."""

    def __init__(
        self,
        maxsize: int,
        *,
        prioritized: bool = True,
        aging_s: float | None = None,
        clock: Clock = time.monotonic,
    ) -> None:
        self._maxsize = maxsize
        self._prioritized = prioritized
        self._aging_s = aging_s
        self._clock = clock
        self._levels: tuple[deque[PrioritizedItem], ...] = tuple(deque() for _ in BatchPriority)
        self._counts = [0] * len(BatchPriority)
        self._size = 0
        self._deadlines: list[tuple[float, int, PrioritizedItem]] = []
        self._lock = threading.Lock()
        self._not_empty = threading.Condition(self._lock)
        self._not_full = threading.Condition(self._lock)
        self._paused = False
        self._closed = False
        self._aborted = False

    # -- producers ---------------------------------------------------------------------------

    def put_many(
        self, entries: list[PrioritizedItem], timeout: float | None, *, wake: bool = True
    ) -> bool:
        """Admit all `entries` or none, waiting up to `timeout` seconds for room.

        Returns True when one of them now carries the earliest deadline in the queue (the
        caller wakes its deadline reaper). Raises `QueueFull` after the timeout (at once when
        `timeout` is 0) and `ShuttingDown` once the queue is closed. With `wake` False the
        worker is not woken: the caller promises a `wake()` soon.
        """
        needed = len(entries)
        with self._not_full:
            if needed > self._maxsize:
                raise TooManyItems(f"{needed} items can never fit: max_queue_size={self._maxsize}")
            fits = not self._closed and self._size + needed <= self._maxsize  # the usual case
            if not fits and not self._wait_for_room(needed, timeout):
                raise QueueFull(f"queue full ({self._size}/{self._maxsize} items)")
            deadlines = self._deadlines
            earliest = deadlines[0][0] if deadlines else None
            new_earliest = False
            levels, counts, prioritized = self._levels, self._counts, self._prioritized
            for entry in entries:
                priority = entry.priority
                levels[priority if prioritized else BatchPriority.NORMAL].append(entry)
                counts[priority] += 1
                if entry.deadline is not None:
                    heapq.heappush(deadlines, (entry.deadline, entry.sequence, entry))
                    new_earliest |= earliest is None or entry.deadline < earliest
            self._size += needed
            self._compact_locked()
            if wake:
                self._not_empty.notify()
            return new_earliest

    def wake(self) -> None:
        """Wake the worker for entries put with ``wake=False``."""
        with self._not_empty:
            self._not_empty.notify()

    def _wait_for_room(self, needed: int, timeout: float | None) -> bool:
        end = None if timeout is None else self._clock() + timeout
        while True:
            if self._closed:
                raise ShuttingDown("the batch processor is shutting down")
            if self._size + needed <= self._maxsize:
                return True
            remaining = None if end is None else end - self._clock()
            if remaining is not None and remaining <= 0:
                return False
            self._not_full.wait(remaining)

    # -- the worker --------------------------------------------------------------------------

    def take(
        self,
        max_items: Callable[[], int],
        max_bytes: int | None,
        size_of: Callable[[PrioritizedItem], int],
    ) -> list[PrioritizedItem]:
        """Wait for work, then remove up to `max_items()` entries (and `max_bytes` bytes).

        `max_items` is read once there is work, so a target changed while the worker idled
        applies to the very next batch. Blocks while the queue is empty or paused. Returns an
        empty list once the queue is closed and empty, or aborted. Cancelled entries are
        returned too; the caller drops them.
        """
        with self._not_empty:
            while not self._aborted and (self._size == 0 or self._paused):
                if self._closed and self._size == 0:
                    return []
                self._not_empty.wait()
            if self._aborted:
                return []
            # The first entry is taken whatever its size: enqueue refuses items over the cap.
            return self._take_locked(max_items(), max_bytes, size_of, first_free=True)

    def take_nowait(
        self, max_items: int, max_bytes: int | None, size_of: Callable[[PrioritizedItem], int]
    ) -> list[PrioritizedItem]:
        """Remove up to `max_items` entries that are queued right now, without waiting, and
        together no larger than `max_bytes` (the room left in a batch being topped up)."""
        with self._lock:
            if self._aborted or self._paused:
                return []
            return self._take_locked(max_items, max_bytes, size_of, first_free=False)

    def wait_for_items(self, timeout: float) -> bool:
        """Wait up to `timeout` seconds for at least one queued, unpaused item."""
        end = self._clock() + timeout
        with self._not_empty:
            while self._size == 0 or self._paused:
                remaining = end - self._clock()
                if remaining <= 0 or self._aborted or self._closed:
                    return False
                self._not_empty.wait(remaining)
            return True

    def _take_locked(
        self,
        max_items: int,
        max_bytes: int | None,
        size_of: Callable[[PrioritizedItem], int],
        *,
        first_free: bool,
    ) -> list[PrioritizedItem]:
        taken: list[PrioritizedItem] = []
        used = 0
        now = self._clock()
        counts = self._counts
        items: deque[PrioritizedItem] = self._levels[0]
        settled = False  # True while the level being served is sure to win the next pick too
        while len(taken) < max_items and self._size > 0:
            if not settled:
                level = self._pick_level(now)
                items = self._levels[level]
                settled = self._keeps_winning(level)
            while items and items[0].removed:
                items.popleft()
            if not items:
                settled = False
                continue
            if max_bytes is None and settled:
                # The common case, one level to serve and no byte budget: one sweep.
                self._sweep(items, max_items - len(taken), taken)
                continue
            entry = items[0]
            if max_bytes is not None:
                cost = size_of(entry)
                if used + cost > max_bytes and (taken or not first_free):
                    break
                used += cost
            items.popleft()
            entry.removed = True
            self._size -= 1
            counts[entry.priority] -= 1
            taken.append(entry)
        if taken:
            self._not_full.notify(len(taken))
        return taken

    def _sweep(
        self, items: deque[PrioritizedItem], wanted: int, taken: list[PrioritizedItem]
    ) -> None:
        """Move up to `wanted` live entries from the head of `items` to `taken`."""
        counts = self._counts
        got = 0
        while got < wanted and items:
            entry = items.popleft()
            if entry.removed:
                continue
            entry.removed = True
            counts[entry.priority] -= 1
            taken.append(entry)
            got += 1
        self._size -= got

    def _keeps_winning(self, level: int) -> bool:
        """Whether `level` stays the pick until it is empty: always without aging (the highest
        non-empty level wins), and with aging when no other level holds anything."""
        if self._aging_s is None:
            return True
        return not any(items for other, items in enumerate(self._levels) if other != level)

    def _pick_level(self, now: float) -> int:
        """The level to serve next: the highest non-empty, unless a lower head has aged out."""
        aging = self._aging_s
        best = -1
        for level, items in enumerate(self._levels):
            while items and items[0].removed:
                items.popleft()
            if not items:
                continue
            if best < 0:
                best = level
                if aging is None:
                    return best
            elif (
                aging is not None
                and now - items[0].enqueue_time >= aging
                and items[0].enqueue_time < self._levels[best][0].enqueue_time
            ):
                best = level
        return best

    def _remove_locked(self, entry: PrioritizedItem) -> None:
        entry.removed = True
        self._size -= 1
        self._counts[entry.priority] -= 1

    # -- deadlines, pause, shutdown ------------------------------------------------------------

    def expire(self, now: float) -> list[PrioritizedItem]:
        """Remove and return the queued entries whose deadline is at or before `now`."""
        expired: list[PrioritizedItem] = []
        with self._lock:
            heap = self._deadlines
            while heap and heap[0][0] <= now:
                _, _, entry = heapq.heappop(heap)
                if not entry.removed:
                    self._remove_locked(entry)
                    expired.append(entry)
            self._compact_locked()
            if expired:
                self._not_full.notify(len(expired))
        return expired

    def _compact_locked(self) -> None:
        """Drop removed entries once they outnumber the queued ones (amortised O(1)).

        Entries taken for a batch stay in the deadline heap, and expired ones in their
        level's deque, until they reach its front. The reaper reaches the heap's front only
        at the next queued deadline (and nothing takes from a paused deque), so without this
        every item served meanwhile, with its future and result, would stay alive for up to
        a whole request timeout: memory growing with throughput.
        """
        limit = 2 * self._size + 64
        if len(self._deadlines) > limit:
            self._deadlines = [item for item in self._deadlines if not item[2].removed]
            heapq.heapify(self._deadlines)
        if sum(map(len, self._levels)) > limit:
            for level in self._levels:
                kept = [entry for entry in level if not entry.removed]
                level.clear()
                level.extend(kept)

    def next_deadline(self) -> float | None:
        """The earliest deadline of a queued entry, or None."""
        with self._lock:
            heap = self._deadlines
            while heap and heap[0][2].removed:
                heapq.heappop(heap)
            return heap[0][0] if heap else None

    def set_paused(self, paused: bool) -> None:
        """Hold (or release) every queued item; `take` waits while paused. A closed queue
        stays unpaused, so a pause racing with shutdown cannot stall the drain."""
        with self._lock:
            self._paused = paused and not self._closed
            self._not_empty.notify_all()

    def close(self) -> None:
        """Refuse new items from now on; queued items can still be taken (pause is lifted)."""
        with self._lock:
            self._closed = True
            self._paused = False
            self._not_empty.notify_all()
            self._not_full.notify_all()

    def abort(self) -> list[PrioritizedItem]:
        """Close, wake every waiter, and remove and return everything still queued."""
        with self._lock:
            self._closed = True
            self._aborted = True
            left = [e for level in self._levels for e in level if not e.removed]
            for entry in left:
                self._remove_locked(entry)
            for level in self._levels:
                level.clear()
            self._deadlines.clear()
            self._not_empty.notify_all()
            self._not_full.notify_all()
            return left

    # -- introspection ----------------------------------------------------------------------

    def __len__(self) -> int:
        return self._size

    @property
    def paused(self) -> bool:
        """Whether the queue holds its items."""
        return self._paused

    @property
    def closed(self) -> bool:
        """Whether new items are refused."""
        return self._closed

    def depth_by_priority(self) -> dict[str, int]:
        """Queued items per priority name (lower-case)."""
        with self._lock:
            return {p.name.lower(): self._counts[p] for p in BatchPriority}

    def oldest_wait(self, now: float) -> float:
        """Seconds the oldest queued item has waited (0 when empty)."""
        with self._lock:
            heads = [
                next((e.enqueue_time for e in level if not e.removed), now)
                for level in self._levels
            ]
        return max(0.0, now - min(heads))
