"""`await processor.submit(...)` from asyncio: results without blocking the event loop, and a
cancelled awaiting task takes its queued item with it."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from batchserve.errors import ModelError, QueueFull
from tests.batching.support import GatedModel, ProcessorFactory, RecordingModel, row


async def test_submit_returns_the_callers_row(
    make_processor: ProcessorFactory, model: RecordingModel
) -> None:
    processor = make_processor(model)
    results = await asyncio.gather(*(processor.submit(row(i)) for i in range(10)))
    for i, result in enumerate(results):
        np.testing.assert_array_equal(result, row(2 * i))


async def test_submit_many_returns_rows_in_order(
    make_processor: ProcessorFactory, model: RecordingModel
) -> None:
    processor = make_processor(model)
    results = await processor.submit_many([row(i) for i in range(5)])
    assert [int(r[0]) for r in results] == [0, 2, 4, 6, 8]
    assert model.batch_sizes == [5]
    assert await processor.submit_many([]) == []


async def test_submissions_of_one_loop_iteration_wake_the_worker_once(
    make_processor: ProcessorFactory, model: RecordingModel
) -> None:
    processor = make_processor(model, max_batch_size=64, initial_batch_size=64)
    wakes = 0
    notify = processor.queue._not_empty.notify

    def counting_notify(n: int = 1) -> None:
        nonlocal wakes
        wakes += 1
        notify(n)

    processor.queue._not_empty.notify = counting_notify  # type: ignore[method-assign]
    # No await between them: the worker is woken after all ten are queued, and takes them
    # together, instead of waking for the first one alone.
    gatherings = [processor.enqueue_async([row(i)]) for i in range(10)]
    assert wakes == 0
    results = [await g.waiter for g in gatherings]
    assert wakes == 1
    assert [int(r[0][0]) for r in results] == [2 * i for i in range(10)]
    assert model.batch_sizes == [10]
    # A lone submission is not left waiting for company.
    np.testing.assert_array_equal(await asyncio.wait_for(processor.submit(row(3)), 5), row(6))


async def test_a_submission_with_a_callback_is_answered_once_through_it(
    make_processor: ProcessorFactory, model: RecordingModel
) -> None:
    processor = make_processor(model)
    loop = asyncio.get_running_loop()
    settled: asyncio.Future[tuple[object, object]] = loop.create_future()
    calls = 0

    def on_settled(results: object, error: object) -> None:
        nonlocal calls
        calls += 1
        settled.set_result((results, error))

    gathering = processor.enqueue_async([row(1), row(2)], on_settled=on_settled)
    assert gathering.waiter is None
    results, error = await asyncio.wait_for(settled, 5)
    assert error is None
    assert [int(r[0]) for r in results] == [2, 4]  # type: ignore[attr-defined]
    await processor.submit(row(0))  # one more round trip through the loop's notifier
    assert calls == 1


async def test_a_cancelled_callback_submission_is_never_answered(
    make_processor: ProcessorFactory, gated: GatedModel
) -> None:
    processor = make_processor(gated)
    calls: list[object] = []
    first = processor.enqueue_async([row(1)])  # holds the model
    await asyncio.wait_for(asyncio.to_thread(gated.wait_calls, 1), timeout=5)
    gathering = processor.enqueue_async([row(2)], on_settled=lambda r, e: calls.append(r))
    gathering.cancel()
    gated.open()
    assert first.waiter is not None
    await asyncio.wait_for(first.waiter, 5)
    await processor.submit(row(3))
    assert calls == []


async def test_awaiting_a_busy_model_does_not_block_the_event_loop(
    make_processor: ProcessorFactory, gated: GatedModel
) -> None:
    processor = make_processor(gated)
    pending = asyncio.create_task(processor.submit(row(1)))
    # This await completes only if the loop keeps running while the model holds the item.
    await asyncio.wait_for(asyncio.to_thread(gated.wait_calls, 1), timeout=5)
    assert not pending.done()
    gated.open()
    np.testing.assert_array_equal(await asyncio.wait_for(pending, 5), row(2))


async def test_cancelling_the_awaiting_task_cancels_its_queued_item(
    make_processor: ProcessorFactory, gated: GatedModel
) -> None:
    processor = make_processor(gated)
    busy = asyncio.create_task(processor.submit(row(0)))
    await asyncio.wait_for(asyncio.to_thread(gated.wait_calls, 1), timeout=5)
    doomed = asyncio.create_task(processor.submit(row(1)))
    await asyncio.sleep(0)  # its first step queues the item
    assert len(processor) == 1
    doomed.cancel()
    with pytest.raises(asyncio.CancelledError):
        await doomed
    gated.open()
    await asyncio.wait_for(busy, 5)
    np.testing.assert_array_equal(await processor.submit(row(2)), row(4))
    assert gated.seen == [0, 2]


async def test_submit_never_waits_for_room_in_a_full_queue(
    make_processor: ProcessorFactory,
) -> None:
    processor = make_processor(RecordingModel(), max_queue_size=1)
    processor.pause()
    queued = asyncio.ensure_future(processor.submit(row(0)))
    await asyncio.sleep(0)
    with pytest.raises(QueueFull):
        await processor.submit(row(1))
    processor.resume()
    await asyncio.wait_for(queued, 5)


async def test_submit_many_cancels_its_queued_items_when_one_fails(
    make_processor: ProcessorFactory,
) -> None:
    seen: list[int] = []
    processor = make_processor(initial_batch_size=1, processing_strategy="greedy")

    def model(item: int) -> int:
        seen.append(item)
        if item == 1:
            processor.pause()  # items 2 and 3 stay queued while the failure is reported
            raise ValueError("one is refused")
        return item

    processor.start(model)
    with pytest.raises(ModelError, match="one is refused"):
        await processor.submit_many([1, 2, 3])
    processor.resume()
    assert await processor.submit(4) == 4
    assert seen == [1, 4]
    assert processor.get_stats()["rejected"] == {"cancelled": 2}
