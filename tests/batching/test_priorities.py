"""HIGH before NORMAL before LOW, first come first served within a level, and no starvation."""

from __future__ import annotations

import threading
from concurrent.futures import Future

import numpy as np

from batchserve.batching import BatchPriority
from tests.batching.support import ProcessorFactory, RecordingModel, row

HIGH, NORMAL, LOW = BatchPriority.HIGH, BatchPriority.NORMAL, BatchPriority.LOW


def run_paused_mix(
    make_processor: ProcessorFactory, mix: list[tuple[int, BatchPriority]], **config: object
) -> list[int]:
    """Queue `mix` while paused, resume, and return the order the model saw the idents in."""
    model = RecordingModel()
    processor = make_processor(model, initial_batch_size=1, processing_strategy="greedy", **config)
    processor.pause()
    futures = [processor.enqueue_predict(row(i), priority=p) for i, p in mix]
    processor.resume()
    for future in futures:
        future.result(timeout=5)
    return model.seen


def test_high_priority_overtakes_queued_normal_and_low(make_processor: ProcessorFactory) -> None:
    mix = [(1, LOW), (2, NORMAL), (3, HIGH), (4, LOW), (5, NORMAL), (6, HIGH)]
    order = run_paused_mix(make_processor, mix, priority_aging=None)
    assert order == [3, 6, 2, 5, 1, 4]


def test_items_of_one_level_are_served_first_come_first_served(
    make_processor: ProcessorFactory,
) -> None:
    mix = [(i, NORMAL) for i in range(20)]
    assert run_paused_mix(make_processor, mix, priority_aging=None) == list(range(20))


def test_priority_queue_disabled_serves_fifo_regardless_of_priority(
    make_processor: ProcessorFactory,
) -> None:
    mix = [(1, LOW), (2, NORMAL), (3, HIGH), (4, LOW), (5, HIGH)]
    order = run_paused_mix(make_processor, mix, enable_priority_queue=False)
    assert order == [1, 2, 3, 4, 5]


def test_priority_order_holds_within_one_stacked_batch(
    make_processor: ProcessorFactory, model: RecordingModel
) -> None:
    processor = make_processor(model, priority_aging=None)
    processor.pause()
    futures = [
        processor.enqueue_predict(row(i), priority=p) for i, p in [(1, LOW), (2, HIGH), (3, NORMAL)]
    ]
    processor.resume()
    for i, future in zip((1, 2, 3), futures, strict=True):
        np.testing.assert_array_equal(future.result(timeout=5), row(2 * i))
    assert model.seen == [2, 3, 1]


def sustained_high_load(
    make_processor: ProcessorFactory, chain: int | None, **config: object
) -> list[int]:
    """Start a chain of HIGH items (idents 1000, 1001, ...) in which the model queues the next
    HIGH item whenever it runs one, so HIGH is never absent from the queue; while running the
    first, it also queues one LOW item (ident 1). The chain ends after `chain` items (None:
    once LOW has been served). Returns the order the model saw the idents in."""
    low_served = threading.Event()
    low: list[Future[np.ndarray]] = []
    seen: list[int] = []
    processor = make_processor(initial_batch_size=1, processing_strategy="greedy", **config)

    def model(batch: np.ndarray) -> np.ndarray:
        for ident in (int(r[0]) for r in batch):
            seen.append(ident)
            if ident == 1000:
                low.append(processor.enqueue_predict(row(1), priority=LOW))
            if ident == 1:
                low_served.set()
            elif not low_served.is_set() and (chain is None or ident < 1000 + chain - 1):
                processor.enqueue(row(ident + 1), priority=HIGH)
        return batch

    processor.start(model)
    processor.enqueue(row(1000), priority=HIGH)
    assert low_served.wait(10)
    processor.stop(timeout=5)
    np.testing.assert_array_equal(low[0].result(timeout=0), row(1))
    return seen


def test_low_priority_is_not_starved_under_sustained_high_load(
    make_processor: ProcessorFactory,
) -> None:
    seen = sustained_high_load(make_processor, chain=None, priority_aging=0.05)
    served_at = seen.index(1)
    assert seen[:2] == [1000, 1001]  # HIGH went first while LOW was young
    assert seen[served_at + 1 :] != []  # and HIGH was still queued when LOW overtook it


def test_without_aging_low_waits_for_every_high_item(make_processor: ProcessorFactory) -> None:
    seen = sustained_high_load(make_processor, chain=50, priority_aging=None)
    assert seen == [*range(1000, 1050), 1]
