"""Specification of the ``/predict`` wire codecs (``batchserve.server.wire.codecs``)."""

from __future__ import annotations

import pickle
from typing import Any

import msgpack
import msgpack_numpy
import numpy as np
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from batchserve.errors import InvalidInput, MalformedRequest, UnsupportedMediaType
from batchserve.server.wire.codecs import (
    JSON_MEDIA_TYPE,
    MAX_NESTING,
    MSGPACK_MEDIA_TYPE,
    DecodedRequest,
    TensorStyle,
    WireFormat,
    decode_predict,
    encode_error,
    encode_predict,
    request_format,
    response_format,
)

JSON = WireFormat.JSON
MSGPACK = WireFormat.MSGPACK
LISTS = TensorStyle.LISTS
BINARY = TensorStyle.BINARY
MSGPACK_NUMPY = TensorStyle.MSGPACK_NUMPY
F32 = np.dtype(np.float32)


def json_body(instances: Any, **extra: Any) -> bytes:
    return orjson.dumps({"instances": instances, **extra}, option=orjson.OPT_SERIALIZE_NUMPY)


def msgpack_body(instances: Any) -> bytes:
    body: bytes = msgpack.packb({"instances": instances})
    return body


def binary_tensor(arr: np.ndarray[Any, Any]) -> dict[str, Any]:
    return {"dtype": arr.dtype.name, "shape": list(arr.shape), "data": arr.tobytes()}


def request_for(arr: np.ndarray[Any, Any], fmt: WireFormat, style: TensorStyle) -> bytes:
    """The body a client of each format and style sends for ``arr``."""
    if fmt is JSON:
        return json_body(arr.tolist())
    if style is BINARY:
        return msgpack_body(binary_tensor(arr))
    if style is MSGPACK_NUMPY:
        body: bytes = msgpack_numpy.packb({"instances": arr})
        return body
    return msgpack_body(arr.tolist())


def predictions_of(body: bytes, content_type: str) -> Any:
    """What a client reads back: JSON, or msgpack with msgpack-numpy and binary maps as arrays."""
    if content_type == JSON_MEDIA_TYPE:
        return orjson.loads(body)["predictions"]
    assert content_type == MSGPACK_MEDIA_TYPE
    return msgpack.unpackb(body, object_hook=_client_hook)["predictions"]


def _client_hook(obj: dict[Any, Any]) -> Any:
    if set(obj) == {"dtype", "shape", "data"}:
        return np.frombuffer(obj["data"], dtype=obj["dtype"]).reshape(obj["shape"])
    return msgpack_numpy.decode(obj)


def array_rows(decoded: DecodedRequest) -> list[np.ndarray[Any, Any]]:
    """The rows, which must all be plain arrays."""
    assert all(isinstance(row, np.ndarray) for row in decoded.rows)
    return [row for row in decoded.rows if isinstance(row, np.ndarray)]


def named_rows(decoded: DecodedRequest) -> list[dict[str, np.ndarray[Any, Any]]]:
    """The rows, which must all be maps of named inputs."""
    assert all(isinstance(row, dict) for row in decoded.rows)
    return [row for row in decoded.rows if isinstance(row, dict)]


def base_object(arr: np.ndarray[Any, Any]) -> object:
    base: object = arr
    while isinstance(base, np.ndarray) and base.base is not None:
        base = base.base
    return base


# --- content negotiation -------------------------------------------------------------------


@pytest.mark.parametrize("content_type", [None, ""])
def test_missing_content_type_means_json(content_type: str | None) -> None:
    assert request_format(content_type) is JSON


@pytest.mark.parametrize(
    ("content_type", "fmt"),
    [
        ("application/json", JSON),
        ("application/json; charset=utf-8", JSON),
        ("Application/JSON", JSON),
        ("application/msgpack", MSGPACK),
        ("application/x-msgpack", MSGPACK),
        (" application/msgpack ; foo=bar", MSGPACK),
    ],
)
def test_content_type_selects_format_ignoring_case_and_parameters(
    content_type: str, fmt: WireFormat
) -> None:
    assert request_format(content_type) is fmt


@pytest.mark.parametrize("content_type", ["text/plain", "application/xml", "multipart/form-data"])
def test_unsupported_content_type_names_the_accepted_types(content_type: str) -> None:
    with pytest.raises(UnsupportedMediaType) as caught:
        decode_predict(b'{"instances": [1]}', content_type)
    message = str(caught.value)
    for accepted in ("application/json", "application/msgpack", "application/x-msgpack"):
        assert accepted in message


@pytest.mark.parametrize(
    ("request_fmt", "accept", "expected"),
    [
        (JSON, None, JSON),
        (MSGPACK, "", MSGPACK),
        (JSON, "application/msgpack", MSGPACK),
        (JSON, "application/x-msgpack", MSGPACK),
        (MSGPACK, "application/json", JSON),
        (MSGPACK, "*/*", MSGPACK),
        (JSON, "application/*", JSON),
        (MSGPACK, "text/html", MSGPACK),
        (MSGPACK, "text/html, application/json;charset=utf-8", JSON),
        (JSON, "application/json;q=0.4, application/msgpack;q=0.9", MSGPACK),
        (MSGPACK, "application/msgpack;q=0, application/json", JSON),
        (JSON, "*/*;q=0.1, application/msgpack", MSGPACK),
        (JSON, "application/msgpack;q=bogus", JSON),
    ],
)
def test_accept_negotiates_response_format(
    request_fmt: WireFormat, accept: str | None, expected: WireFormat
) -> None:
    assert response_format(request_fmt, accept) is expected


# --- round trips in every format and style --------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "style", "content_type"),
    [
        (JSON, LISTS, "application/json"),
        (MSGPACK, LISTS, "application/msgpack"),
        (MSGPACK, BINARY, "application/msgpack"),
        (MSGPACK, MSGPACK_NUMPY, "application/x-msgpack"),
    ],
)
def test_each_format_and_style_round_trips(
    fmt: WireFormat, style: TensorStyle, content_type: str
) -> None:
    arr = np.arange(12, dtype=np.float32).reshape(3, 4) / 8
    decoded = decode_predict(request_for(arr, fmt, style), content_type, dtype=F32)
    assert (decoded.fmt, decoded.style) == (fmt, style)
    assert decoded.batch is not None
    np.testing.assert_array_equal(decoded.batch, arr)
    assert decoded.batch.dtype == F32
    assert [row.shape for row in array_rows(decoded)] == [(4,)] * 3
    body, content_type_out = encode_predict(decoded.batch * 2, fmt, style)
    predictions = predictions_of(body, content_type_out)
    np.testing.assert_array_equal(np.asarray(predictions, dtype=np.float32), arr * 2)


def test_binary_response_is_one_tensor_map_when_rows_stack() -> None:
    rows = [np.full(3, i, dtype=np.float32) for i in range(4)]
    body, content_type = encode_predict(rows, MSGPACK, BINARY)
    assert content_type == MSGPACK_MEDIA_TYPE
    tensor = msgpack.unpackb(body)["predictions"]
    assert tensor["dtype"] == "float32"
    assert tensor["shape"] == [4, 3]
    np.testing.assert_array_equal(
        np.frombuffer(tensor["data"], dtype=np.float32).reshape(4, 3), np.stack(rows)
    )


def test_binary_tensor_is_read_without_copying() -> None:
    arr = np.arange(8, dtype=np.float32).reshape(2, 4)
    decoded = decode_predict(msgpack_body(binary_tensor(arr)), "application/msgpack")
    batch = decoded.batch
    assert batch is not None
    assert not batch.flags.owndata
    assert not batch.flags.writeable
    assert batch.flags.aligned
    assert isinstance(base_object(batch), bytes)
    assert all(np.shares_memory(row, batch) for row in decoded.rows)


def test_msgpack_numpy_whole_tensor_round_trips_with_the_real_package() -> None:
    arr = np.linspace(0, 1, 10, dtype=np.float64).reshape(5, 2)
    decoded = decode_predict(msgpack_numpy.packb({"instances": arr}), "application/msgpack")
    assert decoded.style is MSGPACK_NUMPY
    assert decoded.batch is not None
    assert not decoded.batch.flags.owndata
    np.testing.assert_array_equal(decoded.batch, arr)
    body, _ = encode_predict(decoded.batch, MSGPACK, MSGPACK_NUMPY)
    predictions = msgpack_numpy.unpackb(body)["predictions"]
    assert isinstance(predictions, np.ndarray)
    np.testing.assert_array_equal(predictions, arr)


def test_msgpack_numpy_per_instance_arrays_round_trip() -> None:
    instances = [np.arange(3, dtype=np.int32), np.arange(5, dtype=np.int32)]
    decoded = decode_predict(msgpack_numpy.packb({"instances": instances}), "application/msgpack")
    assert decoded.style is MSGPACK_NUMPY
    assert decoded.batch is None
    for row, sent in zip(decoded.rows, instances, strict=True):
        np.testing.assert_array_equal(row, sent)
    body, _ = encode_predict(decoded.rows, MSGPACK, MSGPACK_NUMPY)
    predictions = msgpack.unpackb(body, object_hook=msgpack_numpy.decode)["predictions"]
    assert all(isinstance(p, np.ndarray) for p in predictions)
    for got, sent in zip(predictions, instances, strict=True):
        np.testing.assert_array_equal(got, sent)


def test_msgpack_numpy_maps_with_text_keys_are_accepted() -> None:
    arr = np.ones((2, 2), dtype=np.float32)
    tensor = {"nd": True, "type": "<f4", "kind": "", "shape": [2, 2], "data": arr.tobytes()}
    decoded = decode_predict(msgpack_body(tensor), "application/msgpack")
    np.testing.assert_array_equal(decoded.batch, arr)


def test_msgpack_numpy_scalar_instances_become_zero_dim_rows() -> None:
    instances = [np.float32(1.5), np.float32(2.5)]
    decoded = decode_predict(msgpack_numpy.packb({"instances": instances}), "application/msgpack")
    assert [row.shape for row in array_rows(decoded)] == [(), ()]
    assert [float(row) for row in array_rows(decoded)] == [1.5, 2.5]


def test_big_endian_binary_tensor_is_read_in_native_byte_order() -> None:
    arr = np.arange(6, dtype=">f8").reshape(3, 2)
    tensor = {"dtype": ">f8", "shape": [3, 2], "data": arr.tobytes()}
    decoded = decode_predict(msgpack_body(tensor), "application/msgpack")
    assert decoded.batch is not None
    assert decoded.batch.dtype.isnative
    np.testing.assert_array_equal(decoded.batch, arr)


def test_lists_rows_are_views_of_the_batch() -> None:
    decoded = decode_predict(json_body([[1, 2], [3, 4]]), None, dtype=F32)
    assert decoded.batch is not None
    for i, row in enumerate(decoded.rows):
        assert isinstance(row, np.ndarray)
        assert np.shares_memory(row, decoded.batch)
        np.testing.assert_array_equal(row, decoded.batch[i])


def test_scalar_instances_become_zero_dim_array_rows() -> None:
    decoded = decode_predict(json_body([1.5, 2.5, 3.5]), None, dtype=F32)
    assert all(row.shape == () for row in array_rows(decoded))
    assert [float(row) for row in array_rows(decoded)] == [1.5, 2.5, 3.5]


def test_binary_request_may_be_answered_in_json() -> None:
    arr = np.array([[0.5, 1.5]], dtype=np.float32)
    decoded = decode_predict(msgpack_body(binary_tensor(arr)), "application/msgpack")
    fmt = response_format(decoded.fmt, "application/json")
    assert decoded.batch is not None
    body, content_type = encode_predict(decoded.batch, fmt, decoded.style)
    assert content_type == JSON_MEDIA_TYPE
    assert orjson.loads(body) == {"predictions": [[0.5, 1.5]]}


# --- dtype conversion ---------------------------------------------------------------------


def test_json_numbers_are_converted_to_the_model_dtype_in_one_array() -> None:
    decoded = decode_predict(json_body([[1, 2.5], [3, 4]]), None, dtype=F32)
    assert decoded.batch is not None
    assert decoded.batch.dtype == F32
    np.testing.assert_array_equal(decoded.batch, [[1, 2.5], [3, 4]])


def test_msgpack_numbers_are_converted_to_the_model_dtype() -> None:
    decoded = decode_predict(msgpack_body([[1, 2.5], [3, 4]]), "application/msgpack", dtype=F32)
    assert decoded.batch is not None
    assert decoded.batch.dtype == F32


def test_binary_tensor_is_converted_to_the_model_dtype() -> None:
    arr = np.array([[1.25, 2.5]], dtype=np.float64)
    decoded = decode_predict(msgpack_body(binary_tensor(arr)), "application/msgpack", dtype=F32)
    assert decoded.batch is not None
    assert decoded.batch.dtype == F32
    np.testing.assert_array_equal(decoded.batch, arr)


@pytest.mark.parametrize(
    ("instances", "dtype"),
    [
        ([[1, 2]], np.int64),
        ([[True, False]], np.bool_),
        ([["a", "b"]], np.str_),
    ],
)
def test_without_model_dtype_numpy_infers_it(instances: list[Any], dtype: type) -> None:
    decoded = decode_predict(json_body(instances), None)
    assert decoded.batch is not None
    assert decoded.batch.dtype.type is dtype


def test_integer_models_take_integers_in_range() -> None:
    decoded = decode_predict(json_body([[1, -2]]), None, dtype=np.dtype(np.int8))
    assert decoded.batch is not None
    assert decoded.batch.dtype == np.int8


def test_boolean_models_take_booleans() -> None:
    decoded = decode_predict(json_body([[True, False]]), None, dtype=np.dtype(np.bool_))
    np.testing.assert_array_equal(decoded.batch, [[True, False]])


def test_text_models_take_strings() -> None:
    decoded = decode_predict(json_body(["good", "bad"]), None, dtype=np.dtype(object))
    assert decoded.batch is not None
    assert decoded.batch.tolist() == ["good", "bad"]


def test_zeros_and_ones_are_not_mistaken_for_booleans() -> None:
    body = json_body([[0, 1, 0.0, 1.0]], model="full")  # 'l' and 'u' force the exact check
    decoded = decode_predict(body, None, dtype=F32)
    np.testing.assert_array_equal(decoded.batch, [[0, 1, 0, 1]])


def test_every_row_of_a_numeric_batch_is_checked_not_only_the_first() -> None:
    rows = [[float(i), i + 0.5, -1.0] for i in range(5)]
    decoded = decode_predict(json_body(rows), None, dtype=F32)
    assert decoded.batch is not None
    assert decoded.batch.shape == (5, 3)
    np.testing.assert_array_equal(decoded.batch, np.array(rows, dtype=F32))
    with pytest.raises(InvalidInput, match="out of range"):
        decode_predict(json_body([[1.0, 2.0], [3.0, 1e39]]), None, dtype=F32)
    with pytest.raises(InvalidInput, match="instance 1 is ragged"):
        decode_predict(json_body([[1.0, 2.0], [[1.0, 2.0], [3.0]]]), None, dtype=F32)
    ragged = decode_predict(json_body([[1.0, 2.0], [3.0]]), None, dtype=F32)
    assert ragged.batch is None
    assert [row.tolist() for row in array_rows(ragged)] == [[1.0, 2.0], [3.0]]


@pytest.mark.parametrize("fmt", [JSON, MSGPACK])
@pytest.mark.parametrize(
    ("instances", "dtype", "reason"),
    [
        ([["1.5", 2]], F32, "got str"),
        ([["a"]], F32, "got str"),
        ([[None, 1.0]], F32, "not numbers"),
        ([[True, False]], F32, "got bool"),
        ([[1.0, True]], F32, "booleans"),
        ([[1.0, True]], None, "booleans"),
        ([[0, [False]]], None, "ragged"),
        ([[1.5]], np.dtype(np.int64), "non-integral"),
        ([[300]], np.dtype(np.int8), "out of range"),
        ([[-1]], np.dtype(np.uint8), "out of range"),
        ([[1e300]], F32, "out of range"),
        ([[2**40]], np.dtype(np.int32), "out of range"),
        ([[1, 0]], np.dtype(np.bool_), "got int64"),
        ([[{"a": 1}]], F32, "not numbers"),
        ([[{"a": 1}]], None, "not numbers"),
        ([[None]], None, "not numbers"),
        ([[2**64 - 1, -1]], np.dtype(np.int64), "out of range"),
    ],
)
def test_values_the_model_dtype_cannot_represent_are_refused(
    fmt: WireFormat, instances: list[Any], dtype: np.dtype[Any] | None, reason: str
) -> None:
    body = json_body(instances) if fmt is JSON else msgpack_body(instances)
    with pytest.raises(InvalidInput, match=reason):
        decode_predict(body, "application/" + fmt.value, dtype=dtype)


def test_boolean_binary_tensor_is_refused_for_a_numeric_model() -> None:
    body = msgpack_body(binary_tensor(np.array([[True]])))
    with pytest.raises(InvalidInput, match="got bool"):
        decode_predict(body, "application/msgpack", dtype=F32)


# --- ragged and named-input rows ------------------------------------------------------------


def test_ragged_instances_become_per_row_arrays() -> None:
    decoded = decode_predict(json_body([[1, 2, 3], [4], [5, 6]]), None, dtype=F32)
    assert decoded.batch is None
    assert [row.tolist() for row in array_rows(decoded)] == [[1, 2, 3], [4], [5, 6]]
    assert all(row.dtype == F32 for row in array_rows(decoded))


def test_a_row_that_is_itself_ragged_is_refused() -> None:
    with pytest.raises(InvalidInput, match="instance 1 is ragged"):
        decode_predict(json_body([[1, 2], [[1, 2], [3]]]), None, dtype=F32)


def test_named_inputs_become_dict_rows_converted_per_column() -> None:
    instances = [{"ids": [1, 2], "scale": 0.5}, {"ids": [3, 4], "scale": 1.5}]
    decoded = decode_predict(json_body(instances), None)
    assert decoded.batch is None
    assert decoded.style is LISTS
    first, second = decoded.rows
    assert isinstance(first, dict)
    assert isinstance(second, dict)
    assert first["ids"].tolist() == [1, 2]
    assert second["scale"].shape == ()
    assert float(second["scale"]) == 1.5
    assert first["ids"].base is not None
    assert first["ids"].base is second["ids"].base  # views of one column array


def test_named_inputs_with_a_ragged_column_are_decoded_per_row() -> None:
    instances = [{"ids": [1, 2, 3]}, {"ids": [4]}]
    decoded = decode_predict(json_body(instances), None)
    assert [row["ids"].tolist() for row in named_rows(decoded)] == [[1, 2, 3], [4]]


def test_named_inputs_with_different_names_are_decoded_per_row() -> None:
    decoded = decode_predict(json_body([{"a": [1]}, {"b": [2]}]), None)
    assert [sorted(row) for row in decoded.rows] == [["a"], ["b"]]


def test_msgpack_named_inputs_may_be_tensors() -> None:
    instances = [
        {"image": np.zeros((2, 2), dtype=np.uint8), "label": np.int64(3)},
        {"image": np.ones((2, 2), dtype=np.uint8), "label": np.int64(4)},
    ]
    decoded = decode_predict(msgpack_numpy.packb({"instances": instances}), "application/msgpack")
    assert decoded.style is MSGPACK_NUMPY
    second = decoded.rows[1]
    assert isinstance(second, dict)
    np.testing.assert_array_equal(second["image"], np.ones((2, 2)))
    assert int(second["label"]) == 4


def test_msgpack_named_inputs_may_be_binary_tensors_with_byte_keys() -> None:
    row = {b"x": binary_tensor(np.arange(3, dtype=np.int16))}
    decoded = decode_predict(msgpack_body([row]), "application/msgpack")
    assert decoded.style is BINARY
    only = decoded.rows[0]
    assert isinstance(only, dict)
    assert only["x"].tolist() == [0, 1, 2]


@pytest.mark.parametrize(
    ("instances", "reason"),
    [
        ([{"a": [1]}, [1]], "mix named inputs"),
        ([[1], {"a": [1]}], "mix named inputs"),
        ([{}], "empty object"),
        ([{"a": {"b": 1}}], "must be an array, not an object"),
        ([{"a": [[1, 2], [3]]}], "ragged"),
    ],
)
def test_unusable_named_inputs_are_refused(instances: list[Any], reason: str) -> None:
    with pytest.raises(InvalidInput, match=reason):
        decode_predict(json_body(instances), None)


# --- malformed and invalid requests --------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b"not json", None),
        (b"", "application/json"),
        (b"[1, 2]", None),
        (b'{"inputs": [[1]]}', None),
        (b'{"instances": 5}', None),
        (b'{"instances": "abc"}', None),
        (b'{"instances": null}', None),
        (b'{"instances": {"dtype": "float32", "shape": [1], "data": "AAAA"}}', None),
        (b"\xc1", "application/msgpack"),
        (b"", "application/msgpack"),
        (b"\x92\x01", "application/msgpack"),
        (msgpack.packb([1, 2]), "application/msgpack"),
        (msgpack.packb({"instances": {"a": [1]}}), "application/msgpack"),
        (msgpack.packb({"instances": 1.5}), "application/msgpack"),
        (msgpack.packb({1: 2}), "application/msgpack"),
        (b"\x91" * 5000 + b"\x01", "application/msgpack"),
        (b"[" * 5000 + b"]" * 5000, None),
    ],
)
def test_undecodable_bodies_are_malformed(body: bytes, content_type: str | None) -> None:
    with pytest.raises(MalformedRequest):
        decode_predict(body, content_type)


@pytest.mark.parametrize("fmt", [JSON, MSGPACK])
def test_empty_instances_are_invalid(fmt: WireFormat) -> None:
    body = json_body([]) if fmt is JSON else msgpack_body([])
    with pytest.raises(InvalidInput, match="'instances' must be a non-empty list"):
        decode_predict(body, "application/" + fmt.value)


def tensor_map(**changes: Any) -> dict[str, Any]:
    tensor = binary_tensor(np.zeros((2, 3), dtype=np.float32))
    tensor.update(changes)
    return tensor


@pytest.mark.parametrize(
    ("tensor", "reason"),
    [
        (tensor_map(data=b"\x00" * 20), "holds 20 bytes but shape"),
        (tensor_map(shape=[3, 3]), "needs 36"),
        (tensor_map(shape=[0, 3], data=b""), "non-empty"),
        (tensor_map(shape=[], data=b"\x00" * 4), "non-empty"),
        (tensor_map(dtype="float33"), "unsupported dtype"),
        (tensor_map(dtype="object"), "unsupported dtype"),
        (tensor_map(dtype="O"), "unsupported dtype"),
        (tensor_map(dtype="U8"), "unsupported dtype"),
        (tensor_map(dtype="a"), "unsupported dtype"),
        (tensor_map(dtype="i16"), "unsupported dtype"),
        (tensor_map(dtype="f4,f4"), "unsupported dtype"),
        (tensor_map(dtype="(2,)f4"), "unsupported dtype"),
        (tensor_map(dtype="M8"), "unsupported dtype"),
        (tensor_map(dtype=4), "unsupported dtype"),
        (tensor_map(shape="2,3"), "'shape' must be"),
        (tensor_map(shape=[2, -3]), "'shape' must be"),
        (tensor_map(shape=[2.0, 3]), "'shape' must be"),
        (tensor_map(shape=[True, 3]), "'shape' must be"),
        (tensor_map(shape=[0, 2**40], data=b""), "'shape' must be"),
        (tensor_map(shape=[1] * (MAX_NESTING + 1)), "'shape' must be"),
        (tensor_map(data="\x00" * 24), "must be msgpack binary"),
        (tensor_map(data=[0] * 24), "must be msgpack binary"),
    ],
)
def test_bad_binary_tensors_are_invalid(tensor: dict[str, Any], reason: str) -> None:
    with pytest.raises(InvalidInput, match=reason):
        decode_predict(msgpack_body(tensor), "application/msgpack")


def test_msgpack_numpy_object_arrays_are_refused_not_unpickled() -> None:
    tensor = {
        b"nd": True,
        b"type": "|O",
        b"kind": b"O",
        b"shape": [1],
        b"data": pickle.dumps(np.array([1], dtype=object)),
    }
    with pytest.raises(InvalidInput, match="object and structured arrays are refused"):
        decode_predict(msgpack_body(tensor), "application/msgpack")


def test_msgpack_numpy_nd_flag_must_be_boolean() -> None:
    tensor = {b"nd": 1, b"type": "<f4", b"shape": [1], b"data": b"\x00" * 4}
    with pytest.raises(InvalidInput, match="'nd' must be a boolean"):
        decode_predict(msgpack_body(tensor), "application/msgpack")


def nested(depth: int) -> Any:
    value: Any = 1.0
    for _ in range(depth):
        value = [value]
    return value


def test_nesting_up_to_the_limit_is_accepted() -> None:
    decoded = decode_predict(json_body(nested(MAX_NESTING)), None, dtype=F32)
    assert decoded.batch is not None
    assert decoded.batch.ndim == MAX_NESTING


@pytest.mark.parametrize("fmt", [JSON, MSGPACK])
def test_nesting_deeper_than_the_limit_is_invalid(fmt: WireFormat) -> None:
    instances = nested(MAX_NESTING + 1)
    body = json_body(instances) if fmt is JSON else msgpack_body(instances)
    with pytest.raises(InvalidInput, match="nested deeper than"):
        decode_predict(body, "application/" + fmt.value)


DEEP = b"[" * 1000 + b"1" + b"]" * 1000


@pytest.mark.parametrize(
    "body",
    [
        b'{"instances": [[1.0], ' + DEEP + b"]}",  # by hand: orjson writes at most 255 levels
        b'{"instances": [[1.0, ' + DEEP + b"]]}",
        msgpack_body([[1.0], nested(1000)]),
        msgpack_body([[1.0, nested(1000)]]),
    ],
)
def test_deep_nesting_off_the_first_path_is_invalid(body: bytes) -> None:
    content_type = "application/json" if body.startswith(b"{") else "application/msgpack"
    with pytest.raises(InvalidInput, match=r"nested deeper|ragged"):
        decode_predict(body, content_type, dtype=F32)


# --- encoding -------------------------------------------------------------------------------


def test_json_encodes_arrays_orjson_cannot_take_directly() -> None:
    predictions = [
        np.arange(6, dtype=np.float64).reshape(2, 3)[:, 1],  # not C-contiguous
        np.array([1.0, 2.0], dtype=">f8"),  # non-native byte order
        np.array(["cat", "dog"]),  # labels
        np.array(2.5, dtype=np.float16),  # 0-d
        np.float32(0.5),
    ]
    body, content_type = encode_predict(predictions, JSON, LISTS)
    assert content_type == JSON_MEDIA_TYPE
    assert orjson.loads(body) == {"predictions": [[1.0, 4.0], [1.0, 2.0], ["cat", "dog"], 2.5, 0.5]}


def test_json_writes_nan_as_null() -> None:
    body, _ = encode_predict(np.array([[np.nan, 1.0]]), JSON, LISTS)
    assert orjson.loads(body) == {"predictions": [[None, 1.0]]}


def test_json_refuses_complex_predictions() -> None:
    with pytest.raises(TypeError):
        encode_predict(np.array([1 + 2j]), JSON, LISTS)


def test_multi_output_predictions_are_a_list_of_dicts_in_every_style() -> None:
    rows = [{"label": np.int64(i), "scores": np.full(2, i, dtype=np.float32)} for i in range(2)]
    json_out = orjson.loads(encode_predict(rows, JSON, LISTS)[0])["predictions"]
    assert json_out == [{"label": 0, "scores": [0.0, 0.0]}, {"label": 1, "scores": [1.0, 1.0]}]
    lists_out = msgpack.unpackb(encode_predict(rows, MSGPACK, LISTS)[0])["predictions"]
    assert lists_out == json_out
    for style in (BINARY, MSGPACK_NUMPY):
        body, content_type = encode_predict(rows, MSGPACK, style)
        out = predictions_of(body, content_type)
        assert int(out[1]["label"]) == 1
        assert isinstance(out[1]["scores"], np.ndarray)
        np.testing.assert_array_equal(out[1]["scores"], [1.0, 1.0])


def test_binary_rows_that_do_not_stack_are_tensor_maps_each() -> None:
    rows = [np.arange(3, dtype=np.int32), np.arange(2, dtype=np.int32)]
    body, content_type = encode_predict(rows, MSGPACK, BINARY)
    out = predictions_of(body, content_type)
    assert [r.tolist() for r in out] == [[0, 1, 2], [0, 1]]


def test_msgpack_lists_style_writes_plain_lists() -> None:
    body, _ = encode_predict([np.array([1, 2]), np.array([3])], MSGPACK, LISTS)
    assert msgpack.unpackb(body) == {"predictions": [[1, 2], [3]]}


def test_non_numeric_arrays_are_written_as_lists_in_tensor_styles() -> None:
    labels = np.array(["cat", "dog"])
    for style in (BINARY, MSGPACK_NUMPY):
        body, _ = encode_predict(labels, MSGPACK, style)
        assert msgpack.unpackb(body) == {"predictions": ["cat", "dog"]}


@pytest.mark.parametrize(
    ("fmt", "content_type"), [(JSON, JSON_MEDIA_TYPE), (MSGPACK, MSGPACK_MEDIA_TYPE)]
)
def test_errors_are_encoded_in_the_requested_format(fmt: WireFormat, content_type: str) -> None:
    body, got_type = encode_error("bad things", "invalid_input", fmt)
    assert got_type == content_type
    doc = orjson.loads(body) if fmt is JSON else msgpack.unpackb(body)
    assert doc == {"error": "bad things", "code": "invalid_input"}


def test_errors_default_to_json() -> None:
    assert encode_error("x", "y")[1] == JSON_MEDIA_TYPE


# --- properties -------------------------------------------------------------------------------

FORMATS_AND_STYLES = [(JSON, LISTS), (MSGPACK, LISTS), (MSGPACK, BINARY), (MSGPACK, MSGPACK_NUMPY)]
FLOAT32_BATCHES = hnp.arrays(
    np.float32,
    st.tuples(st.integers(1, 6), st.integers(1, 12)),
    elements=st.floats(width=32, allow_nan=False, allow_infinity=False),
)
ANY_FLOAT32_BATCHES = hnp.arrays(
    np.float32, st.tuples(st.integers(1, 6), st.integers(1, 12)), elements=st.floats(width=32)
)


@pytest.mark.parametrize(("fmt", "style"), FORMATS_AND_STYLES)
@given(data=st.data())
@settings(deadline=None)
def test_any_float32_batch_round_trips_exactly(
    fmt: WireFormat, style: TensorStyle, data: st.DataObject
) -> None:
    arr = data.draw(FLOAT32_BATCHES if fmt is JSON else ANY_FLOAT32_BATCHES)
    decoded = decode_predict(request_for(arr, fmt, style), "application/" + fmt.value, dtype=F32)
    assert decoded.batch is not None
    assert decoded.batch.dtype == F32
    np.testing.assert_array_equal(decoded.batch, arr)
    body, content_type = encode_predict(decoded.batch, fmt, style)
    np.testing.assert_array_equal(
        np.asarray(predictions_of(body, content_type), dtype=np.float32), arr
    )


MODEL_DTYPES = st.sampled_from(
    [None, F32, np.dtype(np.float16), np.dtype(np.int64), np.dtype(np.uint8), np.dtype(bool)]
)
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.sampled_from([0, 1, 0.0, 1.0, -1, 1e300])
    | st.text(max_size=4)
)
JSON_VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=3), inner),
    max_leaves=24,
)
NUMBER_GRIDS = st.lists(
    st.lists(st.integers(-3, 3) | st.floats(-2, 2) | st.booleans(), min_size=1, max_size=3),
    min_size=1,
    max_size=3,
)
DTYPE_NAMES = st.sampled_from(
    ["float32", "<f4", ">f8", "int8", "|u1", "bool", "complex64", "O", "U3", "f16", "S2", "V4"]
) | st.text(max_size=6)
SHAPES = st.lists(st.integers(-1, 4), max_size=4) | st.integers(-(2**63), 2**64 - 1) | st.none()
TENSOR_MAPS = st.fixed_dictionaries(
    {"dtype": DTYPE_NAMES, "shape": SHAPES, "data": st.binary(max_size=48)}
)
MSGPACK_NUMPY_MAPS = st.fixed_dictionaries(
    {
        b"nd": st.booleans() | st.integers(0, 1),
        b"type": DTYPE_NAMES | st.binary(max_size=4),
        b"kind": st.sampled_from([b"", b"O", b"V", ""]),
        b"shape": SHAPES,
        b"data": st.binary(max_size=48),
    }
)
MSGPACK_VALUES = st.recursive(
    SCALARS | st.binary(max_size=8) | TENSOR_MAPS | MSGPACK_NUMPY_MAPS,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text(max_size=3) | st.binary(max_size=3), inner, max_size=3)
    ),
    max_leaves=24,
)


def assert_decodes_or_refuses(body: bytes, content_type: str, dtype: np.dtype[Any] | None) -> None:
    """The property: a well-typed result or one of the codec's errors, nothing else."""
    try:
        decoded = decode_predict(body, content_type, dtype=dtype)
    except (InvalidInput, MalformedRequest):
        return
    assert isinstance(decoded, DecodedRequest)
    assert decoded.rows
    arrays = [a for row in decoded.rows for a in (row.values() if isinstance(row, dict) else [row])]
    assert all(isinstance(a, np.ndarray) for a in arrays)
    if dtype is not None:
        assert all(a.dtype == dtype for a in arrays)
    if decoded.batch is not None:
        assert len(decoded.batch) == len(decoded.rows)


FUZZ = settings(deadline=None, max_examples=300, suppress_health_check=[HealthCheck.too_slow])


@given(body=st.binary(max_size=256), content_type=st.sampled_from([None, "application/msgpack"]))
@FUZZ
def test_random_bytes_never_escape_the_codec_errors(body: bytes, content_type: str | None) -> None:
    assert_decodes_or_refuses(body, content_type or "application/json", None)


@given(instances=JSON_VALUES | NUMBER_GRIDS, dtype=MODEL_DTYPES, wrap=st.booleans())
@FUZZ
def test_random_json_never_escapes_the_codec_errors(
    instances: Any, dtype: np.dtype[Any] | None, wrap: bool
) -> None:
    body = json_body(instances) if wrap else orjson.dumps(instances)
    assert_decodes_or_refuses(body, "application/json", dtype)


@given(instances=MSGPACK_VALUES | NUMBER_GRIDS, dtype=MODEL_DTYPES, wrap=st.booleans())
@FUZZ
def test_random_msgpack_never_escapes_the_codec_errors(
    instances: Any, dtype: np.dtype[Any] | None, wrap: bool
) -> None:
    body = msgpack_body(instances) if wrap else msgpack.packb(instances)
    assert_decodes_or_refuses(body, "application/msgpack", dtype)


@pytest.mark.parametrize("body", [b"\xc1", b"\x92\x01", b""], ids=["reserved", "short", "empty"])
def test_a_msgpack_error_always_says_why(body: bytes) -> None:
    with pytest.raises(MalformedRequest) as caught:
        decode_predict(body, "application/msgpack")
    reason = str(caught.value).removeprefix("body is not valid msgpack:").strip()
    assert reason, str(caught.value)
