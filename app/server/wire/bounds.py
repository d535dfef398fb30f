"""What a body may make the decoder build, bounded by the body's own size before it is built.

Decoding JSON or msgpack lists creates one Python object per value, and numpy then converts
them one by one: tens of bytes of memory and a fraction of a microsecond of held GIL per byte
received, where a binary tensor costs one copy. So, beside the body limit itself:

- bodies decoded value by value may be at most `DecodeLimits.elementwise_bytes` (JSON) or
  carry at most `DecodeLimits.elementwise_values` values in lists (msgpack; binary tensors do
  not count);
- arrays and objects (the costliest values: an empty list is one byte of msgpack and 56 bytes
  of Python) are counted before (JSON) or while (msgpack) they are built, and refused past
  `DecodeLimits.containers`;
- a list longer than `CHUNK` is converted to numpy in slices, so a thread decoding a large
  body hands the GIL back to the event loop between slices.

Small bodies skip the counting: whatever they build is bounded by a small constant.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final, TypeAlias

import msgpack
import numpy as np
import orjson
from numpy.typing import NDArray

from ...errors import InvalidInput, MalformedRequest, PayloadTooLarge

Body: TypeAlias = bytes | bytearray
"""A request body as a door hands it over (uvicorn's is the bytearray it was read into)."""
SMALL_BODY: Final = 64 * 1024
"""Bodies up to this size are decoded without counting (and on the event loop)."""
CHUNK: Final = 1 << 16
"""Values converted to numpy in one call, at most (a slice of a longer list)."""
_BYTES_PER_CONTAINER: Final = 64
MAX_ELEMENTS: Final = 2**31 - 1
"""Most elements a declared tensor shape may describe, zero dimensions counted as one."""


@dataclass(frozen=True, slots=True)
class DecodeLimits:
    """Per-request decoding bounds, from the settings.

    ``elementwise_bytes``: the largest body decoded value by value, an eighth of the body
    limit. ``elementwise_values``: the most values a msgpack body may carry in lists, one
    per 4 of those bytes (msgpack spends as little as one byte on a value that costs 8 to 32
    in Python and numpy).
    """

    body_bytes: int  # any body (max_body_bytes)
    rows: int  # rows one request may carry (the queue's capacity)
    elementwise_bytes: int = field(init=False)
    elementwise_values: int = field(init=False)

    def __post_init__(self) -> None:
        elementwise = max(1024, self.body_bytes // 8)
        object.__setattr__(self, "elementwise_bytes", elementwise)  # frozen: set once here
        object.__setattr__(self, "elementwise_values", elementwise // 4)

    def containers(self, size: int) -> int:
        """Arrays and objects a body of `size` bytes may hold: one per row, and one per
        `_BYTES_PER_CONTAINER` bytes on top."""
        return self.rows + size // _BYTES_PER_CONTAINER


DEFAULT_LIMITS: Final = DecodeLimits(16 * 1024 * 1024, 10_000)
"""The limits of the default settings."""


def check_elementwise_size(size: int, limits: DecodeLimits, what: str) -> None:
    """Refuse a value-by-value body over `limits.elementwise_bytes`."""
    if size > limits.elementwise_bytes:
        raise PayloadTooLarge(
            f"a {what} body of {size} bytes exceeds {limits.elementwise_bytes} bytes, the limit"
            " for bodies decoded value by value (an eighth of max_body_bytes); send large"
            " tensors as binary (a msgpack binary tensor, or V2 binary data)"
        )


def load_json(body: Body | memoryview, limits: DecodeLimits, what: str = "JSON") -> Any:
    """Parse a JSON document within the bounds (module docstring)."""
    size = len(body)
    if size > limits.elementwise_bytes:
        check_elementwise_size(size, limits, what)
    if size > SMALL_BODY:
        data = bytes(body) if isinstance(body, memoryview) else body
        containers = data.count(b"[") + data.count(b"{")  # brackets in strings count too
        _check_containers(containers, size, limits)
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise MalformedRequest(f"body is not valid {what}: {exc}") from exc


def load_msgpack(body: Body, limits: DecodeLimits) -> Any:
    """Unpack a msgpack document within the bounds (module docstring): past `SMALL_BODY`,
    arrays and maps are counted as they are built, and lists of values count against
    `elementwise_bytes` (binary tensors do not)."""
    size = len(body)
    try:
        if size <= SMALL_BODY:
            return msgpack.unpackb(body)
        counter = _Counter(limits, size)
        return msgpack.unpackb(
            body,
            list_hook=counter.array,
            object_hook=counter.map,
            max_array_len=limits.elementwise_values,
            max_map_len=limits.containers(size),
        )
    except (InvalidInput, PayloadTooLarge):
        raise
    except ValueError as exc:
        # A limit of ours (large bodies only; msgpack's own, for small ones, just means the
        # body is shorter than it says).
        if size <= SMALL_BODY or "exceeds max_" not in str(exc):
            reason = str(exc) or type(exc).__name__
            raise MalformedRequest(f"body is not valid msgpack: {reason}") from exc
        raise PayloadTooLarge(
            f"the body declares an array or map longer than this body may hold ({exc})"
        ) from exc
    except (TypeError, msgpack.UnpackException) as exc:
        reason = str(exc) or type(exc).__name__
        raise MalformedRequest(f"body is not valid msgpack: {reason}") from exc


class _Counter:
    """msgpack hooks that count what is built and stop the unpacking past the bounds."""

    __slots__ = ("_containers", "_left", "_limits", "_size", "_values")

    def __init__(self, limits: DecodeLimits, size: int) -> None:
        self._limits = limits
        self._size = size
        self._containers = limits.containers(size)
        self._values = limits.elementwise_values
        self._left = self._containers

    def array(self, values: list[Any]) -> list[Any]:
        self._tick()
        self._values -= len(values)
        if self._values < 0:
            check_elementwise_size(self._size, self._limits, "msgpack lists")
        return values

    def map(self, values: dict[Any, Any]) -> dict[Any, Any]:
        self._tick()
        return values

    def _tick(self) -> None:
        self._left -= 1
        if self._left < 0:
            _check_containers(self._containers + 1, self._size, self._limits)


def _check_containers(count: int, size: int, limits: DecodeLimits) -> None:
    allowed = limits.containers(size)
    if count > allowed:
        raise InvalidInput(
            f"the body nests more than {allowed} arrays or objects for its {size} bytes"
            f" (at most one per row plus one per {_BYTES_PER_CONTAINER} bytes); send tensors"
            " as flat rows or as binary"
        )


def check_shape(shape: Sequence[int], where: str) -> None:
    """Refuse a declared shape describing more than `MAX_ELEMENTS` elements when its zero
    dimensions are counted as one: no body can carry it, and with a zero next to huge
    dimensions numpy itself refuses to make the (empty) array."""
    if math.prod(dim or 1 for dim in shape) > MAX_ELEMENTS:
        shown = ", ".join(map(str, shape[:8])) + (", ..." if len(shape) > 8 else "")
        raise InvalidInput(f"{where}: shape [{shown}] describes too many elements")


def as_array(values: Any, dtype: np.dtype[Any] | None = None) -> NDArray[Any]:
    """``np.asarray(values, dtype)``, converting a long list a slice of about `CHUNK` values
    at a time into one array allocated once. Raises what `np.asarray` raises (a ragged list:
    ``ValueError``)."""
    if type(values) is not list or not values:
        return np.asarray(values, dtype=dtype)
    size = len(values)
    first = values[0]
    per_item = len(first) if type(first) is list else 1
    if size * per_item <= CHUNK:  # the usual request: one conversion
        return np.asarray(values, dtype=dtype)
    slices: list[tuple[int, int]]
    if per_item > CHUNK and size <= CHUNK:  # a few long lists: one at a time

        def convert(lo: int, hi: int) -> NDArray[Any]:
            return as_array(values[lo], dtype)[np.newaxis]

        slices = [(i, i + 1) for i in range(size)]
    else:
        step = max(1, CHUNK // max(per_item, 1))
        if step >= size:
            return np.asarray(values, dtype=dtype)

        def convert(lo: int, hi: int) -> NDArray[Any]:
            return np.asarray(values[lo:hi], dtype=dtype)

        slices = [(lo, min(lo + step, size)) for lo in range(0, size, step)]
    out: NDArray[Any] | None = None
    for lo, hi in slices:
        part = convert(lo, hi)
        if out is None:
            out = np.empty((size, *part.shape[1:]), dtype=part.dtype)
        elif part.shape[1:] != out.shape[1:]:
            raise ValueError("ragged: slices of different shapes")
        elif (wider := np.result_type(out.dtype, part.dtype)) != out.dtype:
            out = out.astype(wider)  # e.g. integers first, then a float
        out[lo:hi] = part
    assert out is not None
    return out
