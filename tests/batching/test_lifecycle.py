"""Pause, resume and stop: nothing dispatched while paused, a drain bounded by the stop
timeout, every pending caller answered, and no engine thread left behind."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from batchserve.errors import DeadlineExceeded, ShuttingDown
from tests.batching.support import GatedModel, ProcessorFactory, RecordingModel, row


def engine_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name.startswith("batchserve-")}


def test_paused_processor_dispatches_nothing_and_keeps_items_queued(
    make_processor: ProcessorFactory, model: RecordingModel
) -> None:
    processor = make_processor(model)
    processor.pause()
    futures = [processor.enqueue_predict(row(i)) for i in range(5)]
    # Let time pass on the engine's own clock: a short deadline expires meanwhile.
    with pytest.raises(DeadlineExceeded):
        processor.enqueue_predict(row(99), item_timeout=0.1).result(timeout=5)
    assert model.calls == []
    assert len(processor) == 5
    assert not any(future.done() for future in futures)
    assert processor.is_paused
    assert processor.get_stats()["is_paused"] is True
    processor.resume()
    for i, future in enumerate(futures):
        np.testing.assert_array_equal(future.result(timeout=5), row(2 * i))
    assert not processor.is_paused


def test_pause_lets_the_running_batch_finish(
    make_processor: ProcessorFactory, gated: GatedModel
) -> None:
    processor = make_processor(gated)
    running = processor.enqueue_predict(row(1))
    gated.wait_calls(1)
    processor.pause()
    queued = processor.enqueue_predict(row(2))
    gated.open()
    np.testing.assert_array_equal(running.result(timeout=5), row(2))
    assert not queued.done()
    processor.resume()
    queued.result(timeout=5)


def test_stop_refuses_new_items_with_shutting_down(
    make_processor: ProcessorFactory, model: RecordingModel
) -> None:
    processor = make_processor(model)
    processor.stop()
    for submit in (processor.enqueue_predict, processor.enqueue):
        with pytest.raises(ShuttingDown) as refused:
            submit(row(1))
        assert isinstance(refused.value, RuntimeError)
    with pytest.raises(ShuttingDown):
        processor.enqueue_many([row(1), row(2)])
    assert not processor.is_running
    assert model.calls == []


def test_stop_answers_every_pending_request_by_draining_the_queue(
    make_processor: ProcessorFactory, model: RecordingModel
) -> None:
    processor = make_processor(model, initial_batch_size=4, processing_strategy="greedy")
    processor.pause()
    futures = [processor.enqueue_predict(row(i)) for i in range(10)]
    processor.stop(timeout=5)  # stopping lifts the pause to drain
    assert all(future.done() for future in futures)
    for i, future in enumerate(futures):
        np.testing.assert_array_equal(future.result(), row(2 * i))
    assert model.batch_sizes == [4, 4, 2]


def test_stop_fails_what_the_drain_deadline_leaves_with_shutting_down(
    make_processor: ProcessorFactory, gated: GatedModel
) -> None:
    processor = make_processor(gated)
    running = processor.enqueue_predict(row(0))
    gated.wait_calls(1)
    queued = [processor.enqueue_predict(row(i)) for i in (1, 2, 3)]
    began = time.monotonic()
    processor.stop(timeout=0.2)
    assert time.monotonic() - began >= 0.2
    for future in [running, *queued]:
        assert future.done()
        with pytest.raises(ShuttingDown):
            future.result()
    assert processor.get_stats()["rejected"] == {"shutting_down": 3}
    gated.open()
    assert processor.worker_thread is not None
    processor.worker_thread.join(5)
    assert not processor.worker_thread.is_alive()
    assert gated.seen == [0]  # the queued items never reached the model


def test_stop_without_timeout_waits_for_the_whole_drain(
    make_processor: ProcessorFactory, gated: GatedModel
) -> None:
    processor = make_processor(gated)
    futures = [processor.enqueue_predict(row(0))]
    gated.wait_calls(1)
    futures += [processor.enqueue_predict(row(i)) for i in (1, 2)]
    stopper = threading.Thread(target=processor.stop, kwargs={"timeout": None})
    stopper.start()
    stopper.join(0.1)
    assert stopper.is_alive()  # the model still holds the first batch
    gated.open()
    stopper.join(5)
    assert not stopper.is_alive()
    for i, future in enumerate(futures):
        np.testing.assert_array_equal(future.result(), row(2 * i))


def test_stop_is_idempotent(make_processor: ProcessorFactory, model: RecordingModel) -> None:
    processor = make_processor(model)
    processor.enqueue_predict(row(1)).result(timeout=5)
    processor.stop(timeout=1)
    processor.stop(timeout=1)
    processor.pause()  # ignored once stopped
    assert not processor.is_paused


def test_stopping_a_processor_that_never_started_fails_its_queue(
    make_processor: ProcessorFactory,
) -> None:
    processor = make_processor()
    futures = [processor.enqueue_predict(row(i)) for i in range(3)]
    processor.stop(timeout=1)
    for future in futures:
        with pytest.raises(ShuttingDown):
            future.result(timeout=0)


def test_a_processor_starts_once(make_processor: ProcessorFactory) -> None:
    processor = make_processor(RecordingModel())
    with pytest.raises(RuntimeError, match="once"):
        processor.start(RecordingModel())
    processor.stop()
    with pytest.raises(RuntimeError, match="once"):
        processor.start(RecordingModel())


def test_no_engine_thread_outlives_stop(make_processor: ProcessorFactory) -> None:
    before = engine_threads()
    processor = make_processor(
        lambda item: item, enable_health_monitoring=True, health_check_interval=0.01, max_workers=3
    )
    started = engine_threads() - before
    assert {t.name for t in started} == {
        "batchserve-worker",
        "batchserve-followup",
        "batchserve-deadlines",
        "batchserve-health",
    }
    futures = processor.enqueue_many(["a", "b", "c", "d"])  # not stackable: uses the pool
    assert [f.result(timeout=5) for f in futures] == ["a", "b", "c", "d"]
    assert any(t.name.startswith("batchserve-item") for t in engine_threads() - before)
    processor.stop(timeout=5)
    assert engine_threads() - before == set()


def test_a_worker_stuck_in_a_hung_model_is_the_only_thread_left_after_stop(
    make_processor: ProcessorFactory, gated: GatedModel
) -> None:
    """Documented limit: Python cannot interrupt a model call, so a worker stuck in one stays
    until the model returns; its callers are answered at the stop deadline all the same."""
    before = engine_threads()
    processor = make_processor(gated, enable_health_monitoring=True)
    future = processor.enqueue_predict(row(1))
    gated.wait_calls(1)
    processor.stop(timeout=0.05)
    with pytest.raises(ShuttingDown):
        future.result(timeout=0)
    assert {t.name for t in engine_threads() - before} == {"batchserve-worker"}
    gated.open()
    assert processor.worker_thread is not None
    processor.worker_thread.join(5)
    assert engine_threads() - before == set()


def test_swap_model_applies_from_the_next_batch_and_never_mixes_a_batch(
    make_processor: ProcessorFactory,
) -> None:
    old = GatedModel()
    new = RecordingModel(lambda batch: batch * 10)
    processor = make_processor(old, initial_batch_size=2, max_batch_size=2)
    running = [processor.enqueue_predict(row(i)) for i in (1, 2)]
    old.wait_calls(1)  # the old model holds a batch of two
    queued = [processor.enqueue_predict(row(i)) for i in (3, 4)]
    processor.swap_model(new)
    old.open()
    assert [f.result(timeout=5)[0] for f in running] == [2.0, 4.0]  # all old
    assert [f.result(timeout=5)[0] for f in queued] == [30.0, 40.0]  # all new
    assert old.seen == [1, 2]
    assert new.seen == [3, 4]
