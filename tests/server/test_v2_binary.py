"""Triton's binary tensor data extension: binary inputs and outputs, raw and compressed bodies."""

from __future__ import annotations

import gzip
import struct
import zlib

import httpx
import numpy as np
import orjson
import pytest

from batchserve.config import Settings
from batchserve.errors import InvalidInput
from batchserve.server.wire.v2 import decode_request
from tests.server.support import serving

SCALE = Settings(model="tests.server.v2_models:scale")
TEXTS = Settings(model="tests.server.v2_models:texts")
HEADER = "inference-header-content-length"


def binary_request(doc: dict, *chunks: bytes) -> tuple[bytes, dict[str, str]]:
    """The body and headers of a request whose JSON is followed by ``chunks``."""
    header = orjson.dumps(doc)
    headers = {HEADER: str(len(header)), "content-type": "application/octet-stream"}
    return header + b"".join(chunks), headers


def split_response(response: httpx.Response) -> tuple[dict, bytes]:
    """The JSON part of a binary response and the bytes after it."""
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/octet-stream"
    length = int(response.headers[HEADER])
    return orjson.loads(response.content[:length]), response.content[length:]


def serialize_bytes(items: list[bytes]) -> bytes:
    return b"".join(struct.pack("<I", len(item)) + item for item in items)


def x_binary(values: np.ndarray) -> tuple[dict, bytes]:
    data = values.astype("<f4").tobytes()
    spec = {"name": "x", "shape": list(values.shape), "datatype": "FP32"}
    return {**spec, "parameters": {"binary_data_size": len(data)}}, data


async def test_binary_input_and_binary_data_output_return_raw_little_endian_tensors() -> None:
    rows = np.arange(8, dtype=np.float32).reshape(2, 4)
    tensor, data = x_binary(rows)
    doc = {"id": "b1", "parameters": {"binary_data_output": True}, "inputs": [tensor]}
    async with serving(SCALE) as (_, client):
        body, headers = binary_request(doc, data)
        head, tail = split_response(
            await client.post("/v2/models/scale/infer", content=body, headers=headers)
        )
    assert head["id"] == "b1"
    sizes = [out["parameters"]["binary_data_size"] for out in head["outputs"]]
    assert sizes == [32, 16, 16]
    assert all("data" not in out for out in head["outputs"])
    y = np.frombuffer(tail[:32], dtype="<f4").reshape(head["outputs"][0]["shape"])
    np.testing.assert_array_equal(y, rows * 2)
    assert len(tail) == sum(sizes)


async def test_per_output_binary_data_overrides_the_request_default() -> None:
    tensor, data = x_binary(np.ones((1, 4), dtype=np.float32))
    doc = {
        "parameters": {"binary_data_output": True},
        "inputs": [tensor],
        "outputs": [{"name": "y", "parameters": {"binary_data": False}}, {"name": "batch_size"}],
    }
    async with serving(SCALE) as (_, client):
        body, headers = binary_request(doc, data)
        head, tail = split_response(
            await client.post("/v2/models/scale/infer", content=body, headers=headers)
        )
    y, size = head["outputs"]
    assert y["data"] == [2, 2, 2, 2]
    assert size["parameters"] == {"binary_data_size": 8}
    assert np.frombuffer(tail, dtype="<i8").tolist() == [1]


async def test_binary_and_json_inputs_mix_in_one_request() -> None:
    flag = np.array([True, False, True])
    u8 = np.arange(12, dtype=np.uint8).reshape(3, 4)
    doc = {
        "inputs": [
            {"name": "f32", "shape": [3, 3], "datatype": "FP32", "data": list(range(9))},
            {
                "name": "flag",
                "shape": [3],
                "datatype": "BOOL",
                "parameters": {"binary_data_size": 3},
            },
            {"name": "i64", "shape": [3, 2], "datatype": "INT64", "data": [1, 2, 3, 4, 5, 6]},
            {
                "name": "u8",
                "shape": [3, 4],
                "datatype": "UINT8",
                "parameters": {"binary_data_size": 12},
            },
            {"name": "f64", "shape": [3], "datatype": "FP64", "data": [1, 2, 3]},
        ],
        "outputs": [{"name": "flag_not", "parameters": {"binary_data": True}}, {"name": "u8_inv"}],
    }
    body, headers = binary_request(doc, flag.tobytes(), u8.tobytes())
    async with serving(Settings(model="tests.server.v2_models:multi_io")) as (_, client):
        response = await client.post("/v2/models/multi_io/infer", content=body, headers=headers)
    head, tail = split_response(response)
    assert np.frombuffer(tail, dtype=np.bool_).tolist() == [False, True, False]
    assert head["outputs"][1]["data"] == (255 - u8).reshape(-1).tolist()


async def test_bytes_elements_are_length_prefixed_both_ways() -> None:
    items = [b"ab", b"\xff\x00raw", b""]
    chunk = serialize_bytes(items)
    doc = {
        "parameters": {"binary_data_output": True},
        "inputs": [
            {
                "name": "text",
                "shape": [3],
                "datatype": "BYTES",
                "parameters": {"binary_data_size": len(chunk)},
            }
        ],
        "outputs": [{"name": "upper"}],
    }
    body, headers = binary_request(doc, chunk)
    async with serving(TEXTS) as (_, client):
        head, tail = split_response(
            await client.post("/v2/models/texts/infer", content=body, headers=headers)
        )
    assert head["outputs"][0]["datatype"] == "BYTES"
    assert tail == serialize_bytes([item.upper() for item in items])


async def test_non_utf8_bytes_need_binary_output() -> None:
    chunk = serialize_bytes([b"\xff"])
    doc = {
        "inputs": [
            {
                "name": "text",
                "shape": [1],
                "datatype": "BYTES",
                "parameters": {"binary_data_size": len(chunk)},
            }
        ]
    }
    body, headers = binary_request(doc, chunk)
    async with serving(TEXTS) as (_, client):
        response = await client.post("/v2/models/texts/infer", content=body, headers=headers)
    assert response.status_code == 400
    assert "binary_data" in response.json()["error"]


async def test_a_raw_binary_body_is_one_row_of_the_only_input() -> None:
    row = np.array([1, 2, 3, 4], dtype="<f4")
    async with serving(SCALE) as (_, client):
        response = await client.post(
            "/v2/models/scale/infer", content=row.tobytes(), headers={HEADER: "0"}
        )
    head, tail = split_response(response)
    assert head["outputs"][0]["shape"] == [1, 4]
    np.testing.assert_array_equal(np.frombuffer(tail[:16], dtype="<f4"), row * 2)


async def test_a_raw_binary_body_is_one_bytes_element() -> None:
    async with serving(TEXTS) as (_, client):
        response = await client.post(
            "/v2/models/texts/infer", content=b"hello", headers={HEADER: "0"}
        )
    head, tail = split_response(response)
    assert [out["name"] for out in head["outputs"]] == ["length", "upper"]
    assert np.frombuffer(tail[:8], dtype="<i8").tolist() == [5]
    assert tail[8:] == serialize_bytes([b"HELLO"])


@pytest.mark.parametrize(
    ("encoding", "compress"), [("gzip", gzip.compress), ("deflate", zlib.compress)]
)
async def test_compressed_request_bodies_are_inflated(encoding, compress) -> None:
    tensor, data = x_binary(np.ones((1, 4), dtype=np.float32))
    body, headers = binary_request({"inputs": [tensor]}, data)
    async with serving(SCALE) as (_, client):
        response = await client.post(
            "/v2/models/scale/infer",
            content=compress(body),
            headers={**headers, "content-encoding": encoding},
        )
    assert response.status_code == 200
    assert response.json()["outputs"][0]["data"] == [2, 2, 2, 2]


def test_binary_inputs_are_views_of_the_request_body() -> None:
    values = np.arange(8, dtype="<f4").reshape(2, 4)
    tensor, data = x_binary(values)
    body, headers = binary_request({"inputs": [tensor]}, data)
    array = decode_request(body, int(headers[HEADER])).inputs["x"].array
    assert np.shares_memory(array, np.frombuffer(body, dtype=np.uint8))
    assert not array.flags.writeable
    np.testing.assert_array_equal(array, values)


def binary_tensor(datatype: str, chunk: bytes) -> tuple[bytes, int]:
    params = {"binary_data_size": len(chunk)}
    tensor = {"name": "t", "shape": [1], "datatype": datatype, "parameters": params}
    body, headers = binary_request({"inputs": [tensor]}, chunk)
    return body, int(headers[HEADER])


@pytest.mark.parametrize(
    ("datatype", "chunk", "message"),
    [
        ("BYTES", struct.pack("<I", 10) + b"abc", "runs past the data"),
        ("BYTES", struct.pack("<I", 1) + b"ab", "1 bytes follow the last BYTES element"),
        ("BYTES", b"ab", "cannot fit"),
        ("BOOL", b"\x02", "BOOL bytes must be 0 or 1"),
    ],
)
def test_binary_decoding_refuses_malformed_chunks(datatype, chunk, message) -> None:
    with pytest.raises(InvalidInput, match=message):
        decode_request(*binary_tensor(datatype, chunk))
