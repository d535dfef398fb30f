"""Results for an asyncio caller go to its event loop in one hand-off per batch, together with
the batch's books, and leave the worker right before its next model call or wait; a model
that waits off-core is not left idle while the loop queues a long burst."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import Future
from typing import Any

import numpy as np

from app.batching.futures import Gathering, LoopHandoff
from tests.batching.support import (
    WAIT_S,
    ProcessorFactory,
    Recorder,
    RecordingModel,
    row,
    wait_until,
)


async def test_a_batchs_results_reach_the_loop_before_the_next_model_call_returns(
    make_processor: ProcessorFactory,
) -> None:
    entered, first_queued, first_answered = (threading.Event() for _ in range(3))

    def model(batch: Any) -> Any:
        entered.set()
        if int(batch[0][0]) == 1:
            assert first_queued.wait(WAIT_S), "the second item was never queued"
        else:
            # Holding the worker here: the first result must be on its way already.
            assert first_answered.wait(WAIT_S), "the first result was held back"
        return batch * 2

    processor = make_processor(model)
    first = processor.enqueue_async([row(1)])
    assert await asyncio.to_thread(entered.wait, WAIT_S)  # the worker is in the first call
    second = processor.enqueue_async([row(2)])
    first_queued.set()
    [result] = await asyncio.wait_for(first.waiter, WAIT_S)  # type: ignore[arg-type]
    np.testing.assert_array_equal(result, row(2))
    first_answered.set()
    [result] = await asyncio.wait_for(second.waiter, WAIT_S)  # type: ignore[arg-type]
    np.testing.assert_array_equal(result, row(4))


async def test_the_books_are_kept_before_the_caller_resumes(
    make_processor: ProcessorFactory, model: RecordingModel
) -> None:
    recorder = Recorder()
    processor = make_processor(model, metrics_collector=recorder)
    for i in range(1, 4):
        await processor.submit_many([row(i), row(i)])
        assert processor.get_stats()["total_processed"] == 2 * i
        assert [size for size, _ in recorder.batches] == [2] * i


async def test_a_hand_off_takes_only_futures_of_one_loop() -> None:
    handoff = LoopHandoff()
    assert not handoff.then(lambda: None)  # nothing handed off yet: the caller runs it
    plain: Future[Any] = Future()
    assert not handoff.settle([plain], [1])
    gathering = Gathering(2)
    ran: list[str] = []
    assert handoff.settle(gathering.futures, ["a", "b"])
    assert handoff.then(lambda: ran.append("books"))
    assert not gathering.waiter.done()  # type: ignore[union-attr]
    assert ran == []
    for future in gathering.futures:
        future.set_running_or_notify_cancel()
    handoff.post()
    assert await asyncio.wait_for(gathering.waiter, WAIT_S) == ["a", "b"]  # type: ignore[arg-type]
    assert ran == ["books"]


def _spin(seconds: float) -> None:
    """Keep the event loop busy (as decoding a long burst of requests would)."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass


def _off_core_model(batch: Any) -> Any:
    threading.Event().wait(0.02)  # waits on "a device": the GIL is free meanwhile
    return batch * 2


def _on_core_model(batch: Any) -> Any:
    _spin(0.02)
    return batch * 2


async def _warm_up(processor: Any) -> None:
    """Ten model calls to learn how the model waits; then the worker idles, waiting for work."""
    for i in range(10):
        await processor.submit(row(i))
    wait_until(lambda: processor.queue.taker_waiting)


async def test_an_off_core_model_starts_on_part_of_a_long_burst(
    make_processor: ProcessorFactory,
) -> None:
    model = RecordingModel(_off_core_model)
    processor = make_processor(model)
    await _warm_up(processor)
    # One loop iteration queues a burst that takes longer than a quarter of a model call.
    early = [processor.enqueue_async([row(i)]) for i in (1, 2)]
    _spin(0.015)
    late = processor.enqueue_async([row(3)])
    model.wait_calls(11)  # the worker was woken mid-burst, not at its end
    rest = processor.enqueue_async([row(4)])
    results = [await g.waiter for g in (*early, late, rest)]  # type: ignore[misc]
    assert [int(r[0][0]) for r in results] == [2, 4, 6, 8]
    assert model.batch_sizes[10:] == [3, 1]


async def test_an_on_core_model_is_fed_the_whole_burst(make_processor: ProcessorFactory) -> None:
    model = RecordingModel(_on_core_model)
    processor = make_processor(model)
    await _warm_up(processor)
    early = [processor.enqueue_async([row(i)]) for i in (1, 2)]
    _spin(0.015)
    late = [processor.enqueue_async([row(i)]) for i in (3, 4)]
    results = [await g.waiter for g in (*early, *late)]  # type: ignore[misc]
    assert [int(r[0][0]) for r in results] == [2, 4, 6, 8]
    assert model.batch_sizes[10:] == [4]
