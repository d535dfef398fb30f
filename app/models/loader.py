"""`load_model`: from the ``BATCHSERVE_MODEL`` reference to a `LoadedModel`."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from ..errors import ModelLoadError
from .base import LoadedModel
from .digits import load_digits_mlp
from .onnx_loader import load_onnx
from .python_ref import load_python_ref, model_from_object
from .sklearn_loader import load_sklearn
from .torch_loader import load_torchscript

DEFAULT_MODEL_NAME = "digits"
NUMPY_PLATFORM = "batchserve_numpy"

#: File suffix (lower case) -> loader taking ``(path, served_name)``.
FILE_LOADERS: dict[str, Callable[[Path, str], LoadedModel]] = {
    ".onnx": load_onnx,
    ".joblib": load_sklearn,
    ".pkl": load_sklearn,
    ".pt": load_torchscript,
}


def load_model(
    ref: str | None, name: str | None = None, search_path: Sequence[str] = ()
) -> LoadedModel:
    """Load the model ``ref`` names, served as ``name``.

    ``ref`` is one of:

    - None or blank: the embedded digits classifier (default name ``"digits"``);
    - a path ending in ``.onnx``, ``.joblib``, ``.pkl`` or ``.pt`` (case-insensitive), whose
      suffix picks the loader; the default name is the file's stem;
    - ``package.module:attr``; the default name is the last part of ``attr``; the module is
      looked for in ``search_path`` first (see `load_python_ref`).

    Raises `ModelLoadError` with a message saying what to fix: a malformed reference, a
    missing file, an unsupported suffix, a missing optional runtime (naming the extra to
    install), an import failure or a missing attribute.
    """
    ref = (ref or "").strip()
    if name is not None and not name.strip():
        raise ModelLoadError("the served model name must not be blank")
    if not ref:
        model = load_digits_mlp()
        return model_from_object(model, name or DEFAULT_MODEL_NAME, platform=NUMPY_PLATFORM)
    path = Path(ref)
    loader = FILE_LOADERS.get(path.suffix.lower())
    if loader is not None:
        return loader(path, name or path.stem)
    if ":" in ref and not path.exists():
        return load_python_ref(ref, name, search_path)
    if path.is_file():
        raise ModelLoadError(
            f"unsupported model file {ref!r}: the suffix must be one of {sorted(FILE_LOADERS)}"
        )
    raise ModelLoadError(
        f"bad model reference {ref!r}: expected 'package.module:attr' or a path to a "
        f"{'/'.join(sorted(FILE_LOADERS))} file"
    )
