"""The engine's central promise: every accepted item's future settles exactly once, on every
path (success, model error, deadline, cancellation, pause, stop, a hostile metrics collector,
an internal error), and a success always carries the caller's own row."""

from __future__ import annotations

import threading
from collections import Counter
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from batchserve.batching import BatchPriority, BatchProcessor, BatchProcessorConfig
from batchserve.errors import (
    BatchServeError,
    DeadlineExceeded,
    ModelError,
    QueueFull,
    ShuttingDown,
)
from tests.batching.support import ProcessorFactory, RecordingModel, row


def count_settlements(futures: list[Future[Any]]) -> Counter[int]:
    """Counts, per future index, how often it completed (done callbacks fire once per
    completion; one registered after completion fires at once)."""
    settled: Counter[int] = Counter()
    lock = threading.Lock()
    for index, future in enumerate(futures):

        def done(_: Future[Any], index: int = index) -> None:
            with lock:
                settled[index] += 1

        future.add_done_callback(done)
    return settled


def test_concurrent_callers_each_get_exactly_their_own_result(
    make_processor: ProcessorFactory,
) -> None:
    processor = make_processor(lambda batch: batch * 2, max_batch_size=64)
    threads, per_thread = 8, 500
    failures: list[str] = []
    start = threading.Barrier(threads)

    def caller(index: int) -> None:
        start.wait()
        idents = [index * per_thread + i for i in range(per_thread)]
        priorities = list(BatchPriority)
        futures = [
            processor.enqueue_predict(row(ident), priority=priorities[ident % 3])
            for ident in idents
        ]
        settled = count_settlements(futures)
        for ident, future in zip(idents, futures, strict=True):
            if not np.array_equal(future.result(timeout=30), row(2 * ident)):
                failures.append(f"caller {ident} got {future.result()}")
        if sorted(settled.values()) != [1] * per_thread:
            failures.append(f"thread {index} settlements {settled}")

    workers = [threading.Thread(target=caller, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
    assert failures == []
    processor.stop(timeout=5)  # joins the worker: its bookkeeping is complete
    assert processor.get_stats()["total_processed"] == threads * per_thread
    assert max(processor.stats.batch_sizes) > 1  # type: ignore[union-attr]


@dataclass(frozen=True)
class Spec:
    """One submitted item of a generated scenario."""

    width: int  # 0 = a plain int, not an array
    priority: BatchPriority
    timeout: float | None
    poison: bool
    cancel: bool


specs = st.builds(
    Spec,
    width=st.sampled_from([0, 1, 2, 3]),
    priority=st.sampled_from(list(BatchPriority)),
    timeout=st.sampled_from([None, None, 0.001, 5.0]),
    poison=st.sampled_from([False, False, False, True]),
    cancel=st.sampled_from([False, False, False, True]),
)


def poison_aware(poisoned: set[int], seen: list[int], lock: threading.Lock) -> Any:
    def model(batch: Any) -> Any:
        idents = [batch] if isinstance(batch, int) else [int(r[0]) for r in batch]
        with lock:
            seen.extend(idents)
        if poisoned.intersection(idents):
            raise ValueError("poison")
        return batch * 2

    return model


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    items=st.lists(specs, min_size=1, max_size=40),
    strategy=st.sampled_from(["greedy", "adaptive", "fixed"]),
    target=st.integers(1, 16),
    isolate=st.booleans(),
    retries=st.integers(0, 1),
    paused=st.booleans(),
    instances=st.sampled_from([1, 3]),
)
def test_every_future_settles_exactly_once_with_its_own_outcome(
    items: list[Spec],
    strategy: str,
    target: int,
    isolate: bool,
    retries: int,
    paused: bool,
    instances: int,
) -> None:
    poisoned = {i for i, spec in enumerate(items) if spec.poison}
    seen: list[int] = []
    processor: BatchProcessor[Any, Any] = BatchProcessor(
        BatchProcessorConfig(
            processing_strategy=strategy,
            batch_timeout=0.005,
            initial_batch_size=target,
            max_batch_size=16,
            isolate_failures=isolate,
            max_retries=retries,
            enable_health_monitoring=False,
            instances=instances,
        )
    )
    processor.start(poison_aware(poisoned, seen, threading.Lock()))
    try:
        if paused:
            processor.pause()
        futures: list[Future[Any]] = []
        cancelled: set[int] = set()
        for i, spec in enumerate(items):
            item = i if spec.width == 0 else row(i, spec.width)
            futures.append(
                processor.enqueue_predict(item, priority=spec.priority, item_timeout=spec.timeout)
            )
            if spec.cancel and futures[-1].cancel():
                cancelled.add(i)
        settled = count_settlements(futures)
        processor.resume()
    finally:
        processor.stop(timeout=10)

    assert all(future.done() for future in futures)
    assert set(settled.values()) == {1}
    assert cancelled.isdisjoint(seen)
    for i, (spec, future) in enumerate(zip(items, futures, strict=True)):
        if i in cancelled:
            assert future.cancelled()
            continue
        error = future.exception()
        if error is None:
            expected = 2 * i if spec.width == 0 else row(2 * i, spec.width)
            np.testing.assert_array_equal(future.result(), expected)
            assert i not in poisoned
        elif isinstance(error, DeadlineExceeded):
            assert spec.timeout is not None
            assert i not in seen
        else:
            assert isinstance(error, ModelError)
            assert i in poisoned or not isolate


def test_every_accepted_item_settles_when_stop_races_with_producers(
    make_processor: ProcessorFactory,
) -> None:
    processor = make_processor(lambda batch: batch * 2, max_batch_size=32)
    accepted: list[tuple[int, Future[Any]]] = []
    lock = threading.Lock()
    flowing = threading.Event()

    def producer(base: int) -> None:
        for i in range(base, base + 5000):
            try:
                future = processor.enqueue_predict(row(i), timeout=0)
            except (ShuttingDown, QueueFull):
                return
            with lock:
                accepted.append((i, future))
                if len(accepted) == 2000:
                    flowing.set()

    producers = [threading.Thread(target=producer, args=(k * 10_000,)) for k in range(4)]
    for thread in producers:
        thread.start()
    assert flowing.wait(10)
    processor.stop(timeout=0.01)
    for thread in producers:
        thread.join(10)
    assert processor.worker_thread is not None
    processor.worker_thread.join(10)
    settled = count_settlements([future for _, future in accepted])
    assert set(settled.values()) <= {1}
    assert len(settled) == len(accepted)
    for ident, future in accepted:
        error = future.exception(timeout=0)
        if error is None:
            np.testing.assert_array_equal(future.result(), row(2 * ident))
        else:
            assert isinstance(error, ShuttingDown)


class Hostile:
    """A metrics collector whose every hook raises."""

    def __getattr__(self, name: str) -> Any:
        if name.startswith("on_"):

            def hook(*args: Any) -> None:
                raise RuntimeError(f"{name} is broken")

            return hook
        raise AttributeError(name)


class Unreadable:
    """A metrics collector whose attributes cannot even be looked up."""

    def __getattr__(self, name: str) -> Any:
        raise RuntimeError(f"no {name} for you")


@pytest.mark.parametrize("collector", [Hostile(), Unreadable()], ids=["raising", "unreadable"])
def test_a_broken_metrics_collector_hurts_nothing(
    make_processor: ProcessorFactory, collector: Any, caplog: pytest.LogCaptureFixture
) -> None:
    def refuse_13(batch: np.ndarray) -> np.ndarray:
        if (batch[:, 0] == 13).any():
            raise ValueError("13 is refused")
        return batch * 2

    processor = make_processor(refuse_13, metrics_collector=collector, max_queue_size=8)
    processor.pause()
    ok = processor.enqueue_predict(row(1))
    bad = processor.enqueue_predict(row(13))
    gone = processor.enqueue_predict(row(2))
    gone.cancel()
    late = processor.enqueue_predict(row(3), item_timeout=0.01)
    processor.enqueue_many([row(i) for i in range(4)])
    with pytest.raises(QueueFull):
        processor.enqueue_many([row(i) for i in range(5)], timeout=0)
    with pytest.raises(DeadlineExceeded):
        late.result(timeout=5)
    processor.resume()
    np.testing.assert_array_equal(ok.result(timeout=5), row(2))
    with pytest.raises(ModelError):
        bad.result(timeout=5)
    processor.update_batch_size(4)
    processor.stop(timeout=5)
    with pytest.raises(ShuttingDown):
        processor.enqueue_predict(row(5))
    assert "metrics hook" in caplog.text


class Unstackable(np.ndarray):
    """An array type whose batches cannot be assembled (every numpy function refuses it)."""

    def __array_function__(self, func: Any, types: Any, args: Any, kwargs: Any) -> Any:
        raise RuntimeError("cannot stack this")


def test_an_internal_error_answers_its_batch_and_the_engine_keeps_serving(
    make_processor: ProcessorFactory, model: RecordingModel
) -> None:
    processor = make_processor(model)
    processor.pause()
    broken = [processor.enqueue_predict(row(i).view(Unstackable)) for i in range(3)]
    processor.resume()
    for future in broken:
        error = future.exception(timeout=5)
        assert isinstance(error, BatchServeError)
        assert "internal error" in str(error)
    np.testing.assert_array_equal(processor.enqueue_predict(row(4)).result(timeout=5), row(8))
    assert model.seen == [4]
