"""The models every contender serves, and the request body every load generator sends.

Each workload is importable as a ``BATCHSERVE_MODEL`` reference (``bench.workloads:sleep_model``,
``bench.workloads:mlp_model``; ``digits`` is the embedded default, an empty reference), so the
batchserve contenders load exactly the object the naive and ceiling servers call.

- ``sleep``: an accelerator stand-in. Each batch call sleeps ``2 ms + 20 us x B`` with the GIL
  released, one batch at a time, and returns ``(B, 16)`` float32 zeros.
- ``mlp``: a float32 MLP 256 -> 1024 -> 1024 -> 16 (ReLU) with fixed random weights, run on
  ONE BLAS thread so that one core serves it, as the server is pinned to one core.
- ``digits``: the embedded digits classifier (64 inputs in 0..16).
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
from numpy.typing import NDArray

Array = NDArray[Any]
BatchFn = Callable[[Array], Any]

WIDTH = 256
OUT_WIDTH = 16
SLEEP_BASE_S = 0.002
SLEEP_PER_ITEM_S = 0.00002
MLP_HIDDEN = 1024
SEED = 20240601
# Every contender runs with these: the server has one core, a second BLAS thread only contends.
BLAS_ENV = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def limit_blas_threads() -> bool:
    """Pin BLAS to one thread in this process; False when threadpoolctl is unavailable (the
    contender's environment then carries ``OPENBLAS_NUM_THREADS=1`` instead)."""
    try:
        from threadpoolctl import threadpool_limits  # type: ignore[import-untyped, unused-ignore]
    except ImportError:
        return False
    threadpool_limits(limits=1, user_api="blas")
    return True


class SleepModel:
    """Stand-in for an accelerator: a fixed launch cost plus a small per-item cost, one batch
    at a time (the lock), the GIL released while it "computes"."""

    input_shape = (WIDTH,)
    input_dtype = "float32"

    def __init__(self) -> None:
        self._lock = threading.Lock()

    def predict(self, batch: Array) -> Array:
        """(B, 256) -> (B, 16) float32 zeros after ``2 ms + 20 us x B``."""
        size = len(batch)
        with self._lock:
            time.sleep(SLEEP_BASE_S + SLEEP_PER_ITEM_S * size)
        return np.zeros((size, OUT_WIDTH), dtype=np.float32)


class MLPModel:
    """Dense float32 MLP 256 -> 1024 -> 1024 -> 16 with ReLU, fixed random weights."""

    input_shape = (WIDTH,)
    input_dtype = "float32"

    def __init__(self) -> None:
        limit_blas_threads()
        rng = np.random.default_rng(SEED)
        dims = (WIDTH, MLP_HIDDEN, MLP_HIDDEN, OUT_WIDTH)
        self._weights = [
            (rng.standard_normal((a, b), dtype=np.float32) / np.float32(np.sqrt(a)))
            for a, b in itertools.pairwise(dims)
        ]
        self._biases = [np.zeros(b, dtype=np.float32) for b in dims[1:]]

    def predict(self, batch: Array) -> Array:
        """(B, 256) -> (B, 16) float32."""
        x = np.asarray(batch, dtype=np.float32)
        last = len(self._weights) - 1
        for i, (w, b) in enumerate(zip(self._weights, self._biases, strict=True)):
            x = x @ w + b
            if i < last:
                np.maximum(x, np.float32(0), out=x)
        return x


def sleep_model() -> SleepModel:
    """Factory for ``BATCHSERVE_MODEL=bench.workloads:sleep_model``."""
    return SleepModel()


def mlp_model() -> MLPModel:
    """Factory for ``BATCHSERVE_MODEL=bench.workloads:mlp_model``."""
    return MLPModel()


def digits_model() -> Any:
    """The embedded digits classifier (what an empty ``BATCHSERVE_MODEL`` serves)."""
    from batchserve.models.digits import load_digits_mlp

    return load_digits_mlp()


@dataclass(frozen=True, slots=True)
class Workload:
    """One benchmark workload: how to name it to batchserve, and what one instance is."""

    name: str
    model_ref: str
    factory: Callable[[], Any]
    width: int
    low: float
    high: float
    on_core: bool = True  # False: the model waits on something else (an accelerator stand-in)

    def instance(self) -> list[float]:
        """The fixed instance every request carries (same seed, same numbers, every run)."""
        rng = np.random.default_rng(SEED)
        values = rng.uniform(self.low, self.high, self.width).astype(np.float32)
        return [round(float(v), 4) for v in values]

    def body(self, instances: int = 1) -> bytes:
        """The JSON ``/predict`` body with ``instances`` copies of the instance."""
        return orjson.dumps({"instances": [self.instance()] * instances})

    def batch(self, size: int) -> Array:
        """A ``(size, width)`` float32 batch of the instance."""
        return np.tile(np.asarray(self.instance(), dtype=np.float32), (size, 1))

    def batch_fn(self) -> BatchFn:
        """The model as a plain batch function, built once."""
        model = self.factory()
        predict: BatchFn = model.predict
        return predict


WORKLOADS: dict[str, Workload] = {
    "sleep": Workload(
        "sleep", "bench.workloads:sleep_model", sleep_model, WIDTH, -1.0, 1.0, on_core=False
    ),
    "mlp": Workload("mlp", "bench.workloads:mlp_model", mlp_model, WIDTH, -1.0, 1.0),
    "digits": Workload("digits", "", digits_model, 64, 0.0, 16.0),
}


def get_workload(name: str) -> Workload:
    """The workload called ``name``; ``KeyError`` names the known ones."""
    try:
        return WORKLOADS[name]
    except KeyError:
        raise KeyError(f"unknown workload {name!r}; known: {', '.join(WORKLOADS)}") from None
