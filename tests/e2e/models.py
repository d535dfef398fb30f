"""Models for the end-to-end tests, loaded by reference (`tests.e2e.models:...`)."""

from __future__ import annotations

import time

import numpy as np


def slow_double(batch: np.ndarray) -> np.ndarray:
    """Doubles its input after 20 ms per batch: slow enough to keep requests in flight."""
    time.sleep(0.02)
    return batch * 2


slow_double.input_shape = (4,)  # type: ignore[attr-defined]
slow_double.input_dtype = "float32"  # type: ignore[attr-defined]
