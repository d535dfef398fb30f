"""``.onnx`` files, run by onnxruntime on the CPU (extra: ``batchserve[onnx]``)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from ..errors import ModelLoadError
from .base import LoadedModel
from .runtime import import_runtime, require_file
from .spec import Tensors, TensorSpec

ONNX_PLATFORM = "onnx_onnxv1"

logger = logging.getLogger("batchserve.models")

# ONNX element types as onnxruntime spells them -> numpy dtype names.
_ONNX_DTYPES = {
    "tensor(float)": "float32",
    "tensor(double)": "float64",
    "tensor(float16)": "float16",
    "tensor(int8)": "int8",
    "tensor(int16)": "int16",
    "tensor(int32)": "int32",
    "tensor(int64)": "int64",
    "tensor(uint8)": "uint8",
    "tensor(uint16)": "uint16",
    "tensor(uint32)": "uint32",
    "tensor(uint64)": "uint64",
    "tensor(bool)": "bool",
    "tensor(string)": "object",
}
_ZIPMAP_HINT = " (for a converted scikit-learn classifier, convert with options={'zipmap': False})"


def load_onnx(path: str | Path, name: str) -> LoadedModel:
    """Load an ONNX model; inputs and outputs are read from the graph.

    The first dimension of every graph input and output is taken as the batch dimension and
    stripped; symbolic or unknown dimensions become ``-1``. A model with several outputs
    returns a dict by output name. Raises `ModelLoadError` if onnxruntime is missing, the file
    is missing or invalid, or a tensor has no batch dimension or an unsupported type.
    """
    file = require_file(path)
    ort = import_runtime("onnxruntime", "onnx", "loading .onnx models")
    try:
        session = ort.InferenceSession(str(file), providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise ModelLoadError(f"cannot load ONNX model {str(file)!r}: {exc}") from exc
    inputs = tuple(_spec(arg, "input") for arg in session.get_inputs())
    outputs = tuple(_spec(arg, "output") for arg in session.get_outputs())
    return LoadedModel(
        name=name,
        platform=ONNX_PLATFORM,
        predict_fn=_OnnxRunner(session, inputs, outputs),
        inputs=inputs,
        outputs=outputs,
    )


class _OnnxRunner:
    """Feeds a batch to an onnxruntime session; ``InferenceSession.run`` is thread-safe."""

    def __init__(
        self, session: Any, inputs: tuple[TensorSpec, ...], outputs: tuple[TensorSpec, ...]
    ) -> None:
        self._session = session
        self._input_names = [spec.name for spec in inputs]
        self._output_names = [spec.name for spec in outputs]

    def __call__(self, batch: Tensors) -> dict[str, Any]:
        feed = batch if isinstance(batch, dict) else {self._input_names[0]: batch}
        results = self._session.run(self._output_names, feed)
        return dict(zip(self._output_names, results, strict=True))


def _spec(arg: Any, kind: str) -> TensorSpec:
    """`TensorSpec` of an onnxruntime ``NodeArg``, batch dimension stripped."""
    dtype = _ONNX_DTYPES.get(arg.type)
    if dtype is None:
        hint = _ZIPMAP_HINT if str(arg.type).startswith("seq(map") else ""
        raise ModelLoadError(
            f"ONNX {kind} {arg.name!r} has type {arg.type!r}; only tensors of "
            f"{sorted(t[7:-1] for t in _ONNX_DTYPES)} are served{hint}"
        )
    shape = list(arg.shape or [])
    if not shape:
        if kind == "output":  # shape inference left it unknown: say "a vector of any size"
            return TensorSpec(arg.name, (-1,), dtype)
        raise ModelLoadError(f"ONNX {kind} {arg.name!r} has no batch dimension")
    batch_dim, *row = shape
    if isinstance(batch_dim, int) and batch_dim != -1:
        logger.warning(
            "ONNX %s %r has a fixed batch dimension of %d; batches of another size will fail",
            kind,
            arg.name,
            batch_dim,
        )
    dims = tuple(dim if isinstance(dim, int) and dim >= 0 else -1 for dim in row)
    return TensorSpec(arg.name, dims, dtype)
