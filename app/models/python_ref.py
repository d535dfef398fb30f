"""Models named by a Python reference, ``package.module:attr``, or given as an object."""

from __future__ import annotations

import importlib
import inspect
import os
import re
import sys
from collections.abc import Callable, Sequence
from typing import TypeGuard

from ..errors import ModelLoadError
from .base import LoadedModel
from .spec import BatchFn, execution_from_object, specs_from_object

PYTHON_PLATFORM = "batchserve_python"

_MODULE_RE = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")


def load_python_ref(
    ref: str, name: str | None = None, search_path: Sequence[str] = ()
) -> LoadedModel:
    """Import ``package.module:attr`` and turn the attribute into a `LoadedModel`.

    ``attr`` may be dotted (``mod:Holder.model``). The served name defaults to the last part
    of ``attr``. The module is looked for in ``search_path`` (``BATCHSERVE_MODEL_PATH``) first,
    then wherever Python looks (``PYTHONPATH``, installed packages), then in the working
    directory.
    Raises `ModelLoadError` on a malformed reference, an import failure or a missing attribute.
    """
    module_name, _, attr_path = ref.partition(":")
    if not _MODULE_RE.match(module_name) or not attr_path or not _MODULE_RE.match(attr_path):
        raise ModelLoadError(f"bad model reference {ref!r}: expected 'package.module:attr'")
    extend_search_path(search_path)
    if os.getcwd() not in sys.path:
        sys.path.append(os.getcwd())
    try:
        target: object = importlib.import_module(module_name)
    except Exception as exc:
        raise ModelLoadError(
            f"cannot import module {module_name!r} for model {ref!r}: "
            f"{type(exc).__name__}: {exc} (searched BATCHSERVE_MODEL_PATH, PYTHONPATH,"
            " installed packages and the working directory)"
        ) from exc
    for part in attr_path.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise ModelLoadError(f"model reference {ref!r}: {part!r} not found") from None
    return model_from_object(target, name or attr_path.rsplit(".", 1)[-1])


def extend_search_path(directories: Sequence[str]) -> None:
    """Put ``directories`` first on ``sys.path`` (in order), once each."""
    for directory in reversed([os.path.abspath(d) for d in directories if d]):
        if directory in sys.path:
            sys.path.remove(directory)
        sys.path.insert(0, directory)


def model_from_object(target: object, name: str, platform: str = PYTHON_PLATFORM) -> LoadedModel:
    """Wrap an in-memory model; the rules are those of a ``package.module:attr`` reference.

    ``target`` is a class or a zero-argument function (a factory, called once here), an
    object with a ``predict`` method (used even if the object is also callable), or a batch
    function. Declarations (see `batchserve.models`) are read from the model object, then from a
    factory function. Raises `ModelLoadError` if a factory fails or nothing callable is found.
    """
    factory: Callable[[], BatchFn] | None = None
    if _is_factory(target):
        build = target

        def factory() -> BatchFn:
            return _batch_fn(_build(build, name), name)

        model = _build(target, name)
    else:
        model = target
    # An instance already sees its class's attributes; a class would add descriptors only.
    sources = (model,) if inspect.isclass(target) else (model, target)
    inputs, outputs, allow_non_finite = specs_from_object(*sources)
    return LoadedModel(
        name=name,
        platform=platform,
        predict_fn=_batch_fn(model, name),
        inputs=inputs,
        outputs=outputs,
        allow_non_finite=allow_non_finite,
        execution=execution_from_object(*sources),
        factory=factory,
    )


def _is_factory(target: object) -> TypeGuard[Callable[[], object]]:
    """Classes always; functions only when they cannot take a batch but can take nothing."""
    if inspect.isclass(target):
        return True
    if not callable(target) or callable(getattr(target, "predict", None)):
        return False
    try:
        signature = inspect.signature(target)
    except (TypeError, ValueError):  # builtins and ufuncs without a signature: batch functions
        return False
    return _binds(signature) and not _binds(signature, object())


def _binds(signature: inspect.Signature, *args: object) -> bool:
    try:
        signature.bind(*args)
    except TypeError:
        return False
    return True


def _build(factory: Callable[[], object], name: str) -> object:
    try:
        return factory()
    except Exception as exc:
        raise ModelLoadError(
            f"model {name!r}: calling factory {_qualname(factory)} with no arguments failed: "
            f"{type(exc).__name__}: {exc}"
        ) from exc


def _batch_fn(model: object, name: str) -> BatchFn:
    predict = getattr(model, "predict", None)
    if callable(predict):
        return predict  # type: ignore[no-any-return]
    if callable(model):
        return model
    raise ModelLoadError(
        f"model {name!r}: {_qualname(model)} is neither a batch function, a factory, "
        "nor an object with a predict method"
    )


def _qualname(obj: object) -> str:
    return str(getattr(obj, "__qualname__", None) or type(obj).__qualname__)
