"""The engine's queue on its own (`batchserve.batching.queue.ItemQueue`), with an injected clock:
priority levels, FIFO within a level, aging, byte budgets, pause and shutdown."""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from batchserve.batching import BatchPriority, PrioritizedItem
from batchserve.batching.queue import ItemQueue
from batchserve.errors import ShuttingDown


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def entry(seq: int, priority: int, at: float, nbytes: int = 1) -> PrioritizedItem:
    return PrioritizedItem(priority, seq, nbytes, None, at)


def size_of(item: PrioritizedItem) -> int:
    return int(item.item)


def constant(value: int) -> Callable[[], int]:
    return lambda: value


def idents(entries: list[PrioritizedItem]) -> list[int]:
    return [e.sequence for e in entries]


def test_aged_low_item_is_served_before_younger_high_items() -> None:
    clock = Clock()
    queue = ItemQueue(100, aging_s=1.0, clock=clock)
    queue.put_many([entry(0, BatchPriority.LOW, clock.now)], None)
    clock.now += 0.5
    queue.put_many([entry(i, BatchPriority.HIGH, clock.now) for i in (1, 2)], None)
    assert idents(queue.take(lambda: 1, None, size_of)) == [1]  # LOW is not old enough yet
    clock.now += 0.5
    assert idents(queue.take(lambda: 2, None, size_of)) == [0, 2]


def test_take_nowait_never_exceeds_the_byte_budget() -> None:
    queue = ItemQueue(100)
    queue.put_many([entry(i, BatchPriority.NORMAL, 0.0, nbytes=10) for i in range(5)], None)
    assert queue.take_nowait(5, 5, size_of) == []  # not even one item fits
    assert idents(queue.take_nowait(5, 25, size_of)) == [0, 1]
    # A blocking take always hands over its first item (enqueue refuses oversized ones).
    assert idents(queue.take(lambda: 5, 5, size_of)) == [2]


def test_a_closed_queue_cannot_be_paused_again() -> None:
    queue = ItemQueue(10)
    queue.put_many([entry(0, BatchPriority.NORMAL, 0.0)], None)
    queue.set_paused(True)
    queue.close()
    queue.set_paused(True)  # a pause racing with shutdown must not stall the drain
    assert not queue.paused
    assert idents(queue.take(lambda: 5, None, size_of)) == [0]
    assert queue.take(lambda: 5, None, size_of) == []  # closed and empty: the worker exits
    with pytest.raises(ShuttingDown):
        queue.put_many([entry(1, BatchPriority.NORMAL, 0.0)], 0)


def reference_order(
    queued: list[PrioritizedItem], now: float, aging: float | None, count: int
) -> list[int]:
    """The documented rule, one item at a time: the highest non-empty level, unless a lower
    level's head has waited at least `aging` and is older than the chosen head."""
    levels: list[deque[PrioritizedItem]] = [deque() for _ in BatchPriority]
    for item in queued:
        levels[item.priority].append(item)
    out: list[int] = []
    while len(out) < count and any(levels):
        best = next(i for i, level in enumerate(levels) if level)
        for i in range(best + 1, len(levels)):
            head = levels[i][0] if levels[i] else None
            if (
                head is not None
                and aging is not None
                and now - head.enqueue_time >= aging
                and head.enqueue_time < levels[best][0].enqueue_time
            ):
                best = i
        out.append(levels[best].popleft().sequence)
    return out


@dataclass(frozen=True)
class Put:
    priorities: list[BatchPriority]


@dataclass(frozen=True)
class Take:
    count: int


@dataclass(frozen=True)
class Tick:
    seconds: float


operations = st.lists(
    st.one_of(
        st.builds(Put, st.lists(st.sampled_from(list(BatchPriority)), max_size=6)),
        st.builds(Take, st.integers(1, 8)),
        st.builds(Tick, st.floats(0, 0.6)),
    ),
    max_size=40,
)


@settings(max_examples=60, deadline=None)
@given(ops=operations, aging=st.sampled_from([None, 0.5, 1.0]))
def test_take_follows_priority_fifo_and_aging(
    ops: list[Put | Take | Tick], aging: float | None
) -> None:
    clock = Clock()
    queue = ItemQueue(1000, aging_s=aging, clock=clock)
    queued: list[PrioritizedItem] = []
    sequence = itertools.count()
    for op in ops:
        if isinstance(op, Put):
            batch = [entry(next(sequence), p, clock.now) for p in op.priorities]
            queue.put_many(batch, None)
            queued.extend(batch)
        elif isinstance(op, Tick):
            clock.now += op.seconds
        elif queued:
            expected = reference_order(queued, clock.now, aging, op.count)
            assert idents(queue.take(constant(op.count), None, size_of)) == expected
            queued = [item for item in queued if item.sequence not in set(expected)]
    assert len(queue) == len(queued)
