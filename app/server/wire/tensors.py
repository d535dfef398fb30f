"""Tensor maps in msgpack bodies <-> numpy arrays, without copies where the wire allows.

Two styles: ``{"dtype": "float32", "shape": [...], "data": <bin>}`` (binary) and the maps the
``msgpack_numpy`` package writes (``nd``/``type``/``kind``/``shape``/``data``). Only plain
numeric dtypes are accepted; object and structured arrays, which that package pickles, are
refused and never unpickled. Decoders raise ``InvalidInput`` naming ``where`` in the body.
"""

from __future__ import annotations

import enum
import functools
import math
import re
from typing import Any, Final, TypeAlias

import numpy as np
from numpy.typing import NDArray

from ...errors import InvalidInput
from .bounds import check_shape

Array: TypeAlias = NDArray[Any]


class TensorStyle(enum.StrEnum):
    """How a request carried its tensors; msgpack responses answer in the same style."""

    LISTS = "lists"
    BINARY = "binary"
    MSGPACK_NUMPY = "msgpack_numpy"


MAX_NESTING: Final = 32
"""Deepest list nesting (and most tensor dimensions) accepted, the row dimension included."""
TENSOR_KINDS: Final = "biufc"
"""numpy dtype kinds a tensor map may carry: bool, integers, floats, complex."""

_MAX_DIM: Final = 2**31 - 1  # keeps numpy away from absurd zero-size shapes
_DTYPE_NAME: Final = re.compile(
    r"[<>|=]?[biufc]\d{1,2}|bool|u?int(8|16|32|64)|float(16|32|64)|complex(64|128)"
)


def tensor_fields(m: dict[Any, Any]) -> dict[str, Any] | None:
    """``m`` with text keys if it is a binary or msgpack-numpy tensor map, else None."""
    if not 3 <= len(m) <= 5 or ("data" not in m and b"data" not in m):
        return None
    fields = {k.decode("utf-8", "replace") if type(k) is bytes else k: v for k, v in m.items()}
    keys = fields.keys()
    if keys >= {"nd", "type", "data"} or keys >= {"dtype", "shape", "data"}:
        return fields
    return None


def binary_array(fields: dict[str, Any], where: str) -> Array:
    """The array of a binary tensor map (from `tensor_fields`): a read-only view of its data."""
    dtype = _wire_dtype(fields["dtype"], where)
    return _from_buffer(fields["data"], dtype, _wire_shape(fields["shape"], where), where)


def msgpack_numpy_array(fields: dict[str, Any], where: str) -> Array:
    """The array of a msgpack-numpy tensor map (from `tensor_fields`); object and structured
    arrays are refused."""
    nd = fields["nd"]
    if type(nd) is not bool:
        raise InvalidInput(f"{where}: msgpack-numpy 'nd' must be a boolean")
    if fields.get("kind", b"") not in (b"", ""):
        raise InvalidInput(f"{where}: msgpack-numpy object and structured arrays are refused")
    dtype = _wire_dtype(fields["type"], where)
    shape = _wire_shape(fields.get("shape"), where) if nd else ()
    return _from_buffer(fields["data"], dtype, shape, where)


def _wire_dtype(value: Any, where: str) -> np.dtype[Any]:
    if type(value) is bytes:
        value = value.decode("ascii", "replace")
    dtype = _parse_dtype(value) if type(value) is str and len(value) <= 16 else None
    if dtype is None:
        shown = repr(value[:20]) if type(value) is str else type(value).__name__
        raise InvalidInput(
            f"{where}: unsupported dtype {shown}; use a bool, integer, float or complex "
            "type such as 'float32' or '<f4'"
        )
    return dtype


@functools.lru_cache(maxsize=64)
def _parse_dtype(name: str) -> np.dtype[Any] | None:
    # The pattern admits only plain numeric names, so numpy never sees aliases it deprecates
    # or descriptions of structured, object or sub-array types.
    if not _DTYPE_NAME.fullmatch(name):
        return None
    try:
        dtype = np.dtype(name)
    except TypeError:  # e.g. "i16", "u3"
        return None
    return dtype if dtype.kind in TENSOR_KINDS else None


def _wire_shape(value: Any, where: str) -> tuple[int, ...]:
    if (
        type(value) is not list
        or len(value) > MAX_NESTING
        or not all(type(dim) is int and 0 <= dim <= _MAX_DIM for dim in value)
    ):
        raise InvalidInput(
            f"{where}: 'shape' must be a list of at most {MAX_NESTING} non-negative integers"
        )
    check_shape(value, where)
    return tuple(value)


def _from_buffer(data: Any, dtype: np.dtype[Any], shape: tuple[int, ...], where: str) -> Array:
    """A read-only view of ``data`` (no copy), in native byte order."""
    if type(data) is not bytes:
        raise InvalidInput(f"{where}: 'data' must be msgpack binary")
    expected = math.prod(shape) * dtype.itemsize
    if len(data) != expected:
        raise InvalidInput(
            f"{where}: 'data' holds {len(data)} bytes but shape {list(shape)} of "
            f"{dtype.name} needs {expected}"
        )
    arr = np.frombuffer(data, dtype=dtype).reshape(shape)
    return arr if arr.dtype.isnative else arr.astype(arr.dtype.newbyteorder("="))


def as_binary(obj: Any) -> Any:
    """msgpack ``default`` for the binary style: a numeric ndarray becomes a tensor map."""
    if isinstance(obj, np.ndarray) and obj.dtype.kind in TENSOR_KINDS:
        arr, data = _wire_bytes(obj)
        return {"dtype": arr.dtype.name, "shape": list(arr.shape), "data": data}
    return as_list(obj)


def as_msgpack_numpy(obj: Any) -> Any:
    """msgpack ``default`` writing numeric arrays and scalars as ``msgpack_numpy`` does."""
    if isinstance(obj, np.ndarray | np.generic) and obj.dtype.kind in TENSOR_KINDS:
        arr, data = _wire_bytes(np.asarray(obj))
        if isinstance(obj, np.generic):
            return {b"nd": False, b"type": arr.dtype.str, b"data": data}
        return {
            b"nd": True,
            b"type": arr.dtype.str,
            b"kind": b"",
            b"shape": list(arr.shape),
            b"data": data,
        }
    return as_list(obj)


def _wire_bytes(arr: Array) -> tuple[Array, memoryview]:
    """``arr`` C-contiguous in native byte order, and a byte view of it (no copy if it was)."""
    arr = np.ascontiguousarray(arr)
    if not arr.dtype.isnative:
        arr = arr.astype(arr.dtype.newbyteorder("="))
    return arr, arr.reshape(-1).view(np.uint8).data


def as_list(obj: Any) -> Any:
    """Encoder ``default`` for the lists style: numpy values as plain numbers and lists.

    Raises:
        TypeError: ``obj`` is not a numpy value.
    """
    if isinstance(obj, np.ndarray | np.generic):
        return obj.tolist()
    raise TypeError(f"cannot encode a {type(obj).__name__} prediction")
