"""Tiny Python models referenced as ``tests.models.fixtures_models:<attr>`` by the tests."""

from __future__ import annotations

from typing import Any

import numpy as np

from batchserve.models import TensorSpec

Array = np.ndarray[Any, Any]


def double(batch: Array) -> Array:
    """A batch function with no declarations."""
    return batch * 2


def make_doubler() -> Any:
    """A zero-argument factory returning a batch function."""
    return double


class Doubler:
    """A class (factory) whose instances have ``predict``; short-form declarations."""

    input_shape = (3,)
    output_names = ("doubled",)

    def predict(self, batch: Array) -> Array:
        return batch * 2


class Shifter:
    """An object with ``predict`` declared in the long form, mixing dicts and TensorSpec."""

    inputs = ({"name": "x", "shape": (2, -1), "dtype": "float32"},)
    outputs = (TensorSpec("y", (2, -1), "float32"),)

    def __init__(self, offset: float) -> None:
        self.offset = offset

    def predict(self, batch: Array) -> Array:
        return batch + self.offset


shifter = Shifter(offset=1.0)


class Holder:
    """Reached through a dotted attribute: ``fixtures_models:Holder.model``."""

    model = staticmethod(double)


class SumProduct:
    """Two named inputs, two named outputs."""

    inputs = (
        TensorSpec("a", (3,), "float32"),
        TensorSpec("b", (3,), "float32"),
    )
    outputs = (
        TensorSpec("sum", (3,), "float32"),
        TensorSpec("product", (3,), "float32"),
    )

    def predict(self, batch: dict[str, Array]) -> dict[str, Array]:
        return {"sum": batch["a"] + batch["b"], "product": batch["a"] * batch["b"]}


class NeedsArgs:
    """A class that cannot be built with no arguments."""

    def __init__(self, size: int) -> None:
        self.size = size

    def predict(self, batch: Array) -> Array:
        return batch


class BothForms:
    """Declares its input twice, which is refused."""

    inputs = (TensorSpec("x", (2,), "float32"),)
    input_shape = (2,)

    def predict(self, batch: Array) -> Array:
        return batch


not_a_model = 42
