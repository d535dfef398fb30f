"""NumPy items stack into one model call per shape and dtype; other items run one by one
through the worker pool; the model must return one row per input."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from batchserve.errors import ModelError, OutputMismatch
from tests.batching.support import ProcessorFactory, RecordingModel, row


def test_same_shape_arrays_stack_into_one_call_and_row_i_goes_to_caller_i(
    make_processor: ProcessorFactory, model: RecordingModel
) -> None:
    processor = make_processor(model)
    processor.pause()
    futures = [processor.enqueue_predict(row(i, width=3)) for i in range(5)]
    processor.resume()
    for i, future in enumerate(futures):
        np.testing.assert_array_equal(future.result(timeout=5), row(2 * i, width=3))
    assert len(model.calls) == 1
    assert model.calls[0].shape == (5, 3)


def test_different_shapes_and_dtypes_form_their_own_groups(
    make_processor: ProcessorFactory, model: RecordingModel
) -> None:
    processor = make_processor(model)
    items = [
        np.array([1.0, 1.0]),
        np.array([2.0, 2.0, 2.0]),
        np.array([3, 3], dtype=np.int32),
        np.array([4.0, 4.0]),
        np.array([5.0, 5.0, 5.0]),
        np.array([6, 6], dtype=np.int32),
    ]
    processor.pause()
    futures = [processor.enqueue_predict(item) for item in items]
    processor.resume()
    for item, future in zip(items, futures, strict=True):
        result = future.result(timeout=5)
        np.testing.assert_array_equal(result, item * 2)
        assert result.dtype == item.dtype
    shapes = sorted((call.shape, call.dtype.name) for call in model.calls)
    assert shapes == [((2, 2), "float64"), ((2, 2), "int32"), ((2, 3), "float64")]


def test_a_failing_group_does_not_break_the_other_groups(
    make_processor: ProcessorFactory,
) -> None:
    def picky(batch: np.ndarray) -> np.ndarray:
        if batch.shape[1] == 3:
            raise ValueError("no triples")
        return batch * 2

    processor = make_processor(picky)
    processor.pause()
    pairs = [processor.enqueue_predict(row(i, width=2)) for i in range(3)]
    triples = [processor.enqueue_predict(row(i, width=3)) for i in range(3)]
    processor.resume()
    for i, future in enumerate(pairs):
        np.testing.assert_array_equal(future.result(timeout=5), row(2 * i))
    for future in triples:
        with pytest.raises(ModelError, match="no triples"):
            future.result(timeout=5)


def test_zero_dimensional_arrays_stack_into_a_vector(
    make_processor: ProcessorFactory, model: RecordingModel
) -> None:
    processor = make_processor(model)
    processor.pause()
    futures = [processor.enqueue_predict(np.array(float(i))) for i in range(4)]
    processor.resume()
    assert [float(f.result(timeout=5)) for f in futures] == [0.0, 2.0, 4.0, 6.0]
    assert model.calls[0].shape == (4,)


def test_dict_of_arrays_items_stack_per_key(make_processor: ProcessorFactory) -> None:
    seen: list[dict[str, tuple[int, ...]]] = []

    def combine(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        seen.append({key: value.shape for key, value in batch.items()})
        return {"total": batch["a"].sum(axis=1) + batch["b"].sum(axis=1)}

    processor = make_processor(combine)
    processor.pause()
    futures = [
        processor.enqueue_predict({"a": np.full(2, float(i)), "b": np.full(3, 10.0 * i)})
        for i in range(4)
    ]
    processor.resume()
    for i, future in enumerate(futures):
        result = future.result(timeout=5)
        assert set(result) == {"total"}
        assert float(result["total"]) == 2 * i + 30 * i
    assert seen == [{"a": (4, 2), "b": (4, 3)}]


def test_dicts_with_different_keys_do_not_stack_together(
    make_processor: ProcessorFactory,
) -> None:
    model = RecordingModel(lambda batch: {key: value * 2 for key, value in batch.items()})
    processor = make_processor(model)
    processor.pause()
    # 1 and "1" print alike but are different keys: stacking them would be a KeyError.
    items: list[dict[Any, np.ndarray]] = [
        {"x": np.ones(2)},
        {"y": np.ones(2)},
        {1: np.ones(2)},
        {"1": np.ones(2)},
    ]
    futures = [processor.enqueue_predict(item) for item in items]
    processor.resume()
    for item, future in zip(items, futures, strict=True):
        result = future.result(timeout=5)
        assert set(result) == set(item)
    assert len(model.calls) == 4


def test_non_numpy_items_run_one_by_one(
    make_processor: ProcessorFactory,
) -> None:
    model = RecordingModel(lambda text: text.upper())
    processor = make_processor(model)
    processor.pause()
    futures = [processor.enqueue_predict(word) for word in ("a", "b", "c")]
    processor.resume()
    assert [f.result(timeout=5) for f in futures] == ["A", "B", "C"]
    assert sorted(model.calls) == ["a", "b", "c"]


def test_mixed_batch_stacks_the_arrays_and_runs_the_rest_alone(
    make_processor: ProcessorFactory,
) -> None:
    model = RecordingModel(lambda x: x * 2)
    processor = make_processor(model)
    processor.pause()
    arrays = [processor.enqueue_predict(row(i)) for i in range(3)]
    numbers = [processor.enqueue_predict(i) for i in (10, 20)]
    processor.resume()
    for i, future in enumerate(arrays):
        np.testing.assert_array_equal(future.result(timeout=5), row(2 * i))
    assert [f.result(timeout=5) for f in numbers] == [20, 40]
    assert sorted(len(c) if isinstance(c, np.ndarray) else 0 for c in model.calls) == [0, 0, 3]


@pytest.mark.parametrize("workers", [1, 3])
def test_max_workers_runs_non_numpy_items_concurrently_up_to_the_limit(
    make_processor: ProcessorFactory, workers: int
) -> None:
    barrier = threading.Barrier(workers, timeout=5)
    running = 0
    peak = 0
    lock = threading.Lock()

    def rendezvous(item: int) -> int:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        barrier.wait()  # passes only when `workers` calls run at the same time
        with lock:
            running -= 1
        return item + 1

    processor = make_processor(rendezvous, max_workers=workers)
    futures = processor.enqueue_many(list(range(2 * workers)))
    assert [f.result(timeout=10) for f in futures] == list(range(1, 2 * workers + 1))
    assert peak == workers


MISMATCHED_OUTPUTS: dict[str, Callable[[Any], Any]] = {
    "one row short": lambda batch: batch[:-1],
    "rows doubled": lambda batch: np.concatenate([batch, batch]),
    "empty": lambda batch: batch[:0],
    "a scalar": lambda batch: np.float64(batch.sum()),
    "a 0-d array": lambda batch: np.asarray(batch.sum()),
    "a short list": lambda batch: list(batch)[:1],
    "a dict with a short array": lambda batch: {"y": batch, "z": batch[:1]},
    "None": lambda batch: None,
}


@pytest.mark.parametrize("output", MISMATCHED_OUTPUTS.values(), ids=MISMATCHED_OUTPUTS.keys())
def test_wrong_number_of_output_rows_fails_every_caller_with_output_mismatch(
    make_processor: ProcessorFactory, output: Callable[[Any], Any]
) -> None:
    model = RecordingModel(output)
    processor = make_processor(model, max_retries=2)
    processor.pause()
    futures = [processor.enqueue_predict(row(i)) for i in range(3)]
    processor.resume()
    for future in futures:
        with pytest.raises(OutputMismatch, match="model returned"):
            future.result(timeout=5)
    # A broken output contract is not transient: no retry, no bisection.
    assert len(model.calls) == 1


def test_output_mismatch_message_counts_the_rows(make_processor: ProcessorFactory) -> None:
    processor = make_processor(lambda batch: batch[:1])
    processor.pause()
    futures = [processor.enqueue_predict(row(i)) for i in range(3)]
    processor.resume()
    with pytest.raises(OutputMismatch, match="1 rows for a batch of 3"):
        futures[0].result(timeout=5)


def test_list_and_dict_outputs_are_split_per_caller(make_processor: ProcessorFactory) -> None:
    as_list = make_processor(lambda batch: [f"row-{int(r[0])}" for r in batch])
    as_dict = make_processor(lambda batch: {"y": batch[:, 0], "z": -batch[:, 0]})
    for processor in (as_list, as_dict):
        processor.pause()
    listed = [as_list.enqueue_predict(row(i)) for i in range(3)]
    mapped = [as_dict.enqueue_predict(row(i)) for i in range(3)]
    for processor in (as_list, as_dict):
        processor.resume()
    assert [f.result(timeout=5) for f in listed] == ["row-0", "row-1", "row-2"]
    assert [{k: float(v) for k, v in f.result(timeout=5).items()} for f in mapped] == [
        {"y": float(i), "z": -float(i)} for i in range(3)
    ]
