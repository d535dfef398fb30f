"""What every file loader needs: the file itself, and its optional runtime imported lazily."""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType

from ..errors import ModelLoadError


def require_file(path: str | Path) -> Path:
    """Return ``path`` as a `Path`; raise `ModelLoadError` unless it is an existing file."""
    resolved = Path(path).expanduser()
    if not resolved.is_file():
        what = "is a directory, not a file" if resolved.is_dir() else "not found"
        raise ModelLoadError(f"model file {str(resolved)!r} {what}")
    return resolved


def import_runtime(module: str, extra: str, purpose: str) -> ModuleType:
    """Import an optional runtime, or raise `ModelLoadError` naming the extra to install.

    ``purpose`` completes "<purpose> needs <module>", e.g. "loading .onnx models".
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ModelLoadError(
            f"{purpose} needs {module}, which is not installed here ({exc}). Install batchserve"
            f" with its '{extra}' extra: from a clone, pip install '.[{extra}]'; for the"
            f" container image, build it with --build-arg EXTRAS={extra} (deploy/README.md)"
        ) from exc
