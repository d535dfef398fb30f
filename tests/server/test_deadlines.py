"""Request deadlines of the default timeout share one timer: each fires once, at its time and
never before, in the order they were set; a cancelled one never fires and lets go of its
request; and the queue holds nothing once the requests it waited on are answered."""

from __future__ import annotations

import asyncio
import gc
import weakref
from collections.abc import Callable
from typing import Any

import pytest

from batchserve.server.inference.deadlines import DeadlineQueue

TIMEOUT_S = 30.0


class Clock:
    """The loop surface the queue uses (`time`, `call_at`), with time moved by hand."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.timers: list[Timer] = []

    def time(self) -> float:
        return self.now

    def call_at(self, when: float, callback: Callable[[], None]) -> Timer:
        timer = Timer(when, callback)
        self.timers.append(timer)
        return timer

    def advance(self, seconds: float) -> None:
        """Move time on and run the timers now due, as a loop would, in time order."""
        self.now += seconds
        while due := sorted(
            (t for t in self.timers if not t.cancelled and t.when <= self.now),
            key=lambda t: t.when,
        ):
            for timer in due:
                self.timers.remove(timer)
                timer.callback()

    @property
    def armed(self) -> list[float]:
        return [t.when for t in self.timers if not t.cancelled]


class Timer:
    def __init__(self, when: float, callback: Callable[[], None]) -> None:
        self.when, self.callback, self.cancelled = when, callback, False

    def cancel(self) -> None:
        self.cancelled = True


def queue_on(clock: Clock) -> DeadlineQueue:
    loop: Any = clock
    return DeadlineQueue(loop, TIMEOUT_S)


def test_each_deadline_fires_once_at_its_time_in_setting_order() -> None:
    clock = Clock()
    queue = queue_on(clock)
    fired: list[str] = []
    queue.add(lambda: fired.append("a"))
    clock.advance(1.0)
    queue.add(lambda: fired.append("b"))
    clock.advance(TIMEOUT_S - 1.0 - 0.01)
    assert fired == []  # never early
    clock.advance(0.01)
    assert fired == ["a"]
    clock.advance(0.99)
    assert fired == ["a"]
    clock.advance(0.01)
    assert fired == ["a", "b"]
    clock.advance(TIMEOUT_S * 2)
    assert fired == ["a", "b"]  # once each
    assert len(queue) == 0
    assert clock.armed == []


def test_one_timer_serves_every_deadline_in_the_queue() -> None:
    clock = Clock()
    queue = queue_on(clock)
    for _ in range(100):
        queue.add(lambda: None)
        clock.advance(0.001)
    assert len(clock.armed) == 1


def test_a_cancelled_deadline_never_fires_and_the_ones_behind_it_still_do() -> None:
    clock = Clock()
    queue = queue_on(clock)
    fired: list[int] = []
    entries = [queue.add(lambda i=i: fired.append(i)) for i in range(5)]
    entries[0].cancel()
    entries[2].cancel()
    entries[2].cancel()  # idempotent
    clock.advance(TIMEOUT_S)
    assert fired == [1, 3, 4]


def test_a_cancelled_deadline_lets_go_of_its_request() -> None:
    class Request:
        def on_deadline(self) -> None:
            raise AssertionError("a cancelled deadline fired")

    clock = Clock()
    queue = queue_on(clock)
    queue.add(lambda: None)  # an older request still running: the entry stays queued
    request = Request()
    gone = weakref.ref(request)
    queue.add(request.on_deadline).cancel()
    del request
    gc.collect()
    assert gone() is None
    assert len(queue) == 2
    clock.advance(TIMEOUT_S)


def test_answered_requests_leave_the_queue_as_new_ones_arrive() -> None:
    clock = Clock()
    queue = queue_on(clock)
    in_flight = [queue.add(lambda: None) for _ in range(64)]
    for i in range(10_000):  # answered in arrival order, 64 in flight at any time
        in_flight[i % 64].cancel()
        in_flight[i % 64] = queue.add(lambda: None)
    assert len(queue) <= 65


def test_a_failing_callback_does_not_stop_the_deadlines_behind_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    queue = queue_on(clock)
    fired: list[str] = []

    def broken() -> None:
        raise RuntimeError("broken")

    queue.add(broken)
    queue.add(lambda: fired.append("after"))
    clock.advance(TIMEOUT_S)
    assert fired == ["after"]
    assert "deadline callback failed" in caplog.text


async def test_on_a_real_loop_a_deadline_fires_no_earlier_than_its_timeout() -> None:
    loop = asyncio.get_running_loop()
    queue = DeadlineQueue(loop, 0.05)
    fired = asyncio.Event()
    started = loop.time()
    fired_at: list[float] = []

    def expire() -> None:
        fired_at.append(loop.time())
        fired.set()

    queue.add(lambda: None).cancel()
    queue.add(expire)
    await fired.wait()
    assert fired_at[0] - started >= 0.05 - 0.001  # the loop's clock is in milliseconds
