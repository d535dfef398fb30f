"""Batches of the shapes a model takes: padded to its allowed batch sizes, variable-length rows
padded to a common length (with their true lengths and trimmed outputs), and model instances:
a copy per slot for a factory, a shared model kept to one call at a time when it says so."""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import pytest

from batchserve.batching import BatchProcessor
from batchserve.models import TensorSpec, model_from_object
from batchserve.models.base import LoadedModel
from batchserve.models.padding import model_collator
from tests.batching.support import ProcessorFactory, Recorder


def started(make_processor: ProcessorFactory, model: LoadedModel, **config: Any) -> Any:
    """An engine running `model` as the service runs it: one function per slot, and the
    model's collator."""
    recorder = Recorder()
    processor: BatchProcessor[Any, Any] = make_processor(metrics_collector=recorder, **config)
    processor.start(
        model.instance_functions(processor.config.instances),
        collator=model_collator(model, recorder),
    )
    return processor, recorder


class FixedEight:
    """A graph exported with a batch of exactly 8: anything else fails."""

    input_shape = (2,)
    allowed_batch_sizes = (8,)

    def __init__(self) -> None:
        self.sizes: list[int] = []

    def predict(self, batch: np.ndarray) -> np.ndarray:
        self.sizes.append(len(batch))
        if len(batch) != 8:
            raise ValueError(f"this graph takes 8 rows, got {len(batch)}")
        return batch * 2


def test_a_batch_is_padded_up_to_the_allowed_size_and_the_padding_dropped(
    make_processor: ProcessorFactory,
) -> None:
    fixed = FixedEight()
    model = model_from_object(fixed, "fixed")
    processor, recorder = started(make_processor, model, initial_batch_size=32)
    processor.pause()
    futures = [processor.enqueue_predict(np.full(2, float(i), np.float32)) for i in range(11)]
    processor.resume()
    assert [f.result(timeout=5)[0] for f in futures] == [2.0 * i for i in range(11)]
    assert fixed.sizes == [8, 8]  # 8 rows, then 3 padded to 8: formed up to 8, never bisected
    assert recorder.padding_rows == 5
    assert processor.current_batch_size == 32  # the target; batches are capped at 8


def test_the_next_allowed_size_is_chosen(make_processor: ProcessorFactory) -> None:
    class Sizes(FixedEight):
        allowed_batch_sizes = (1, 4, 16)

        def predict(self, batch: np.ndarray) -> np.ndarray:
            self.sizes.append(len(batch))
            return batch * 2

    sizes = Sizes()
    processor, _ = started(make_processor, model_from_object(sizes, "sizes"))
    for count in (1, 3, 5):
        processor.pause()
        futures = [processor.enqueue_predict(np.ones(2, np.float32)) for _ in range(count)]
        processor.resume()
        for future in futures:
            future.result(timeout=5)
    assert sizes.sizes == [1, 4, 16]


class Sequences:
    """Token sequences of any length, padded with -1: answers each row's sum and the row
    itself plus one (an output with the input's variable length)."""

    inputs = ({"name": "tokens", "shape": (-1,), "dtype": "int64", "pad": -1},)
    outputs = (
        {"name": "total", "shape": (), "dtype": "int64"},
        {"name": "shifted", "shape": (-1,), "dtype": "int64"},
    )

    def __init__(self) -> None:
        self.shapes: list[tuple[int, ...]] = []

    def predict(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        self.shapes.append(batch.shape)
        real = np.where(batch == -1, 0, batch)
        return {"total": real.sum(axis=1), "shifted": batch + 1}


def test_rows_of_different_lengths_batch_together_and_outputs_are_trimmed_back(
    make_processor: ProcessorFactory,
) -> None:
    sequences = Sequences()
    model = model_from_object(sequences, "seq")
    processor, recorder = started(make_processor, model)
    rows = [np.arange(n, dtype=np.int64) + 1 for n in (3, 5, 2)]
    processor.pause()
    futures = [processor.enqueue_predict(model.validate_row(row)) for row in rows]
    processor.resume()
    results = [f.result(timeout=5) for f in futures]
    assert sequences.shapes == [(3, 5)]  # one call, padded to the longest row
    assert [int(r["total"]) for r in results] == [6, 15, 3]
    assert [r["shifted"].tolist() for r in results] == [[2, 3, 4], [2, 3, 4, 5, 6], [2, 3]]
    assert recorder.padding_values == 15 - 10


def test_without_a_pad_value_rows_of_different_lengths_do_not_share_a_batch(
    make_processor: ProcessorFactory,
) -> None:
    class Unpadded(Sequences):
        inputs = ({"name": "tokens", "shape": (-1,), "dtype": "int64"},)

    unpadded = Unpadded()
    model = model_from_object(unpadded, "plain")
    processor, _ = started(make_processor, model)
    processor.pause()
    futures = [processor.enqueue_predict(np.arange(n, dtype=np.int64)) for n in (3, 5, 3)]
    processor.resume()
    for future in futures:
        future.result(timeout=5)
    assert sorted(unpadded.shapes) == [(1, 5), (2, 3)]


def test_the_true_lengths_reach_a_model_that_declares_a_lengths_input(
    make_processor: ProcessorFactory,
) -> None:
    seen: list[dict[str, np.ndarray]] = []

    class WithLengths:
        input_shape = (-1, 2)
        input_dtype = "float32"
        pad_value = 0.0
        lengths_input = "lengths"

        def predict(self, batch: dict[str, np.ndarray]) -> np.ndarray:
            seen.append(batch)
            return batch["lengths"].astype(np.float32)

    model = model_from_object(WithLengths(), "lengths")
    processor, _ = started(make_processor, model)
    processor.pause()
    futures = [processor.enqueue_predict(np.ones((n, 2), np.float32)) for n in (4, 1, 2)]
    processor.resume()
    assert [float(f.result(timeout=5)) for f in futures] == [4.0, 1.0, 2.0]
    (batch,) = seen
    assert batch["input0"].shape == (3, 4, 2)
    assert batch["lengths"].dtype == np.int64


def test_length_buckets_cap_the_padding_a_short_row_pays(make_processor: ProcessorFactory) -> None:
    class Bucketed(Sequences):
        length_buckets = (4, 32)

    bucketed = Bucketed()
    model = model_from_object(bucketed, "buckets")
    processor, _ = started(make_processor, model)
    processor.pause()
    futures = [processor.enqueue_predict(np.arange(n, dtype=np.int64)) for n in (3, 20, 2, 30)]
    processor.resume()
    for future in futures:
        future.result(timeout=5)
    assert sorted(bucketed.shapes) == [(2, 4), (2, 32)]


def test_a_factory_model_gets_its_own_instance_per_slot(make_processor: ProcessorFactory) -> None:
    made: list[Any] = []
    barrier = threading.Barrier(2, timeout=5)

    class Device:
        input_shape = (1,)

        def __init__(self) -> None:
            made.append(self)
            self.calls = 0

        def predict(self, batch: np.ndarray) -> np.ndarray:
            self.calls += 1
            barrier.wait()  # two calls at once: only two slots can get here together
            return batch * 2

    model = model_from_object(Device, "device")
    processor, _ = started(make_processor, model, instances=2, max_batch_size=1)
    processor.pause()
    futures = [processor.enqueue_predict(np.ones(1, np.float32)) for _ in range(2)]
    processor.resume()
    for future in futures:
        future.result(timeout=5)
    assert len(made) == 2
    assert [d.calls for d in made] == [1, 1]


def test_a_shared_model_that_is_not_thread_safe_gets_one_call_at_a_time(
    make_processor: ProcessorFactory,
) -> None:
    running = [0, 0]  # now, most
    lock = threading.Lock()

    class Fragile:
        input_shape = (1,)
        thread_safe = False

        def predict(self, batch: np.ndarray) -> np.ndarray:
            with lock:
                running[0] += 1
                running[1] = max(running)
            try:
                threading.Event().wait(0.005)  # long enough for a second slot to overlap
                return batch * 2
            finally:
                with lock:
                    running[0] -= 1

    model = model_from_object(Fragile(), "fragile")
    processor, _ = started(make_processor, model, instances=3, max_batch_size=1)
    futures = [processor.enqueue_predict(np.ones(1, np.float32)) for _ in range(12)]
    for future in futures:
        future.result(timeout=5)
    assert running[1] == 1


@pytest.mark.parametrize(
    ("attrs", "message"),
    [
        ({"allowed_batch_sizes": (0, 8)}, "positive ints"),
        ({"length_buckets": "16"}, "sequence of ints"),
        ({"thread_safe": "no"}, "thread_safe must be a bool"),
    ],
)
def test_bad_execution_declarations_are_refused_at_load(
    attrs: dict[str, Any], message: str
) -> None:
    from batchserve.errors import ModelLoadError

    model = type("Bad", (), {"predict": lambda self, b: b, **attrs})()
    with pytest.raises(ModelLoadError, match=message):
        model_from_object(model, "bad")


def test_a_pad_value_needs_a_variable_dimension() -> None:
    with pytest.raises(ValueError, match="variable dimension"):
        TensorSpec("x", (3,), "float32", pad=0)
