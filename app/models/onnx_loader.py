"""``.onnx`` files, run by onnxruntime on the CPU (extra: ``batchserve[onnx]``)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from ..errors import ModelLoadError
from .base import LoadedModel
from .runtime import import_runtime, require_file
from .spec import Execution, Tensors, TensorSpec, sizes

ONNX_PLATFORM = "onnx_onnxv1"
#: Model metadata (``metadata_props``) that declares padding: ``batchserve.pad.<input>`` = the
#: pad value of an input with variable dimensions; ``batchserve.length_buckets`` = "16,32,64".
PAD_KEY = "batchserve.pad."
BUCKETS_KEY = "batchserve.length_buckets"

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
    metadata = dict(session.get_modelmeta().custom_metadata_map)
    inputs = tuple(_padded(_spec(arg, "input"), metadata) for arg in session.get_inputs())
    outputs = tuple(_spec(arg, "output") for arg in session.get_outputs())
    execution = Execution(
        allowed_batch_sizes=_fixed_batch(session.get_inputs(), str(file)),
        length_buckets=_buckets(metadata.get(BUCKETS_KEY)),
    )
    return LoadedModel(
        name=name,
        platform=ONNX_PLATFORM,
        predict_fn=_OnnxRunner(session, inputs, outputs),
        inputs=inputs,
        outputs=outputs,
        execution=execution,
    )


def _padded(spec: TensorSpec, metadata: dict[str, str]) -> TensorSpec:
    """`spec` with the pad value the model's metadata gives its input, if any."""
    value = metadata.get(PAD_KEY + spec.name)
    if value is None:
        return spec
    try:
        pad = float(value)
        return TensorSpec(spec.name, spec.shape, spec.dtype, int(pad) if pad.is_integer() else pad)
    except ValueError as exc:
        raise ModelLoadError(f"ONNX metadata {PAD_KEY + spec.name}={value!r}: {exc}") from exc


def _buckets(value: str | None) -> tuple[int, ...]:
    if not value:
        return ()
    try:
        return sizes([int(part) for part in value.split(",")], BUCKETS_KEY)
    except ValueError as exc:
        raise ModelLoadError(f"ONNX metadata {BUCKETS_KEY}={value!r}: {exc}") from exc


def _fixed_batch(args: Any, path: str) -> tuple[int, ...]:
    """The batch size a graph fixes on its inputs' first dimension, if it fixes one."""
    fixed = {arg.shape[0] for arg in args if arg.shape and isinstance(arg.shape[0], int)}
    fixed.discard(-1)
    if not fixed:
        return ()
    if len(fixed) > 1:
        raise ModelLoadError(f"ONNX model {path!r}: inputs fix different batch sizes {fixed}")
    (size,) = fixed
    logger.info(
        "ONNX model %r takes batches of exactly %d rows: batches are formed up to %d and"
        " padded to it, the padding rows dropped from the outputs",
        path,
        size,
        size,
    )
    return (size,)


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
    _, *row = shape
    dims = tuple(dim if isinstance(dim, int) and dim >= 0 else -1 for dim in row)
    return TensorSpec(arg.name, dims, dtype)
