"""Deadlines fail items that waited too long before the model; the queue is bounded and
pushes back; cancelled items and oversized batches never reach the model."""

from __future__ import annotations

import math
import threading
import time
from concurrent.futures import Future

import numpy as np
import pytest

from batchserve.errors import DeadlineExceeded, ItemTooLarge, QueueFull, TooManyItems
from tests.batching.support import GatedModel, ProcessorFactory, Recorder, RecordingModel, row

KIB_ROW = 128  # float64 values in one KiB


def test_item_timeout_fails_an_item_that_waited_too_long_before_the_model(
    make_processor: ProcessorFactory, gated: GatedModel
) -> None:
    recorder = Recorder()
    processor = make_processor(gated, item_timeout=0.05, metrics_collector=recorder)
    busy = processor.enqueue_predict(row(0), item_timeout=30)
    gated.wait_calls(1)
    late = processor.enqueue_predict(row(1))
    with pytest.raises(DeadlineExceeded, match="before the model ran"):
        late.result(timeout=5)  # failed while the model was still busy
    gated.open()
    busy.result(timeout=5)
    processor.enqueue_predict(row(2), item_timeout=30).result(timeout=5)
    assert gated.seen == [0, 2]
    assert recorder.rejected == {"deadline": 1}


def test_per_call_item_timeout_overrides_the_default(
    make_processor: ProcessorFactory, gated: GatedModel
) -> None:
    processor = make_processor(gated, item_timeout=None)
    busy = processor.enqueue_predict(row(0))
    gated.wait_calls(1)
    patient = processor.enqueue_predict(row(1))
    hurried = processor.enqueue_predict(row(2), item_timeout=0.05)
    with pytest.raises(DeadlineExceeded):
        hurried.result(timeout=5)
    gated.open()
    busy.result(timeout=5)
    np.testing.assert_array_equal(patient.result(timeout=5), row(2))
    assert gated.seen == [0, 1]


def test_deadline_is_checked_again_when_the_batch_starts(
    make_processor: ProcessorFactory, model: RecordingModel
) -> None:
    # FIXED holds a taken item through its window; its deadline passes before the model runs.
    processor = make_processor(
        model, processing_strategy="fixed", batch_timeout=0.3, initial_batch_size=4
    )
    doomed = processor.enqueue_predict(row(1), item_timeout=0.05)
    with pytest.raises(DeadlineExceeded):
        doomed.result(timeout=5)
    processor.enqueue_predict(row(2)).result(timeout=5)
    assert model.seen == [2]


def test_deadlines_still_apply_while_paused(
    make_processor: ProcessorFactory, model: RecordingModel
) -> None:
    processor = make_processor(model)
    processor.pause()
    doomed = processor.enqueue_predict(row(1), item_timeout=0.05)
    kept = processor.enqueue_predict(row(2))
    with pytest.raises(DeadlineExceeded):
        doomed.result(timeout=5)
    assert processor.is_paused
    assert len(processor) == 1
    processor.resume()
    kept.result(timeout=5)
    assert model.seen == [2]


def test_an_infinite_deadline_never_expires_and_does_not_stop_expiry(
    make_processor: ProcessorFactory, model: RecordingModel
) -> None:
    processor = make_processor(model)
    processor.pause()
    forever = processor.enqueue_predict(row(1), item_timeout=math.inf)
    doomed = processor.enqueue_predict(row(2), item_timeout=0.05)
    with pytest.raises(DeadlineExceeded):
        doomed.result(timeout=5)
    later = processor.enqueue_predict(row(3), item_timeout=0.05)
    with pytest.raises(DeadlineExceeded):
        later.result(timeout=5)
    processor.resume()
    np.testing.assert_array_equal(forever.result(timeout=5), row(2))


@pytest.mark.parametrize("bad", [0, -1.0])
def test_item_timeout_must_be_positive(make_processor: ProcessorFactory, bad: float) -> None:
    processor = make_processor(RecordingModel())
    with pytest.raises(ValueError, match="item_timeout"):
        processor.enqueue_predict(row(1), item_timeout=bad)
    assert len(processor) == 0


def test_full_queue_refuses_at_once_with_timeout_zero(
    make_processor: ProcessorFactory, model: RecordingModel
) -> None:
    recorder = Recorder()
    processor = make_processor(model, max_queue_size=2, metrics_collector=recorder)
    processor.pause()
    queued = [processor.enqueue_predict(row(i)) for i in range(2)]
    with pytest.raises(QueueFull, match="queue full") as refused:
        processor.enqueue_predict(row(9), timeout=0)
    assert isinstance(refused.value, RuntimeError)
    assert refused.value.retry_after_s > 0
    assert len(processor) == 2
    assert recorder.rejected == {"queue_full": 1}
    processor.resume()
    for future in queued:
        future.result(timeout=5)
    assert 9 not in model.seen


def test_enqueue_blocks_up_to_its_timeout_then_raises_queue_full(
    make_processor: ProcessorFactory,
) -> None:
    processor = make_processor(RecordingModel(), max_queue_size=1)
    processor.pause()
    processor.enqueue_predict(row(0))
    began = time.monotonic()
    with pytest.raises(QueueFull):
        processor.enqueue(row(1), timeout=0.1)
    assert time.monotonic() - began >= 0.1


def test_enqueue_waits_for_room_and_then_succeeds(
    make_processor: ProcessorFactory, model: RecordingModel
) -> None:
    processor = make_processor(model, max_queue_size=1)
    processor.pause()
    first = processor.enqueue_predict(row(0))
    outcome: list[Future[np.ndarray] | BaseException] = []

    def producer() -> None:
        try:
            outcome.append(processor.enqueue_predict(row(1), timeout=10))
        except BaseException as exc:  # reported below
            outcome.append(exc)

    thread = threading.Thread(target=producer)
    thread.start()
    thread.join(0.1)
    assert thread.is_alive()  # full and paused: it cannot have been admitted
    processor.resume()
    thread.join(5)
    first.result(timeout=5)
    [second] = outcome
    assert isinstance(second, Future)
    np.testing.assert_array_equal(second.result(timeout=5), row(2))


def test_more_items_than_the_queue_can_ever_hold_are_refused_at_once(
    make_processor: ProcessorFactory,
) -> None:
    processor = make_processor(RecordingModel(), max_queue_size=3)
    with pytest.raises(TooManyItems, match="max_queue_size=3"):
        processor.enqueue_many([row(i) for i in range(4)], timeout=None)
    assert len(processor) == 0


def test_cancelled_future_is_dropped_before_the_model(
    make_processor: ProcessorFactory, model: RecordingModel
) -> None:
    recorder = Recorder()
    processor = make_processor(model, metrics_collector=recorder)
    processor.pause()
    first, dropped, last = (processor.enqueue_predict(row(i)) for i in (1, 2, 3))
    assert dropped.cancel()
    processor.resume()
    first.result(timeout=5)
    last.result(timeout=5)
    assert dropped.cancelled()
    assert model.seen == [1, 3]
    recorder.wait_finished(1)
    assert recorder.rejected == {"cancelled": 1}


def test_a_running_item_can_no_longer_be_cancelled(
    make_processor: ProcessorFactory, gated: GatedModel
) -> None:
    processor = make_processor(gated)
    future = processor.enqueue_predict(row(1))
    gated.wait_calls(1)
    assert not future.cancel()
    gated.open()
    np.testing.assert_array_equal(future.result(timeout=5), row(2))


@pytest.mark.parametrize("strategy", ["greedy", "adaptive", "fixed"])
def test_batch_bytes_stay_within_max_batch_memory_mb(
    make_processor: ProcessorFactory, model: RecordingModel, strategy: str
) -> None:
    cap_bytes = 3 * 1024
    processor = make_processor(
        model,
        processing_strategy=strategy,
        batch_timeout=30,  # FIXED: a batch full by bytes is full, it does not wait this out
        initial_batch_size=8,
        max_batch_memory_mb=cap_bytes / 2**20,
    )
    processor.pause()
    futures = [processor.enqueue_predict(row(i, width=KIB_ROW)) for i in range(9)]
    processor.resume()
    for i, future in enumerate(futures):
        np.testing.assert_array_equal(future.result(timeout=5), row(2 * i, width=KIB_ROW))
    assert model.batch_sizes == [3, 3, 3]
    assert max(call.nbytes for call in model.calls) <= cap_bytes


def test_item_larger_than_max_batch_memory_mb_is_refused_with_item_too_large(
    make_processor: ProcessorFactory, model: RecordingModel
) -> None:
    recorder = Recorder()
    processor = make_processor(model, max_batch_memory_mb=1 / 1024, metrics_collector=recorder)
    with pytest.raises(ItemTooLarge, match="max_batch_memory_mb") as refused:
        processor.enqueue_predict(row(1, width=2 * KIB_ROW))
    assert isinstance(refused.value, ValueError)
    with pytest.raises(ItemTooLarge):
        processor.enqueue_predict({"a": row(1, width=KIB_ROW), "b": row(1, width=KIB_ROW)})
    assert len(processor) == 0
    assert recorder.rejected == {"too_large": 2}
    np.testing.assert_array_equal(
        processor.enqueue_predict(row(1, width=KIB_ROW)).result(timeout=5), row(2, width=KIB_ROW)
    )
