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
``InvalidInput``, whatever the body holds.
"""

from __future__ import annotations

import enum
import functools
import math
import re
from dataclasses import dataclass
from typing import Any, Final, TypeAlias

import msgpack
import numpy as np
import orjson
from numpy.typing import NDArray

from app.errors import InvalidInput, MalformedRequest, UnsupportedMediaType

Array: TypeAlias = NDArray[Any]
Row: TypeAlias = NDArray[Any] | dict[str, NDArray[Any]]


class WireFormat(enum.StrEnum):
    """The encoding of a request or response body."""

    JSON = "json"
    MSGPACK = "msgpack"


class TensorStyle(enum.StrEnum):
    """How a request carried its tensors; msgpack responses answer in the same style."""

    LISTS = "lists"
    BINARY = "binary"
    MSGPACK_NUMPY = "msgpack_numpy"


JSON_MEDIA_TYPE: Final = "application/json"
MSGPACK_MEDIA_TYPE: Final = "application/msgpack"
MAX_NESTING: Final = 32
"""Deepest list nesting (and most tensor dimensions) accepted, the row dimension included."""

_FORMATS: Final[dict[str, WireFormat]] = {
    JSON_MEDIA_TYPE: WireFormat.JSON,
    MSGPACK_MEDIA_TYPE: WireFormat.MSGPACK,
    "application/x-msgpack": WireFormat.MSGPACK,
}
_WILDCARDS: Final = frozenset({"*/*", "application/*"})
_MAX_DIM: Final = 2**31 - 1  # keeps numpy away from absurd zero-size shapes
_TENSOR_KINDS: Final = "biufc"
_DTYPE_NAME: Final = re.compile(
    r"[<>|=]?[biufc]\d{1,2}|bool|u?int(8|16|32|64)|float(16|32|64)|complex(64|128)"
)
# Input kinds each model dtype kind takes; anything else cannot be represented faithfully.
_CASTS: Final = {"f": "iuf", "c": "iufc", "i": "iu", "u": "iu", "b": "b", "U": "U", "O": "U"}
_KIND_NAMES: Final = {
    "b": "booleans",
    "i": "integers",
    "u": "integers",
    "f": "floating-point numbers",
    "c": "complex numbers",
    "U": "strings",
    "S": "bytes",
}
_NOT_NUMBERS: Final = "values that are not numbers (null, objects, mixed types or huge integers)"


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
    choice = _accept_choice(accept) if accept else None
    return request_fmt if choice is None else choice


@functools.lru_cache(maxsize=128)
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
    body: bytes, content_type: str | None, *, dtype: np.dtype[Any] | None = None
) -> DecodedRequest:
    """Decode a ``/predict`` body into rows.

    ``dtype`` is the model's input dtype (single-input models); numbers are converted to it
    in one step, and values it cannot represent are refused: strings, nulls, booleans among
    numbers, floats for integer models, numbers out of its range. Without ``dtype``, booleans,
    numbers and strings keep the dtype numpy infers. Ragged instances become per-row arrays
    (``batch`` is None). Binary and msgpack-numpy tensors are read-only, uncopied views of
    the bin payloads msgpack returns.

    Raises:
        UnsupportedMediaType: the content type is neither JSON nor msgpack.
        MalformedRequest: the body does not parse, is not a map with an ``instances`` key, or
            ``instances`` is neither a list nor (msgpack) a tensor map.
        InvalidInput: empty instances, unusable values, ragged rows, nesting deeper than
            ``MAX_NESTING``, a bad tensor map (unknown dtype, bad shape, wrong data length).
    """
    fmt = request_format(content_type)
    target = None if dtype is None else np.dtype(dtype)
    if fmt is WireFormat.JSON:
        instances = _instances(_load_json(body))
        # JSON numbers never hold a 'u' or an 'l' while every true, false and null does; and
        # a body whose only quotes are those of "instances" holds no strings. These memchr
        # scans let plain numeric bodies skip the slower checks.
        no_literals = b"u" not in body and b"l" not in body
        numbers_only = no_literals and _two_quotes(body)
        if numbers_only and target is not None and target.kind == "f":
            plain = _float_batch(instances, target)
            if plain is not None:
                return DecodedRequest(list(plain), fmt, TensorStyle.LISTS, plain)
        decoder = _RowDecoder(
            target, tensors=False, may_hold_bool=not no_literals, numbers_only=numbers_only
        )
    else:
        instances = _instances(_load_msgpack(body))
        decoder = _RowDecoder(target, tensors=True, may_hold_bool=True, numbers_only=False)
    batch: Array | None
    if isinstance(instances, dict) and decoder.tensors:
        rows, batch = decoder.whole(instances)
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
    _check_nesting(instances, "'instances'")
    try:
        with np.errstate(over="raise"):
            batch = np.asarray(instances, dtype=target)
    except (ValueError, TypeError):
        return None
    except (OverflowError, FloatingPointError) as exc:
        raise InvalidInput(f"'instances' holds a number out of range for {target.name}") from exc
    return batch


def _two_quotes(body: bytes) -> bool:
    second = body.find(b'"', body.find(b'"') + 1)
    return second != -1 and body.find(b'"', second + 1) == -1


def _load_json(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise MalformedRequest(f"body is not valid JSON: {exc}") from exc


def _load_msgpack(body: bytes) -> Any:
    try:
        return msgpack.unpackb(body)
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        raise MalformedRequest(f"body is not valid msgpack: {exc}") from exc


def _instances(doc: Any) -> Any:
    if isinstance(doc, dict):
        for key in ("instances", b"instances"):
            if key in doc:
                return doc[key]
    raise MalformedRequest("body must be a map with an 'instances' key")


@dataclass(slots=True)
class _RowDecoder:
    """Turns parsed instances into rows and remembers the tensor style it met."""

    target: np.dtype[Any] | None
    tensors: bool  # maps may be binary or msgpack-numpy tensors (msgpack bodies)
    may_hold_bool: bool
    numbers_only: bool  # the instances hold only numbers and lists (a JSON fast path)
    style: TensorStyle = TensorStyle.LISTS

    def whole(self, instances: dict[Any, Any]) -> tuple[list[Row], Array]:
        fields = _tensor_fields(instances)
        if fields is None:
            raise MalformedRequest("'instances' map is not a tensor (dtype, shape, data)")
        batch = self.tensor(fields, "'instances'")
        if batch.ndim == 0 or len(batch) == 0:
            raise InvalidInput("'instances' must be a non-empty list (a tensor with rows)")
        return _split(batch), batch

    def rows(self, instances: list[Any]) -> tuple[list[Row], Array | None]:
        if type(instances[0]) is not dict:
            batch = self.array_or_none(instances, "'instances'")
            if batch is not None:
                return _split(batch), batch
        elif (named := self.named_columns(instances)) is not None:
            return named, None
        rows = [self.row(item, f"instance {i}") for i, item in enumerate(instances)]
        if len({type(row) for row in rows}) > 1:
            raise InvalidInput("'instances' mix named inputs (objects) with plain arrays")
        return rows, None

    def named_columns(self, instances: list[Any]) -> list[Row] | None:
        """Rows of named inputs converted one column at a time; None unless all alike."""
        first: dict[Any, Any] = instances[0]
        if not first or (self.tensors and _tensor_fields(first) is not None):
            return None
        keys = first.keys()
        if any(type(row) is not dict or row.keys() != keys for row in instances):
            return None
        if any(type(value) is dict for value in first.values()):
            return None
        columns: dict[str, Array] = {}
        for key in keys:
            name = _input_name(key, "instance 0")
            column = self.array_or_none([row[key] for row in instances], f"input {name!r}")
            if column is None:
                return None
            columns[name] = column
        return [{name: col[i, ...] for name, col in columns.items()} for i in range(len(instances))]

    def row(self, item: Any, where: str) -> Row:
        if type(item) is not dict:
            return self.array(item, where)
        fields = _tensor_fields(item) if self.tensors else None
        if fields is not None:
            return self.tensor(fields, where)
        if not item:
            raise InvalidInput(f"{where} is an empty object")
        row: dict[str, Array] = {}
        for key, value in item.items():
            name = _input_name(key, where)
            row[name] = self.value(value, f"{where} input {name!r}")
        return row

    def value(self, item: Any, where: str) -> Array:
        if type(item) is not dict:
            return self.array(item, where)
        fields = _tensor_fields(item) if self.tensors else None
        if fields is None:
            raise InvalidInput(f"{where} must be an array, not an object")
        return self.tensor(fields, where)

    def array(self, values: Any, where: str) -> Array:
        arr = self.array_or_none(values, where)
        if arr is None:
            raise InvalidInput(f"{where} is ragged: nested lists of different lengths")
        return arr

    def array_or_none(self, values: Any, where: str) -> Array | None:
        """``values`` as one ndarray in the target dtype, or None if they are ragged."""
        _check_nesting(values, where)
        try:
            arr = self._convert(values)
        except ValueError:
            return None
        except (OverflowError, FloatingPointError) as exc:
            model = "the model" if self.target is None else self.target.name
            raise InvalidInput(f"{where} holds a number out of range for {model}") from exc
        if self.may_hold_bool and arr.dtype.kind in "iuf" and _holds_bool(values, arr):
            raise InvalidInput(f"{where} mixes booleans with numbers")
        return _coerce(arr, self.target, where)

    def _convert(self, values: Any) -> Array:
        target = self.target
        if self.numbers_only and target is not None and target.kind == "f":
            try:
                with np.errstate(over="raise"):
                    return np.asarray(values, dtype=target)
            except TypeError:
                pass  # an object such as {} sits among the numbers: inferred as such below
        return np.asarray(values)

    def tensor(self, fields: dict[str, Any], where: str) -> Array:
        if "nd" in fields:
            arr, style = _msgpack_numpy_array(fields, where), TensorStyle.MSGPACK_NUMPY
        else:
            arr, style = _binary_array(fields, where), TensorStyle.BINARY
        if self.style is TensorStyle.LISTS:
            self.style = style
        return _coerce(arr, self.target, where)


def _split(batch: Array) -> list[Row]:
    if batch.ndim > 1:
        return list(batch)
    return [batch[i, ...] for i in range(len(batch))]  # 0-d views, not numpy scalars


def _check_nesting(values: Any, where: str) -> None:
    """Refuse nesting deeper than MAX_NESTING along the first path.

    Rectangular data is as deep on every path; deeper paths elsewhere make it ragged, which
    numpy reports without recursing far.
    """
    node, depth = values, 0
    while type(node) is list:
        depth += 1
        if depth > MAX_NESTING:
            raise InvalidInput(f"{where} is nested deeper than {MAX_NESTING} levels")
        if not node:
            return
        node = node[0]


def _holds_bool(values: Any, arr: Array) -> bool:
    """Whether ``values`` hold a bool among numbers (numpy silently reads True as 1)."""
    if not (np.any(arr == 0) or np.any(arr == 1)):
        return False  # a bool always lands on 0 or 1
    if type(values) is not list:
        return type(values) is bool
    pending = [values]
    while pending:
        seq = pending.pop()
        types = set(map(type, seq))
        if bool in types:
            return True
        if list in types:
            pending.extend(x for x in seq if type(x) is list)
    return False


def _coerce(arr: Array, target: np.dtype[Any] | None, where: str) -> Array:
    """``arr`` in the ``target`` dtype, refusing values it cannot represent."""
    kind = arr.dtype.kind
    if target is None:
        if kind not in "biufcU":
            raise InvalidInput(f"{where} holds {_KIND_NAMES.get(kind, _NOT_NUMBERS)}")
        return arr
    if arr.dtype == target:
        return arr
    if kind not in _CASTS.get(target.kind, ""):
        what = _KIND_NAMES.get(kind, _NOT_NUMBERS)
        raise InvalidInput(f"{where} holds {what}; the model takes {target.name}")
    if (
        target.kind in "iu"
        and arr.size
        and (arr.min() < np.iinfo(target).min or arr.max() > np.iinfo(target).max)
    ):
        raise InvalidInput(f"{where} holds integers out of range for {target.name}")
    try:
        with np.errstate(over="raise", invalid="raise"):
            return arr.astype(target)
    except FloatingPointError as exc:
        raise InvalidInput(f"{where} holds numbers out of range for {target.name}") from exc


def _input_name(key: Any, where: str) -> str:
    if type(key) is str:
        return key
    if type(key) is bytes:
        try:
            return key.decode()
        except UnicodeDecodeError:
            pass
    raise InvalidInput(f"{where} has an input name that is not UTF-8 text")


def _tensor_fields(m: dict[Any, Any]) -> dict[str, Any] | None:
    """``m`` with text keys if it is a binary or msgpack-numpy tensor map, else None."""
    if not 3 <= len(m) <= 5 or ("data" not in m and b"data" not in m):
        return None
    fields = {k.decode("utf-8", "replace") if type(k) is bytes else k: v for k, v in m.items()}
    keys = fields.keys()
    if keys >= {"nd", "type", "data"} or keys >= {"dtype", "shape", "data"}:
        return fields
    return None


def _binary_array(fields: dict[str, Any], where: str) -> Array:
    dtype = _wire_dtype(fields["dtype"], where)
    return _from_buffer(fields["data"], dtype, _wire_shape(fields["shape"], where), where)


def _msgpack_numpy_array(fields: dict[str, Any], where: str) -> Array:
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
    return dtype if dtype.kind in _TENSOR_KINDS else None


def _wire_shape(value: Any, where: str) -> tuple[int, ...]:
    if (
        type(value) is not list
        or len(value) > MAX_NESTING
        or not all(type(dim) is int and 0 <= dim <= _MAX_DIM for dim in value)
    ):
        raise InvalidInput(
            f"{where}: 'shape' must be a list of at most {MAX_NESTING} non-negative integers"
        )
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
        return orjson.dumps(doc, default=_as_list, option=orjson.OPT_SERIALIZE_NUMPY)
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
    if first.dtype.kind not in _TENSOR_KINDS:
        return None
    for row in rows:
        if not isinstance(row, np.ndarray | np.generic):
            return None
        if row.shape != first.shape or row.dtype != first.dtype:
            return None
    return np.stack(rows)


def _as_list(obj: Any) -> Any:
    if isinstance(obj, np.ndarray | np.generic):
        return obj.tolist()
    raise TypeError(f"cannot encode a {type(obj).__name__} prediction")


def _as_binary(obj: Any) -> Any:
    if isinstance(obj, np.ndarray) and obj.dtype.kind in _TENSOR_KINDS:
        arr, data = _wire_bytes(obj)
        return {"dtype": arr.dtype.name, "shape": list(arr.shape), "data": data}
    return _as_list(obj)


def _as_msgpack_numpy(obj: Any) -> Any:
    if isinstance(obj, np.ndarray | np.generic) and obj.dtype.kind in _TENSOR_KINDS:
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
    return _as_list(obj)


def _wire_bytes(arr: Array) -> tuple[Array, memoryview]:
    """``arr`` C-contiguous in native byte order, and a byte view of it (no copy if it was)."""
    arr = np.ascontiguousarray(arr)
    if not arr.dtype.isnative:
        arr = arr.astype(arr.dtype.newbyteorder("="))
    return arr, arr.reshape(-1).view(np.uint8).data


_MSGPACK_DEFAULTS: Final = {
    TensorStyle.LISTS: _as_list,
    TensorStyle.BINARY: _as_binary,
    TensorStyle.MSGPACK_NUMPY: _as_msgpack_numpy,
}
