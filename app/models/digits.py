"""The embedded default model: an MLP that reads 8x8 handwritten digits, in pure numpy.

Trained by ``scripts/train_digits.py`` on scikit-learn's bundled digits dataset; the weights
ship as ``app/models/data/digits_mlp.npz``. Serving needs numpy only.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import IO, Any

import numpy as np

from ..errors import ModelLoadError
from .spec import Array, TensorSpec

DIGITS_RESOURCE = "digits_mlp.npz"
N_PIXELS = 64
N_CLASSES = 10


class DigitsMLP:
    """One hidden ReLU layer, softmax output.

    Input ``"pixels"``: 64 float32 values per row, 0..16 (the scale of sklearn's digits).
    Outputs ``"label"`` (int64 per row) and ``"probabilities"`` (10 float32 per row).
    """

    inputs = (TensorSpec("pixels", (N_PIXELS,), "float32"),)
    outputs = (
        TensorSpec("label", (), "int64"),
        TensorSpec("probabilities", (N_CLASSES,), "float32"),
    )

    def __init__(
        self, w1: Array, b1: Array, w2: Array, b2: Array, input_scale: float, classes: Array
    ) -> None:
        """Take the weights as the training script exports them.

        Raises `ModelLoadError` unless their shapes chain from 64 pixels to 10 classes.
        """
        hidden = w1.shape[1] if w1.ndim == 2 else -1
        expected = {
            "w1": (N_PIXELS, hidden),
            "b1": (hidden,),
            "w2": (hidden, N_CLASSES),
            "b2": (N_CLASSES,),
            "classes": (N_CLASSES,),
        }
        given = {"w1": w1, "b1": b1, "w2": w2, "b2": b2, "classes": classes}
        for key, shape in expected.items():
            if given[key].shape != shape:
                raise ModelLoadError(f"digits weights: {key} has shape {given[key].shape}")
        self._w1, self._b1 = w1.astype(np.float32), b1.astype(np.float32)
        self._w2, self._b2 = w2.astype(np.float32), b2.astype(np.float32)
        self._scale = np.float32(input_scale)
        self._classes = classes.astype(np.int64)

    @classmethod
    def from_npz(cls, source: str | Path | IO[bytes]) -> DigitsMLP:
        """Read weights written by ``scripts/train_digits.py``; `ModelLoadError` if unusable."""
        try:
            with np.load(source, allow_pickle=False) as data:
                arrays: dict[str, Any] = {key: data[key] for key in data.files}
            return cls(
                arrays["w1"],
                arrays["b1"],
                arrays["w2"],
                arrays["b2"],
                float(arrays["input_scale"]),
                arrays["classes"],
            )
        except (OSError, ValueError, KeyError) as exc:
            raise ModelLoadError(f"cannot read digits weights: {exc!r}") from exc

    def predict(self, batch: Array) -> dict[str, Array]:
        """(B, 64) pixels -> ``{"label": (B,) int64, "probabilities": (B, 10) float32}``."""
        x = np.asarray(batch, dtype=np.float32) * self._scale
        hidden = np.maximum(x @ self._w1 + self._b1, np.float32(0))
        logits = hidden @ self._w2 + self._b2
        logits -= logits.max(axis=1, keepdims=True)  # stable softmax: exp never overflows
        exp = np.exp(logits)
        probabilities = (exp / exp.sum(axis=1, keepdims=True)).astype(np.float32)
        label = self._classes[np.argmax(probabilities, axis=1)]
        return {"label": label, "probabilities": probabilities}


def load_digits_mlp() -> DigitsMLP:
    """The packaged model: a zero-argument factory, ``batchserve.models.digits:load_digits_mlp``."""
    resource = resources.files(__package__ or "batchserve.models") / "data" / DIGITS_RESOURCE
    try:
        with resource.open("rb") as stream:
            return DigitsMLP.from_npz(stream)
    except OSError as exc:
        raise ModelLoadError(f"the packaged digits model is missing: {exc}") from exc
