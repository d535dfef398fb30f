"""How batches form: take what is queued when the model is free, never wait for company
(except under FIXED), and let work that arrives while the model is busy ride together."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pytest

from tests.batching.support import GatedModel, ProcessorFactory, RecordingModel, row


@pytest.mark.parametrize("strategy", ["adaptive", "greedy"])
def test_lone_request_does_not_wait_out_batch_timeout(
    make_processor: ProcessorFactory, model: RecordingModel, strategy: str
) -> None:
    processor = make_processor(model, processing_strategy=strategy, batch_timeout=30)
    result = processor.enqueue_predict(row(5)).result(timeout=5)
    np.testing.assert_array_equal(result, row(10))
    assert model.batch_sizes == [1]


def test_items_queued_while_model_is_busy_form_the_next_batch_together(
    make_processor: ProcessorFactory, gated: GatedModel
) -> None:
    processor = make_processor(gated, processing_strategy="greedy")
    first = processor.enqueue_predict(row(0))
    gated.wait_calls(1)
    rest = [processor.enqueue_predict(row(i)) for i in (1, 2, 3)]
    gated.open()
    for i, future in enumerate([first, *rest]):
        np.testing.assert_array_equal(future.result(timeout=5), row(2 * i))
    assert gated.batch_sizes == [1, 3]
    assert gated.seen == [0, 1, 2, 3]


def test_a_batch_takes_at_most_the_target_size(
    make_processor: ProcessorFactory, model: RecordingModel
) -> None:
    processor = make_processor(model, processing_strategy="greedy", initial_batch_size=4)
    processor.pause()
    futures = [processor.enqueue_predict(row(i)) for i in range(10)]
    processor.resume()
    for future in futures:
        future.result(timeout=5)
    assert model.batch_sizes == [4, 4, 2]
    assert model.seen == list(range(10))


def test_fixed_batch_fills_from_items_arriving_during_the_window(
    make_processor: ProcessorFactory, model: RecordingModel
) -> None:
    processor = make_processor(
        model, processing_strategy="fixed", batch_timeout=30, initial_batch_size=4
    )
    futures = [processor.enqueue_predict(row(i)) for i in range(4)]
    # A full batch ends the window at once: far sooner than the 30 s timeout.
    for i, future in enumerate(futures):
        np.testing.assert_array_equal(future.result(timeout=5), row(2 * i))
    assert model.batch_sizes == [4]


def test_fixed_lone_item_waits_out_the_batch_timeout(
    make_processor: ProcessorFactory, model: RecordingModel
) -> None:
    processor = make_processor(
        model, processing_strategy="fixed", batch_timeout=0.2, initial_batch_size=4
    )
    began = time.monotonic()
    processor.enqueue_predict(row(1)).result(timeout=5)
    assert time.monotonic() - began >= 0.2
    assert model.batch_sizes == [1]


def test_min_batch_interval_lets_batches_accumulate(make_processor: ProcessorFactory) -> None:
    starts: list[float] = []

    def timed(batch: Any) -> Any:
        starts.append(time.monotonic())
        return batch

    model = RecordingModel(timed)
    processor = make_processor(model, processing_strategy="greedy", min_batch_interval=1.0)
    processor.enqueue_predict(row(0)).result(timeout=5)
    # The model is free, yet the next batch may not start before the interval has passed:
    # items arriving one by one meanwhile accumulate into one batch.
    later = [processor.enqueue_predict(row(i)) for i in range(1, 6)]
    for future in later:
        future.result(timeout=5)
    assert model.batch_sizes == [1, 5]
    assert starts[1] - starts[0] >= 1.0
