"""``.pt`` TorchScript modules, run on the CPU in inference mode (extra: ``batchserve[torch]``)."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ModelLoadError
from .base import LoadedModel
from .runtime import import_runtime, require_file
from .spec import Array, Tensors, TensorSpec, execution_from_object, specs_from_object

TORCH_PLATFORM = "pytorch_torchscript"


def load_torchscript(path: str | Path, name: str) -> LoadedModel:
    """Load a TorchScript module saved with ``torch.jit.save`` / ``ScriptModule.save``.

    Inputs and outputs are undeclared (one unnamed output, ``"output0"``) unless the module
    carries the declaration attributes described in `batchserve.models`. Floating inputs are cast
    to the dtype of the module's floating parameters (float32 by default), since JSON
    numbers arrive as float64. A multi-input module receives its inputs positionally, in
    declaration order. Raises `ModelLoadError` if torch is missing or the file is not a
    TorchScript archive.
    """
    file = require_file(path)
    torch = import_runtime("torch", "torch", "loading .pt models")
    try:
        with warnings.catch_warnings():
            # TorchScript is deprecated upstream but is the format this loader promises.
            warnings.filterwarnings("ignore", r".*torch\.jit\.load", DeprecationWarning)
            module = torch.jit.load(str(file), map_location="cpu")
    except Exception as exc:
        raise ModelLoadError(f"cannot load TorchScript module {str(file)!r}: {exc}") from exc
    module.eval()
    inputs, outputs, allow_non_finite = specs_from_object(module)
    return LoadedModel(
        name=name,
        platform=TORCH_PLATFORM,
        predict_fn=_TorchRunner(torch, module, inputs),
        inputs=inputs,
        outputs=outputs,
        allow_non_finite=allow_non_finite,
        execution=execution_from_object(module),
    )


class _TorchRunner:
    """numpy batch -> tensors -> module -> numpy; tensors share memory with the arrays."""

    def __init__(self, torch: Any, module: Any, inputs: tuple[TensorSpec, ...]) -> None:
        self._torch = torch
        self._module = module
        self._input_names = [spec.name for spec in inputs]
        floats = [p.dtype for p in module.parameters() if p.dtype.is_floating_point]
        self._float_dtype = _numpy_dtype(floats[0]) if floats else np.dtype(np.float32)

    def __call__(self, batch: Tensors) -> object:
        if isinstance(batch, dict):
            names = self._input_names or list(batch)
            args = [self._tensor(batch[name]) for name in names]
        else:
            args = [self._tensor(batch)]
        with self._torch.inference_mode():
            result = self._module(*args)
        return _to_numpy(self._torch, result)

    def _tensor(self, array: Array) -> Any:
        if array.dtype.kind == "f" and array.dtype != self._float_dtype:
            array = array.astype(self._float_dtype)
        elif not array.flags.writeable:  # torch.from_numpy warns on read-only memory
            array = array.copy()
        return self._torch.from_numpy(np.ascontiguousarray(array))


def _numpy_dtype(torch_dtype: Any) -> np.dtype[Any]:
    # "torch.float32" -> "float32"; bfloat16 has no numpy twin, so fall back to float32.
    name = str(torch_dtype).removeprefix("torch.")
    return np.dtype(name) if name in ("float16", "float32", "float64") else np.dtype(np.float32)


def _to_numpy(torch: Any, result: object) -> object:
    if isinstance(result, torch.Tensor):
        return result.detach().cpu().numpy()
    if isinstance(result, dict):
        return {str(key): _to_numpy(torch, value) for key, value in result.items()}
    if isinstance(result, tuple | list):
        return [_to_numpy(torch, value) for value in result]
    return result
