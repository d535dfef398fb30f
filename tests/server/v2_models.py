"""Models for the V2 protocol tests, loadable as ``tests.server.v2_models:<name>``."""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np

from batchserve.models import TensorSpec
from batchserve.models.spec import Array

POISON = 666.0


class Scale:
    """``x`` (4 float32) -> ``y = 2x``, plus the size and sequence number of the batch that
    ran the row. Raises on any batch holding POISON."""

    inputs = (TensorSpec("x", (4,), "float32"),)
    outputs = (
        TensorSpec("y", (4,), "float32"),
        TensorSpec("batch_size", (), "int64"),
        TensorSpec("call", (), "int64"),
    )

    def __init__(self) -> None:
        self._calls = itertools.count(1)

    def predict(self, batch: Array) -> dict[str, Array]:
        if np.any(batch == POISON):
            raise ValueError("poison value")
        rows = len(batch)
        call = next(self._calls)
        return {
            "y": batch * np.float32(2),
            "batch_size": np.full(rows, rows, dtype=np.int64),
            "call": np.full(rows, call, dtype=np.int64),
        }


class Triple(Scale):
    """As `Scale`, but ``y = 3x``: the model a reload switches to."""

    def predict(self, batch: Array) -> dict[str, Array]:
        out = super().predict(batch)
        out["y"] = batch * np.float32(3)
        return out


class Broken:
    """Declares `Scale`'s tensors and fails every batch: its warm-up fails."""

    inputs = Scale.inputs
    outputs = Scale.outputs

    def predict(self, batch: Array) -> dict[str, Array]:
        raise RuntimeError("this model never works")


def unloadable() -> Scale:
    """A factory that fails: the model cannot be loaded."""
    raise RuntimeError("no weights here")


class MultiIO:
    """One input and one output per common datatype, each a simple function of its input."""

    inputs = (
        TensorSpec("f32", (3,), "float32"),
        TensorSpec("i64", (2,), "int64"),
        TensorSpec("f64", (), "float64"),
        TensorSpec("u8", (4,), "uint8"),
        TensorSpec("flag", (), "bool"),
    )
    outputs = (
        TensorSpec("f32_twice", (3,), "float32"),
        TensorSpec("i64_sum", (), "int64"),
        TensorSpec("f64_neg", (), "float64"),
        TensorSpec("u8_inv", (4,), "uint8"),
        TensorSpec("flag_not", (), "bool"),
    )

    def predict(self, batch: dict[str, Array]) -> dict[str, Array]:
        return {
            "f32_twice": batch["f32"] * np.float32(2),
            "i64_sum": batch["i64"].sum(axis=1),
            "f64_neg": -batch["f64"],
            "u8_inv": np.uint8(255) - batch["u8"],
            "flag_not": ~batch["flag"],
        }


class Texts:
    """``text`` (one BYTES element per row) -> its ``length`` and the ``upper``-cased bytes."""

    inputs = (TensorSpec("text", (), "object"),)
    outputs = (TensorSpec("length", (), "int64"), TensorSpec("upper", (), "object"))

    def predict(self, batch: Array) -> dict[str, Any]:
        upper = np.empty(len(batch), dtype=object)
        upper[:] = [item.upper() for item in batch]
        return {"length": np.array([len(item) for item in batch]), "upper": upper}


class Words:
    """``word`` (str) -> ``reversed`` (str): BYTES to and from a text-typed model."""

    inputs = (TensorSpec("word", (), "str"),)
    outputs = (TensorSpec("reversed", (), "str"),)

    def predict(self, batch: Array) -> Array:
        return np.array([word[::-1] for word in batch.tolist()])


def plus_one(batch: Array) -> Array:
    """An undeclared model: any numeric batch, plus one."""
    return batch + 1


scale = Scale
triple = Triple
broken = Broken
multi_io = MultiIO
texts = Texts
words = Words
