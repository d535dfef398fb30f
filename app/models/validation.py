"""Checking one request row against a model's declared inputs, before it is queued.

Cast policy (declared dtype D, received dtype R):

- R casts to D safely in numpy's sense (int32 -> int64, float32 -> float64): accepted.
- booleans -> a numeric D that is not bool: refused (true is not a number; a model that takes
  flags declares a bool input).
- integers -> any float or complex: accepted (JSON numbers arrive as int64 or float64) unless a
  value overflows the target (70000 for float16).
- wider float -> narrower float (float64 -> float32): accepted unless a finite value overflows.
- float -> integer, or integer -> narrower integer: accepted only when every value is exactly
  representable (finite, integral, in range); anything lossy is refused.
- strings, bytes or objects -> a numeric D: refused. A string or bytes D accepts string,
  bytes or object values; an object D accepts anything.

After casting, NaN and Inf are refused unless the model sets ``allow_non_finite``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..errors import InvalidInput
from .spec import Array, Tensors, TensorSpec

_NUMERIC_KINDS = "biufc"
_TEXT_KINDS = "USO"


def check_row(inputs: Sequence[TensorSpec], row: object, allow_non_finite: bool) -> Tensors:
    """Validate one row and return it in canonical form, cast to the declared dtypes.

    Canonical form: an array for a model with zero or one declared input (a one-entry dict
    naming that input is unwrapped), a dict in declaration order for a multi-input model.
    With no declared inputs any numeric array, or dict of numeric arrays, is accepted as is.
    Raises `InvalidInput` naming the offending input.
    """
    if not inputs:
        return _check_undeclared(row, allow_non_finite)
    if len(inputs) == 1:
        (spec,) = inputs
        if isinstance(row, Mapping):
            _check_names(inputs, row)
            row = row[spec.name]
        return check_tensor(spec, row, allow_non_finite)
    if not isinstance(row, Mapping):
        names = ", ".join(repr(spec.name) for spec in inputs)
        raise InvalidInput(f"model takes named inputs {names}; got a single unnamed tensor")
    _check_names(inputs, row)
    return {spec.name: check_tensor(spec, row[spec.name], allow_non_finite) for spec in inputs}


def check_tensor(spec: TensorSpec, value: object, allow_non_finite: bool) -> Array:
    """Check one tensor's shape (``-1`` matches any size), dtype and values; return it cast."""
    label = f"input {spec.name!r}"
    array = _as_array(label, value)
    if not shape_matches(spec.shape, array.shape):
        raise InvalidInput(f"{label}: expected shape {spec.shape}, got {array.shape}")
    array = cast_checked(label, array, spec.np_dtype)
    if not allow_non_finite:
        _check_finite(label, array)
    return array


def cast_checked(label: str, array: Array, target: np.dtype[Any]) -> Array:
    """Cast ``array`` to ``target`` under the module's cast policy or raise `InvalidInput`."""
    source = array.dtype
    if source == target:
        return array
    if target.kind == "O":
        return array.astype(object)
    if target.kind in "US":
        if source.kind not in _TEXT_KINDS:
            raise InvalidInput(f"{label}: expected {_describe(target)}, got {_describe(source)}")
        return array.astype(target)
    if source.kind not in _NUMERIC_KINDS or (source.kind == "b" and target.kind != "b"):
        raise InvalidInput(f"{label}: expected {_describe(target)}, got {_describe(source)}")
    if np.can_cast(source, target, "safe"):
        return array.astype(target)
    if source.kind in "iuf" and target.kind in "fc":  # integers or wider floats
        return _narrow_float(label, array, target)
    if source.kind in "iuf" and target.kind in "iu":
        return _to_integer(label, array, target)
    raise InvalidInput(f"{label}: expected {_describe(target)}, got {_describe(source)}")


def _narrow_float(label: str, array: Array, target: np.dtype[Any]) -> Array:
    with np.errstate(over="ignore", invalid="ignore"):
        cast = array.astype(target)
    if (np.isfinite(array) & ~np.isfinite(cast)).any():
        raise InvalidInput(f"{label}: values out of range for {_describe(target)}")
    return cast


def _to_integer(label: str, array: Array, target: np.dtype[Any]) -> Array:
    if array.size == 0:
        return array.astype(target)
    info = np.iinfo(target)
    if array.dtype.kind == "f":
        if not np.isfinite(array).all() or (array != np.trunc(array)).any():
            raise InvalidInput(
                f"{label}: expected {_describe(target)}; non-integral values would be lost"
            )
        # float(info.max) + 1 is exact as an exclusive bound: info.max + 1 is a power of two.
        in_range = bool(array.min() >= info.min and array.max() < float(info.max) + 1.0)
    else:
        in_range = int(array.min()) >= info.min and int(array.max()) <= info.max
    if not in_range:
        raise InvalidInput(f"{label}: values out of range for {_describe(target)}")
    return array.astype(target)


def _check_undeclared(row: object, allow_non_finite: bool) -> Tensors:
    if isinstance(row, Mapping):
        return {str(k): _check_numeric(f"input {k!r}", v, allow_non_finite) for k, v in row.items()}
    return _check_numeric("input", row, allow_non_finite)


def _check_numeric(label: str, value: object, allow_non_finite: bool) -> Array:
    array = _as_array(label, value)
    if array.dtype.kind not in _NUMERIC_KINDS:
        raise InvalidInput(f"{label}: expected numbers, got {_describe(array.dtype)}")
    if not allow_non_finite:
        _check_finite(label, array)
    return array


def _check_names(inputs: Sequence[TensorSpec], row: Mapping[Any, object]) -> None:
    expected = [spec.name for spec in inputs]
    missing = [name for name in expected if name not in row]
    unknown = sorted(str(name) for name in row if name not in expected)
    if missing or unknown:
        parts = []
        if missing:
            parts.append(f"missing input(s) {', '.join(map(repr, missing))}")
        if unknown:
            parts.append(f"unknown input(s) {', '.join(map(repr, unknown))}")
        raise InvalidInput(f"{'; '.join(parts)}; expected {', '.join(map(repr, expected))}")


def _as_array(label: str, value: object) -> Array:
    try:
        return np.asarray(value)
    except (ValueError, TypeError) as exc:
        raise InvalidInput(f"{label}: not a rectangular array ({exc})") from exc


def shape_matches(declared: tuple[int, ...], actual: tuple[int, ...]) -> bool:
    """Same rank, and every declared size is -1 (any) or equal."""
    if declared == actual:
        return True
    if len(declared) != len(actual):
        return False
    return all(want in (-1, got) for want, got in zip(declared, actual, strict=True))


def _check_finite(label: str, array: Array) -> None:
    if array.dtype.kind in "fc" and not np.isfinite(array).all():
        raise InvalidInput(f"{label}: NaN or Inf values are not allowed")


def _describe(dtype: np.dtype[Any]) -> str:
    return {"U": "str", "S": "bytes", "O": "object"}.get(dtype.kind, dtype.name)
