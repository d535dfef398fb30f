"""Inference request and response documents of the V2 protocol, with binary tensor data.

A request body is a JSON document, optionally followed by binary tensor chunks: the
``Inference-Header-Content-Length`` header gives the JSON's length, and each input with
``parameters.binary_data_size`` takes the next chunk, in the order the inputs are listed.
With the header at 0 the whole body is one input's bytes (`decode_raw`). Responses mirror
this: outputs asked for as binary follow the JSON header. Decoding raises `MalformedRequest`
(the body cannot be read) or `InvalidInput` (it can, but a tensor is unusable).
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import orjson

from ...errors import InvalidInput, MalformedRequest, ModelError, PayloadTooLarge
from ...models.spec import Array, TensorSpec
from .bounds import DEFAULT_LIMITS, Body, DecodeLimits, check_shape, load_json
from .datatypes import datatype_of, to_numpy
from .v2_tensors import from_binary, from_json, to_binary, to_json

HEADER_LENGTH: Final = "inference-header-content-length"
JSON_TYPE: Final = "application/json"
BINARY_TYPE: Final = "application/octet-stream"
_MAX_RANK: Final = 32
_MAX_DIM: Final = 2**63 - 1
_ENCODINGS: Final = {"gzip": 31, "deflate": 15}  # zlib wbits; HTTP "deflate" is zlib-wrapped


@dataclass(frozen=True, slots=True)
class InputTensor:
    """One decoded request input: its V2 datatype and the whole batch as an array."""

    datatype: str
    array: Array


@dataclass(frozen=True, slots=True)
class RequestedOutput:
    """An output the client asked for; ``binary`` None follows ``binary_data_output``."""

    name: str
    binary: bool | None


@dataclass(frozen=True, slots=True)
class InferRequest:
    """A decoded inference request. ``outputs`` None means every output."""

    id: str | None
    parameters: dict[str, Any]
    inputs: dict[str, InputTensor]
    outputs: tuple[RequestedOutput, ...] | None
    binary_output: bool


@dataclass(frozen=True, slots=True)
class OutputTensor:
    """One response output, whole batch, and whether it travels as binary."""

    name: str
    array: Array
    binary: bool


def decompress(body: Body, encoding: str | None, limit: int) -> Body:
    """``body`` after its ``Content-Encoding`` (identity, gzip or deflate), at most ``limit``
    bytes. Raises `MalformedRequest` for another encoding or corrupt data and
    `PayloadTooLarge` when the inflated body passes ``limit``."""
    name = (encoding or "identity").strip().lower()
    if name == "identity":
        return body
    if name not in _ENCODINGS:
        raise MalformedRequest(
            f"Content-Encoding {name[:20]!r} is not supported; use gzip or deflate"
        )
    inflater = zlib.decompressobj(_ENCODINGS[name])
    try:
        out = inflater.decompress(body, limit + 1)
    except zlib.error as exc:
        raise MalformedRequest(f"the body is not valid {name} data: {exc}") from None
    if len(out) > limit or inflater.unconsumed_tail:
        raise PayloadTooLarge(f"the inflated body exceeds max_body_bytes={limit}")
    if not inflater.eof:
        raise MalformedRequest(f"the {name} body is truncated")
    return out


def header_length(value: str | None, body_size: int) -> int | None:
    """The ``Inference-Header-Content-Length`` as a byte count within the body, or None."""
    if value is None:
        return None
    try:
        length = int(value)
    except ValueError:
        length = -1
    if not 0 <= length <= body_size:
        raise MalformedRequest(
            f"Inference-Header-Content-Length must be a byte count of at most the body's"
            f" {body_size}; got {value[:20]!r}"
        )
    return length


def decode_request(
    body: Body, json_length: int | None, limits: DecodeLimits = DEFAULT_LIMITS
) -> InferRequest:
    """Decode a JSON request, with binary chunks after ``json_length`` bytes when given. The
    JSON part is decoded within `limits` (`batchserve.server.wire.bounds`); binary chunks
    are read without a copy."""
    view = memoryview(body)
    split = len(body) if json_length is None else json_length
    doc = load_json(view[:split], limits)
    doc = _object(doc, "the inference request")
    params = _parameters(doc, "the request")
    binary_output = params.get("binary_data_output", False)
    if not isinstance(binary_output, bool):
        raise InvalidInput("parameter 'binary_data_output' must be a boolean")
    request_id = doc.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise InvalidInput("'id' must be a string")
    inputs = _inputs(doc.get("inputs"), view[split:], json_length is not None)
    return InferRequest(request_id, params, inputs, _outputs(doc.get("outputs")), binary_output)


def decode_raw(body: Body, spec: TensorSpec | None) -> InferRequest:
    """A raw binary request: the body is one row of the model's only input; every output is
    returned as binary. A BYTES input takes the whole body as its single element."""
    if spec is None:
        raise InvalidInput("a raw binary request needs a model that declares exactly one input")
    datatype = datatype_of(spec.np_dtype)
    if datatype is None:
        raise InvalidInput(f"input {spec.name!r} has no V2 datatype")
    dtype = to_numpy(datatype, f"input {spec.name!r}")
    variable = [i for i, dim in enumerate(spec.shape) if dim == -1]
    fixed = math.prod(dim for dim in spec.shape if dim != -1)
    if dtype.kind == "O":
        if fixed != 1:
            raise InvalidInput("a raw binary BYTES request needs an input of one element")
        shape = tuple(1 for _ in spec.shape)
        body = len(body).to_bytes(4, "little") + body
    elif len(variable) > 1 or fixed == 0:
        raise InvalidInput("a raw binary request needs an input with at most one variable dim")
    else:
        dims = list(spec.shape)
        if variable:
            dims[variable[0]] = len(body) // (fixed * dtype.itemsize)
        shape = tuple(dims)
    where = f"input {spec.name!r}"
    array = from_binary(memoryview(body), dtype, (1, *shape), where)
    return InferRequest(None, {}, {spec.name: InputTensor(datatype, array)}, None, True)


def encode_response(
    head: dict[str, Any], outputs: Sequence[OutputTensor]
) -> tuple[bytes, str, list[tuple[str, str]]]:
    """``(body, content type, extra headers)`` of a response: ``head`` plus ``outputs``.

    Raises `ModelError` for an output dtype V2 cannot carry."""
    entries: list[dict[str, Any]] = []
    chunks: list[bytes | memoryview] = []
    for out in outputs:
        datatype = datatype_of(out.array.dtype)
        if datatype is None:
            raise ModelError(
                f"output {out.name!r} has dtype {out.array.dtype.name}, which V2 cannot carry"
            )
        entry: dict[str, Any] = {
            "name": out.name,
            "datatype": datatype,
            "shape": list(out.array.shape),
        }
        if out.binary:
            chunk = to_binary(out.array, out.name)
            entry["parameters"] = {"binary_data_size": len(chunk)}
            chunks.append(chunk)
        else:
            entry["data"] = to_json(out.array, out.name)
        entries.append(entry)
    header = orjson.dumps({**head, "outputs": entries}, option=orjson.OPT_SERIALIZE_NUMPY)
    if not chunks:
        return header, JSON_TYPE, []
    return b"".join([header, *chunks]), BINARY_TYPE, [(HEADER_LENGTH, str(len(header)))]


def _object(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InvalidInput(f"{where} must be a JSON object")
    return value


def _parameters(doc: dict[str, Any], where: str) -> dict[str, Any]:
    params = doc.get("parameters")
    if params is None:
        return {}
    params = _object(params, f"'parameters' of {where}")
    if "shared_memory_region" in params:
        raise InvalidInput(f"{where}: shared memory is not supported; send the data inline")
    return params


def _inputs(raw: Any, tail: memoryview, has_header: bool) -> dict[str, InputTensor]:
    if not isinstance(raw, list) or not raw:
        raise InvalidInput("'inputs' must be a non-empty list")
    inputs: dict[str, InputTensor] = {}
    offset = 0
    for index, item in enumerate(raw):
        item = _object(item, f"input {index}")
        name = item.get("name")
        if not isinstance(name, str) or not name:
            raise InvalidInput(f"input {index}: 'name' must be a non-empty string")
        if name in inputs:
            raise InvalidInput(f"input {name!r} is given twice")
        where = f"input {name!r}"
        datatype = item.get("datatype")
        dtype = to_numpy(datatype, where)
        shape = _shape(item.get("shape"), where)
        size = _parameters(item, where).get("binary_data_size")
        if size is None:
            if "data" not in item:
                raise InvalidInput(f"{where}: give 'data' or parameters.binary_data_size")
            array = from_json(item["data"], dtype, shape, where)
        else:
            if "data" in item:
                raise InvalidInput(f"{where}: give 'data' or binary_data_size, not both")
            chunk = _chunk(tail, offset, size, has_header, where)
            offset += len(chunk)
            array = from_binary(chunk, dtype, shape, where)
        inputs[name] = InputTensor(str(datatype), array)
    if offset != len(tail):
        raise InvalidInput(f"{len(tail) - offset} bytes of binary data belong to no input")
    return inputs


def _chunk(tail: memoryview, offset: int, size: Any, has_header: bool, where: str) -> memoryview:
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise InvalidInput(f"{where}: binary_data_size must be a non-negative integer")
    if not has_header:
        raise InvalidInput(f"{where}: binary data needs the Inference-Header-Content-Length header")
    if offset + size > len(tail):
        raise InvalidInput(f"{where}: binary_data_size runs past the end of the body")
    return tail[offset : offset + size]


def _shape(raw: Any, where: str) -> tuple[int, ...]:
    if (
        not isinstance(raw, list)
        or len(raw) > _MAX_RANK
        or not all(type(dim) is int and 0 <= dim <= _MAX_DIM for dim in raw)
    ):
        raise InvalidInput(
            f"{where}: 'shape' must be a list of at most {_MAX_RANK} non-negative integers"
        )
    check_shape(raw, where)
    return tuple(raw)


def _outputs(raw: Any) -> tuple[RequestedOutput, ...] | None:
    if raw is None or raw == []:
        return None
    if not isinstance(raw, list):
        raise InvalidInput("'outputs' must be a list")
    outputs: list[RequestedOutput] = []
    for index, item in enumerate(raw):
        item = _object(item, f"output {index}")
        name = item.get("name")
        if not isinstance(name, str) or not name:
            raise InvalidInput(f"output {index}: 'name' must be a non-empty string")
        params = _parameters(item, f"output {name!r}")
        binary = params.get("binary_data")
        if binary is not None and not isinstance(binary, bool):
            raise InvalidInput(f"output {name!r}: binary_data must be a boolean")
        if params.get("classification", 0):
            raise InvalidInput(f"output {name!r}: classification is not supported")
        if any(out.name == name for out in outputs):
            raise InvalidInput(f"output {name!r} is requested twice")
        outputs.append(RequestedOutput(name, binary))
    return tuple(outputs)
