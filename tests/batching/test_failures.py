"""Model failures: whole-batch retries, a smaller target after a failure, and bisection that
fails only the poison items' callers."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pytest

from batchserve.errors import ModelError, ShuttingDown
from tests.batching.support import ProcessorFactory, Recorder, RecordingModel, row

POISON = 13


def refusing(*poisons: int) -> Any:
    """A doubling model that raises for any batch holding one of the `poisons` idents."""

    def model(batch: np.ndarray) -> np.ndarray:
        if np.isin(batch[:, 0], poisons).any():
            raise ValueError("poison row")
        return batch * 2

    return model


refuse_poison = refusing(POISON)


class Flaky:
    """Fails its first `failures` calls, then doubles."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls: list[float] = []

    def __call__(self, batch: Any) -> Any:
        self.calls.append(time.monotonic())
        if len(self.calls) <= self.failures:
            raise ConnectionError(f"transient failure {len(self.calls)}")
        return batch * 2


@pytest.mark.parametrize("retries", [0, 1, 3])
def test_max_retries_calls_the_model_retries_plus_one_times(
    make_processor: ProcessorFactory, retries: int
) -> None:
    model = Flaky(failures=100)
    recorder = Recorder()
    processor = make_processor(model, max_retries=retries, metrics_collector=recorder)
    with pytest.raises(ModelError, match="transient failure"):
        processor.enqueue_predict(row(1)).result(timeout=5)
    assert len(model.calls) == retries + 1
    assert recorder.retries == retries


def test_a_transient_failure_is_retried_until_it_succeeds(
    make_processor: ProcessorFactory,
) -> None:
    model = Flaky(failures=2)
    processor = make_processor(model, max_retries=2)
    processor.pause()
    futures = [processor.enqueue_predict(row(i)) for i in range(4)]
    processor.resume()
    for i, future in enumerate(futures):
        np.testing.assert_array_equal(future.result(timeout=5), row(2 * i))
    assert len(model.calls) == 3


def test_non_numpy_items_are_retried_one_by_one(make_processor: ProcessorFactory) -> None:
    model = Flaky(failures=1)
    processor = make_processor(model, max_retries=1, max_workers=1)
    assert processor.enqueue_predict(21).result(timeout=5) == 42
    assert len(model.calls) == 2


def test_retry_delay_pauses_before_each_retry(make_processor: ProcessorFactory) -> None:
    model = Flaky(failures=2)
    processor = make_processor(model, max_retries=2, retry_delay=0.05)
    processor.enqueue_predict(row(1)).result(timeout=5)
    gaps = np.diff(model.calls)
    assert len(gaps) == 2
    assert (gaps >= 0.05).all()


def test_stop_interrupts_a_retry_delay(make_processor: ProcessorFactory) -> None:
    model = Flaky(failures=100)
    processor = make_processor(model, max_retries=1, retry_delay=30)
    future = processor.enqueue_predict(row(1))
    began = time.monotonic()
    processor.stop(timeout=0.1)
    with pytest.raises(ShuttingDown):
        future.result(timeout=5)
    assert processor.worker_thread is not None
    processor.worker_thread.join(5)
    assert not processor.worker_thread.is_alive()
    assert time.monotonic() - began < 10


def test_model_error_names_and_chains_the_original_exception(
    make_processor: ProcessorFactory,
) -> None:
    def broken(batch: Any) -> Any:
        raise KeyError("weights")

    processor = make_processor(broken)
    processor.pause()
    futures = [processor.enqueue_predict(row(i)) for i in range(2)]
    processor.resume()
    errors = [future.exception(timeout=5) for future in futures]
    for error in errors:
        assert isinstance(error, ModelError)
        assert "weights" in str(error)
        assert isinstance(error.__cause__, KeyError)
    assert errors[0] is not errors[1]  # each caller gets its own exception object


@pytest.mark.parametrize("poisons", [{POISON}, {POISON, POISON + 1}])
def test_poison_items_fail_only_their_own_callers(
    make_processor: ProcessorFactory, poisons: set[int]
) -> None:
    recorder = Recorder()
    model = RecordingModel(refusing(*poisons))
    processor = make_processor(model, metrics_collector=recorder)
    idents = list(range(10, 18))
    processor.pause()
    futures = [processor.enqueue_predict(row(i)) for i in idents]
    processor.resume()
    for ident, future in zip(idents, futures, strict=True):
        if ident in poisons:
            with pytest.raises(ModelError, match="poison row"):
                future.result(timeout=5)
        else:
            np.testing.assert_array_equal(future.result(timeout=5), row(2 * ident))
    assert recorder.isolations > 0
    assert model.batch_sizes[0] == len(idents)


def test_with_isolate_failures_off_one_poison_item_fails_its_whole_batch(
    make_processor: ProcessorFactory,
) -> None:
    model = RecordingModel(refuse_poison)
    processor = make_processor(model, isolate_failures=False)
    processor.pause()
    futures = [processor.enqueue_predict(row(i)) for i in range(10, 18)]
    processor.resume()
    for future in futures:
        with pytest.raises(ModelError, match="poison row"):
            future.result(timeout=5)
    assert model.batch_sizes == [8]


def test_reduce_batch_on_failure_halves_the_target(make_processor: ProcessorFactory) -> None:
    recorder = Recorder()
    processor = make_processor(
        refuse_poison,
        processing_strategy="greedy",
        initial_batch_size=32,
        reduce_batch_on_failure=True,
        metrics_collector=recorder,
    )
    for failures in (1, 2):
        processor.enqueue_predict(row(POISON)).exception(timeout=5)
        recorder.wait_finished(failures)
    assert processor.current_batch_size == 8
    assert recorder.targets == [16, 8]


def test_backing_off_never_goes_below_min_batch_size(make_processor: ProcessorFactory) -> None:
    recorder = Recorder()
    processor = make_processor(
        refuse_poison,
        processing_strategy="greedy",
        min_batch_size=6,
        initial_batch_size=16,
        metrics_collector=recorder,
    )
    for failures in (1, 2, 3):
        processor.enqueue_predict(row(POISON)).exception(timeout=5)
        recorder.wait_finished(failures)
    assert recorder.targets == [8, 6, 6]


def test_without_reduce_batch_on_failure_the_target_stays(
    make_processor: ProcessorFactory,
) -> None:
    recorder = Recorder()
    processor = make_processor(
        refuse_poison,
        processing_strategy="greedy",
        initial_batch_size=32,
        reduce_batch_on_failure=False,
        metrics_collector=recorder,
    )
    processor.enqueue_predict(row(POISON)).exception(timeout=5)
    recorder.wait_finished(1)
    assert processor.current_batch_size == 32


def test_failures_count_in_the_error_rate(make_processor: ProcessorFactory) -> None:
    recorder = Recorder()
    processor = make_processor(refuse_poison, metrics_collector=recorder)
    processor.pause()
    futures = [processor.enqueue_predict(row(i)) for i in (1, 2, POISON, 4)]
    processor.resume()
    for future in futures:
        future.exception(timeout=5)
    recorder.wait_finished(1)
    stats = processor.get_stats()
    assert stats["error_count"] == 1
    assert stats["total_processed"] == 3
    assert stats["error_rate"] == pytest.approx(0.25)
