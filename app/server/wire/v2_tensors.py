"""One tensor's data <-> numpy: JSON ``data`` lists and binary chunks.

Binary data is little-endian, row-major, without padding; BOOL is one byte (0 or 1); each
BYTES element is a 4-byte little-endian unsigned length followed by its bytes. Decoded
numeric tensors are read-only views of the request body (``np.frombuffer``, no copy). BYTES
tensors decode to object arrays holding ``bytes``.
"""

from __future__ import annotations

import math
import struct
from typing import Any, Final

import numpy as np

from ...errors import InvalidInput, ModelError
from ...models.spec import Array
from ...models.validation import cast_checked
from .bounds import as_array
from .rows import holds_bool

_LENGTH: Final = struct.Struct("<I")
_MAX_LENGTH: Final = 2**32 - 1


def from_json(data: Any, dtype: np.dtype[Any], shape: tuple[int, ...], where: str) -> Array:
    """``data`` (flat or nested as ``shape``) as an array of ``shape`` in ``dtype``.

    Numbers are cast under `batchserve.models.validation.cast_checked` (no lossy casts); BOOL takes
    only true/false and BYTES only strings (stored UTF-8 encoded). Raises `InvalidInput`.
    """
    if not isinstance(data, list):
        raise InvalidInput(f"{where}: 'data' must be a list")
    if dtype.kind == "O":
        return _strings(data, shape, where)
    try:
        arr = as_array(data)
    except (ValueError, TypeError, OverflowError):
        raise InvalidInput(f"{where}: 'data' is not a rectangular nested list") from None
    _check_layout(arr.shape, shape, where)
    numeric = arr.dtype.kind in "iuf"
    if arr.size and (
        arr.dtype.kind not in ("b" if dtype.kind == "b" else "iuf")
        or (dtype.kind != "b" and numeric and holds_bool(data, arr))
    ):
        want = "true/false" if dtype.kind == "b" else "numbers"
        raise InvalidInput(f"{where}: 'data' must hold {want} for this datatype")
    return cast_checked(where, arr.reshape(shape), dtype)


def _check_layout(got: tuple[int, ...], shape: tuple[int, ...], where: str) -> None:
    size = math.prod(shape)
    if math.prod(got) != size:
        raise InvalidInput(
            f"{where}: shape {list(shape)} needs {size} elements, 'data' holds {math.prod(got)}"
        )
    if len(got) != 1 and got != shape:
        raise InvalidInput(f"{where}: 'data' is nested as {list(got)}, not as {list(shape)}")


def _strings(data: list[Any], shape: tuple[int, ...], where: str) -> Array:
    try:
        arr = np.array(data, dtype=object)
    except ValueError:
        raise InvalidInput(f"{where}: 'data' is not a rectangular nested list") from None
    _check_layout(arr.shape, shape, where)
    flat = arr.reshape(-1)
    if not all(isinstance(item, str) for item in flat):
        raise InvalidInput(f"{where}: BYTES 'data' must hold strings")
    out = np.empty(len(flat), dtype=object)
    out[:] = [item.encode("utf-8") for item in flat]
    return out.reshape(shape)


def from_binary(
    chunk: memoryview, dtype: np.dtype[Any], shape: tuple[int, ...], where: str
) -> Array:
    """The tensor ``chunk`` holds, shaped ``shape``. Raises `InvalidInput` when the chunk's
    size does not fit the shape and datatype, or a BOOL byte is neither 0 nor 1."""
    count = math.prod(shape)
    if dtype.kind == "O":
        return _bytes_elements(chunk, count, where).reshape(shape)
    expected = count * dtype.itemsize
    if len(chunk) != expected:
        raise InvalidInput(
            f"{where}: the binary data holds {len(chunk)} bytes; shape {list(shape)} of this"
            f" datatype needs {expected}"
        )
    arr = np.frombuffer(chunk, dtype=dtype.newbyteorder("<")).reshape(shape)
    if dtype.kind == "b" and arr.view(np.uint8).max(initial=0) > 1:
        raise InvalidInput(f"{where}: BOOL bytes must be 0 or 1")
    return arr if arr.dtype.isnative else arr.astype(dtype)


def _bytes_elements(chunk: memoryview, count: int, where: str) -> Array:
    if count > len(chunk) // _LENGTH.size:  # each element needs its 4-byte length at least
        raise InvalidInput(
            f"{where}: {count} BYTES elements cannot fit in {len(chunk)} bytes of data"
        )
    out = np.empty(count, dtype=object)
    pos, end = 0, len(chunk)
    for index in range(count):
        if pos + 4 > end:
            raise InvalidInput(f"{where}: BYTES data ends before element {index}")
        (length,) = _LENGTH.unpack_from(chunk, pos)
        pos += 4
        if pos + length > end:
            raise InvalidInput(f"{where}: BYTES element {index} runs past the data")
        out[index] = bytes(chunk[pos : pos + length])
        pos += length
    if pos != end:
        raise InvalidInput(f"{where}: {end - pos} bytes follow the last BYTES element")
    return out


def to_binary(arr: Array, name: str) -> bytes | memoryview:
    """The wire bytes of an output (a view when the array is already little-endian C order).

    Raises `ModelError` when a BYTES output holds something other than str or bytes."""
    if arr.dtype.kind in "OSU":
        parts: list[bytes] = []
        for item in _elements(arr, name):
            parts += (_LENGTH.pack(len(item)), item)
        return b"".join(parts)
    little = np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder("<"))
    return little.reshape(-1).view(np.uint8).data


def to_json(arr: Array, name: str) -> Array | list[Any]:
    """The flat, row-major ``data`` of an output, as orjson serialises it.

    Raises `InvalidInput` for BYTES that are not UTF-8 (they need ``binary_data``)."""
    if arr.dtype.kind not in "OSU":
        return np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder("=")).reshape(-1)
    try:
        return [item.decode("utf-8") for item in _elements(arr, name)]
    except UnicodeDecodeError:
        raise InvalidInput(
            f"output {name!r} holds bytes that are not UTF-8 text; request it with binary_data"
        ) from None


def _elements(arr: Array, name: str) -> list[bytes]:
    out: list[bytes] = []
    for item in arr.reshape(-1).tolist():
        if isinstance(item, str):
            item = item.encode("utf-8")
        if not isinstance(item, bytes):
            raise ModelError(
                f"output {name!r} holds a {type(item).__name__}; BYTES outputs hold str or bytes"
            )
        if len(item) > _MAX_LENGTH:
            raise ModelError(f"output {name!r} holds an element over 4 GiB")
        out.append(item)
    return out
