"""Wire codecs of ``POST /predict``: JSON and msgpack bodies <-> numpy rows.

Requests are ``{"instances": [...]}``, one entry per row (the TF-Serving / KServe v1
convention); responses are ``{"predictions": [...]}``. Tensors travel in one of three styles,
and a msgpack response mirrors the style of its request:

- ``LISTS``: nested lists of numbers, the only style JSON can carry;
- ``BINARY`` (msgpack): ``{"dtype": "float32", "shape": [B, ...], "data": <bin>}``, read with
  ``np.frombuffer`` (read-only, no copy);
- ``MSGPACK_NUMPY`` (msgpack): the maps the ``msgpack_numpy`` package writes, so its clients
  work unchanged. Object and structured arrays, which that package pickles, are refused and
  never unpickled.

A row is one ndarray, or a map name -> ndarray for multi-input models. A map counts as a
tensor when it has the keys of one (``dtype``/``shape``/``data`` or ``nd``/``type``/``data``),
so those names cannot be used as model input names in msgpack.

``decode_predict`` raises only ``MalformedRequest``, ``UnsupportedMediaType`` and
``InvalidInput``, whatever the body holds. Turning instances into rows is `batchserve.server.rows`;
the tensor maps themselves are `batchserve.server.tensors`.
"""

from __future__ import annotations

import enum
import functools
import itertools
from dataclasses import dataclass
from typing import Any, Final, TypeAlias

import msgpack
import numpy as np
import orjson
from numpy.typing import NDArray

from ...errors import InvalidInput, MalformedRequest, TooManyItems, UnsupportedMediaType
from .bounds import CHUNK, DEFAULT_LIMITS, Body, DecodeLimits, as_array, load_json, load_msgpack
from .rows import Row, RowDecoder, check_nesting
from .tensors import (
    MAX_NESTING,
    TENSOR_KINDS,
    TensorStyle,
    as_binary,
    as_list,
    as_msgpack_numpy,
)

__all__ = [
    "JSON_MEDIA_TYPE",
    "MAX_NESTING",
    "MSGPACK_MEDIA_TYPE",
    "DecodedRequest",
    "Row",
    "TensorStyle",
    "WireFormat",
    "decode_predict",
    "encode_error",
    "encode_predict",
    "request_format",
    "response_format",
]

Array: TypeAlias = NDArray[Any]


class WireFormat(enum.StrEnum):
    """The encoding of a request or response body."""

    JSON = "json"
    MSGPACK = "msgpack"


JSON_MEDIA_TYPE: Final = "application/json"
MSGPACK_MEDIA_TYPE: Final = "application/msgpack"

_FORMATS: Final[dict[str, WireFormat]] = {
    JSON_MEDIA_TYPE: WireFormat.JSON,
    MSGPACK_MEDIA_TYPE: WireFormat.MSGPACK,
    "application/x-msgpack": WireFormat.MSGPACK,
}
_WILDCARDS: Final = frozenset({"*/*", "application/*"})


@dataclass(slots=True)
class DecodedRequest:
    """A decoded predict request.

    ``rows`` holds one entry per instance, in order. ``batch`` is set when all rows came as one
    rectangular ndarray; then ``rows[i]`` is the view ``batch[i, ...]``.
    """

    rows: list[Row]
    fmt: WireFormat
    style: TensorStyle
    batch: Array | None

    @property
    def finite(self) -> bool:
        """Every number is finite: JSON has no NaN or Infinity, and the conversions to the
        model's dtype refuse overflow. msgpack floats may be NaN or Inf."""
        return self.fmt is WireFormat.JSON


def request_format(content_type: str | None) -> WireFormat:
    """The wire format of a request body, from its ``Content-Type`` header.

    A missing or empty header means JSON; parameters such as ``; charset=utf-8`` and letter
    case are ignored.

    Raises:
        UnsupportedMediaType: for any other media type; the message names the accepted ones.
    """
    if not content_type:
        return WireFormat.JSON
    fmt = _FORMATS.get(content_type.partition(";")[0].strip().lower())
    if fmt is None:
        raise UnsupportedMediaType(
            f"unsupported content type {content_type[:100]!r}; send one of: {', '.join(_FORMATS)}"
        )
    return fmt


def response_format(request_fmt: WireFormat, accept: str | None) -> WireFormat:
    """The format to answer in: the best supported type of ``accept``, else ``request_fmt``.

    Wildcards, a missing header, or one naming nothing supported all mean ``request_fmt``.
    Higher ``q`` wins, ties go to the earlier entry, ``q=0`` excludes a type.
    """
    if not accept:
        return request_fmt
    # Only short values are cached: a cache keyed by whatever a client sends would keep it.
    choice = _cached_choice(accept) if len(accept) <= _CACHED_ACCEPT else _accept_choice(accept)
    return request_fmt if choice is None else choice


_CACHED_ACCEPT: Final = 128


@functools.lru_cache(maxsize=64)
def _cached_choice(accept: str) -> WireFormat | None:
    return _accept_choice(accept)


def _accept_choice(accept: str) -> WireFormat | None:
    best: WireFormat | None = None
    best_q = 0.0
    for entry in accept.split(","):
        media, _, params = entry.partition(";")
        media = media.strip().lower()
        q = _quality(params)
        if q > best_q and (media in _FORMATS or media in _WILDCARDS):
            best, best_q = _FORMATS.get(media), q
    return best


def _quality(params: str) -> float:
    for param in params.split(";"):
        name, _, value = param.partition("=")
        if name.strip().lower() == "q":
            try:
                return float(value)
            except ValueError:
                return 0.0
    return 1.0


def decode_predict(
    body: Body,
    content_type: str | None,
    *,
    dtype: np.dtype[Any] | None = None,
    limits: DecodeLimits = DEFAULT_LIMITS,
) -> DecodedRequest:
    """Decode a ``/predict`` body into rows.

    ``dtype`` is the model's input dtype (single-input models); numbers are converted to it
    in one step, and values it cannot represent are refused: strings, nulls, booleans among
    numbers, floats for integer models, numbers out of its range. Without ``dtype``, booleans,
    numbers and strings keep the dtype numpy infers. Ragged instances become per-row arrays
    (``batch`` is None). Binary and msgpack-numpy tensors are read-only, uncopied views of
    the bin payloads msgpack returns.

    What the body may make the decoder build is bounded by `limits` (`app.server.wire.bounds`):
    more rows than ``limits.rows`` are refused as soon as they are counted, before any row
    is converted.

    Raises:
        UnsupportedMediaType: the content type is neither JSON nor msgpack.
        PayloadTooLarge: a body decoded value by value is over its limit; `TooManyItems`,
            more rows than the queue can ever hold.
        MalformedRequest: the body does not parse, is not a map with an ``instances`` key, or
            ``instances`` is neither a list nor (msgpack) a tensor map.
        InvalidInput: empty instances, unusable values, ragged rows, nesting deeper than
            ``MAX_NESTING``, a bad tensor map (unknown dtype, bad shape, wrong data length).
    """
    fmt = request_format(content_type)
    target = None if dtype is None else np.dtype(dtype)
    if fmt is WireFormat.JSON:
        instances = _instances(load_json(body, limits))
        _check_rows(instances, limits)
        # JSON numbers never hold a 'u' or an 'l' while every true, false and null does; and
        # a body whose only quotes are those of "instances" holds no strings. These memchr
        # scans let plain numeric bodies skip the slower checks.
        no_literals = b"u" not in body and b"l" not in body
        numbers_only = no_literals and _two_quotes(body)
        if numbers_only and target is not None and target.kind == "f":
            plain = _float_batch(instances, target)
            if plain is not None:
                return DecodedRequest(list(plain), fmt, TensorStyle.LISTS, plain)
        decoder = RowDecoder(
            target, tensors=False, may_hold_bool=not no_literals, numbers_only=numbers_only
        )
    else:
        instances = _instances(load_msgpack(body, limits))
        _check_rows(instances, limits)
        decoder = RowDecoder(target, tensors=True, may_hold_bool=True, numbers_only=False)
    batch: Array | None
    if isinstance(instances, dict) and decoder.tensors:
        rows, batch = decoder.whole(instances, limits.rows)
    elif isinstance(instances, list):
        if not instances:
            raise InvalidInput("'instances' must be a non-empty list")
        rows, batch = decoder.rows(instances)
    else:
        raise MalformedRequest("'instances' must be a list, or in msgpack a tensor map")
    return DecodedRequest(rows, fmt, decoder.style, batch)


def _float_batch(instances: Any, target: np.dtype[Any]) -> Array | None:
    """The common body, a list of equally long lists of plain numbers, as one float array in
    one step; None for anything else, which the general decoder handles and explains."""
    if type(instances) is not list or not instances or type(instances[0]) is not list:
        return None
    size, width = len(instances), len(instances[0])
    flat = width > 0 and size * width <= CHUNK and type(instances[0][0]) is not list
    if flat and size > 1:
        flat = all(type(row) is list and len(row) == width for row in instances)
    if not flat:
        check_nesting(instances, "'instances'")
    try:
        with np.errstate(over="raise"):
            if flat:  # rows of numbers: a quarter fewer instructions than np.asarray
                values = instances[0] if size == 1 else itertools.chain.from_iterable(instances)
                return np.fromiter(values, target, size * width).reshape(size, width)
            return as_array(instances, target)
    except (ValueError, TypeError):
        return None  # a value that is no number: a list deeper down, a ragged row
    except (OverflowError, FloatingPointError) as exc:
        raise InvalidInput(f"'instances' holds a number out of range for {target.name}") from exc


def _two_quotes(body: Body) -> bool:
    second = body.find(b'"', body.find(b'"') + 1)
    return second != -1 and body.find(b'"', second + 1) == -1


def _check_rows(instances: Any, limits: DecodeLimits) -> None:
    if type(instances) is list and len(instances) > limits.rows:
        raise TooManyItems(
            f"{len(instances)} instances can never fit: max_queue_size={limits.rows}"
        )


def _instances(doc: Any) -> Any:
    if isinstance(doc, dict):
        for key in ("instances", b"instances"):
            if key in doc:
                return doc[key]
    raise MalformedRequest("body must be a map with an 'instances' key")


def encode_predict(
    predictions: Array | list[Any], fmt: WireFormat, style: TensorStyle
) -> tuple[bytes, str]:
    """Encode ``{"predictions": ...}``; returns ``(body, content_type)``.

    ``predictions`` is one stacked ndarray ``(B, ...)`` or a list with one value per row
    (ndarrays, numbers, or maps name -> value for multi-output models). JSON writes numbers
    (NaN and infinities become null). Msgpack follows ``style``: ``LISTS`` writes numbers,
    ``BINARY`` writes one ``{"dtype", "shape", "data"}`` map when the predictions stack into
    one numeric ndarray and such maps per array otherwise, ``MSGPACK_NUMPY`` writes arrays
    the ``msgpack_numpy`` package decodes. Non-numeric arrays (labels) are written as lists.

    Raises:
        TypeError: a prediction holds a value the format cannot carry (e.g. complex in JSON).
    """
    if fmt is WireFormat.JSON:
        return _dump_json({"predictions": predictions}), JSON_MEDIA_TYPE
    if isinstance(predictions, list) and style is TensorStyle.BINARY:
        stacked = _stacked(predictions)
        payload: Any = predictions if stacked is None else stacked
    elif isinstance(predictions, np.ndarray) and style is TensorStyle.LISTS:
        payload = predictions.tolist()
    else:
        payload = predictions
    body = msgpack.packb({"predictions": payload}, default=_MSGPACK_DEFAULTS[style])
    return body, MSGPACK_MEDIA_TYPE


def encode_error(message: str, code: str, fmt: WireFormat = WireFormat.JSON) -> tuple[bytes, str]:
    """Encode ``{"error": message, "code": code}``; returns ``(body, content_type)``."""
    doc = {"error": message, "code": code}
    if fmt is WireFormat.JSON:
        return orjson.dumps(doc), JSON_MEDIA_TYPE
    return msgpack.packb(doc), MSGPACK_MEDIA_TYPE


def _dump_json(doc: Any) -> bytes:
    try:
        return orjson.dumps(doc, default=as_list, option=orjson.OPT_SERIALIZE_NUMPY)
    except orjson.JSONEncodeError:
        # orjson rejects some arrays (non-native byte order) outright instead of asking
        # `default`; those go through plain Python values.
        return orjson.dumps(_as_builtins(doc))


def _as_builtins(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {key: _as_builtins(value) for key, value in obj.items()}
    if isinstance(obj, list | tuple):
        return [_as_builtins(value) for value in obj]
    if isinstance(obj, np.ndarray | np.generic):
        return obj.tolist()
    return obj


def _stacked(rows: list[Any]) -> Array | None:
    """The rows as one ndarray if all are numeric arrays of one shape and dtype."""
    if not rows or not isinstance(first := rows[0], np.ndarray | np.generic):
        return None
    if first.dtype.kind not in TENSOR_KINDS:
        return None
    for row in rows:
        if not isinstance(row, np.ndarray | np.generic):
            return None
        if row.shape != first.shape or row.dtype != first.dtype:
            return None
    return np.stack(rows)


_MSGPACK_DEFAULTS: Final = {
    TensorStyle.LISTS: as_list,
    TensorStyle.BINARY: as_binary,
    TensorStyle.MSGPACK_NUMPY: as_msgpack_numpy,
}
