"""Every number a client sends is a claim: declared row counts, shapes and element counts are
checked against the bytes present and the limits before anything is built; the same input
gets the same answer on every route and wire; a model may write into its input."""

from __future__ import annotations

import struct
from typing import Any

import msgpack
import msgpack_numpy
import numpy as np
import orjson
import pytest

from batchserve.config import Settings
from batchserve.errors import PayloadTooLarge
from batchserve.models import LoadedModel, TensorSpec
from batchserve.server.wire import codecs
from tests.server.support import serving

MSGPACK = {"content-type": "application/msgpack"}


def _model(*inputs: TensorSpec, fn: Any = None) -> LoadedModel:
    def echo(batch: Any) -> Any:
        return batch["a"] + batch["b"] if isinstance(batch, dict) else batch * 2

    return LoadedModel("m", "test", fn or echo, inputs=inputs)


def _tensor(dtype: str, shape: list[int], data: bytes) -> dict[str, Any]:
    return {"dtype": dtype, "shape": shape, "data": data}


async def test_more_rows_than_the_queue_can_hold_are_refused_before_they_are_built() -> None:
    settings = Settings(max_queue_size=100)
    async with serving(settings, _model(TensorSpec("x", (-1,), "float32"))) as (_, client):
        # 16.7 million empty rows in 16 MiB of msgpack: one byte each.
        rows = 16 * 1024 * 1024 - 32
        body = b"\x81\xa9instances\xdd" + rows.to_bytes(4, "big") + b"\x90" * rows
        many = await client.post("/predict", content=body, headers=MSGPACK)
        json_rows = await client.post("/predict", json={"instances": [[1.0]] * 101})
        binary = await client.post(
            "/predict",
            content=msgpack.packb({"instances": _tensor("float32", [101, 1], b"\0" * 404)}),
            headers=MSGPACK,
        )
    assert [many.status_code, json_rows.status_code, binary.status_code] == [413, 413, 413]
    assert "max_queue_size=100" in json_rows.json()["error"]


async def test_bodies_of_tiny_containers_are_refused_while_they_are_counted() -> None:
    async with serving(Settings(), _model(TensorSpec("x", (-1,), "float32"))) as (_, client):
        json_lists = b'{"instances": [' + b"[[]]," * 200_000 + b"[[]]]}"
        msgpack_lists = b"\x81\xa9instances\x91\xdc\xff\xff" + b"\x90" * 0xFFFF
        refused = [
            await client.post(
                "/predict", content=json_lists, headers={"content-type": "application/json"}
            ),
            await client.post("/predict", content=msgpack_lists, headers=MSGPACK),
        ]
    for response in refused:
        assert response.status_code in (413, 422), response.text
        assert (
            "arrays or objects" in response.json()["error"]
            or "max_queue_size" in (response.json()["error"])
        )


def test_a_json_body_over_an_eighth_of_the_body_limit_is_refused_before_parsing() -> None:
    limits = codecs.DecodeLimits(body_bytes=4096, rows=100)
    with pytest.raises(PayloadTooLarge, match="value by value"):
        codecs.decode_predict(b'{"instances": [[' + b"0," * 600 + b"0]]}", None, limits=limits)


@pytest.mark.parametrize(
    "shape", [[0, 2**31 - 1, 2**31 - 1], [0, 2**62], [2**31 - 1] * 3], ids=["zero", "huge", "big"]
)
async def test_absurd_shapes_are_4xx_on_every_wire(shape: list[int]) -> None:
    model = _model(TensorSpec("x", (-1,), "float32"))
    async with serving(Settings(), model) as (_, client):
        tensor = msgpack.packb({"instances": _tensor("float32", shape, b"")})
        as_msgpack = await client.post("/predict", content=tensor, headers=MSGPACK)
        doc = {"inputs": [{"name": "x", "shape": shape, "datatype": "FP32", "data": []}]}
        as_v2 = await client.post("/v2/models/m/infer", content=orjson.dumps(doc))
    assert 400 <= as_msgpack.status_code < 500, as_msgpack.text
    assert as_v2.status_code == 400, as_v2.text


async def test_a_v2_bytes_tensor_cannot_claim_more_elements_than_its_bytes_carry() -> None:
    model = _model(TensorSpec("s", (), "bytes"), fn=lambda b: np.zeros(len(b)))
    head = {
        "inputs": [
            {"name": "s", "shape": [200_000_000], "datatype": "BYTES"}
            | {"parameters": {"binary_data_size": 8}}
        ]
    }
    header = orjson.dumps(head)
    body = header + struct.pack("<I", 4) + b"abcd"
    async with serving(Settings(), model) as (_, client):
        response = await client.post(
            "/v2/models/m/infer",
            content=body,
            headers={"inference-header-content-length": str(len(header))},
        )
    assert response.status_code == 400
    assert "cannot fit" in response.json()["error"]


def test_a_long_accept_header_is_never_kept_in_a_cache() -> None:
    before = codecs._cached_choice.cache_info().currsize
    for i in range(50):
        accept = f"application/msgpack;x={i};" + "y" * 2000
        assert codecs.response_format(codecs.WireFormat.JSON, accept) is codecs.WireFormat.MSGPACK
    assert codecs._cached_choice.cache_info().currsize == before


# -- one model contract on every route -----------------------------------------------------

INT_ONE = _model(TensorSpec("x", (2,), "int32"))
INT_TWO = _model(TensorSpec("a", (2,), "int32"), TensorSpec("b", (2,), "int32"))


@pytest.mark.parametrize(("value", "accepted"), [(1.0, True), (1.5, False), (True, False)])
async def test_an_int32_input_gets_the_same_answer_on_every_route(
    value: float, accepted: bool
) -> None:
    statuses = []
    async with serving(Settings(), INT_ONE) as (_, client):
        statuses.append(
            (await client.post("/predict", json={"instances": [[value, 2]]})).status_code
        )
        v2 = {"inputs": [{"name": "x", "shape": [1, 2], "datatype": "INT32", "data": [value, 2]}]}
        statuses.append((await client.post("/v2/models/m/infer", json=v2)).status_code)
    async with serving(Settings(), INT_TWO) as (_, client):
        row = {"a": [value, 2], "b": [1, 1]}
        statuses.append((await client.post("/predict", json={"instances": [row]})).status_code)
        v2 = {
            "inputs": [
                {"name": "a", "shape": [1, 2], "datatype": "INT32", "data": [value, 2]},
                {"name": "b", "shape": [1, 2], "datatype": "INT32", "data": [1, 1]},
            ]
        }
        statuses.append((await client.post("/v2/models/m/infer", json=v2)).status_code)
    if accepted:
        assert statuses == [200, 200, 200, 200]
    else:
        assert statuses == [422, 400, 422, 400]  # /predict's refusal, V2's


# -- the batch is the model's to write into, on every wire ------------------------------------


def _scribbler(batch: np.ndarray) -> np.ndarray:
    out = batch * 2
    batch[:] = 0  # scratch space, as some models use it
    return out


SCRIBBLER = _model(TensorSpec("x", (4,), "float32"), fn=_scribbler)
ROW = np.array([[1.0, 2.0, 3.0, 4.0]], dtype=np.float32)


async def test_a_model_that_writes_into_its_input_gets_the_same_batch_on_every_wire() -> None:
    async with serving(Settings(), SCRIBBLER) as (_, client):
        as_json = await client.post("/predict", json={"instances": ROW.tolist()})
        binary = msgpack.packb({"instances": _tensor("float32", [1, 4], ROW.tobytes())})
        as_binary = await client.post("/predict", content=binary, headers=MSGPACK)
        numpy_body = msgpack.packb({"instances": ROW}, default=msgpack_numpy.encode)
        as_numpy = await client.post("/predict", content=numpy_body, headers=MSGPACK)
        header = orjson.dumps(
            {
                "inputs": [
                    {"name": "x", "shape": [1, 4], "datatype": "FP32"}
                    | {"parameters": {"binary_data_size": 16}}
                ]
            }
        )
        as_v2 = await client.post(
            "/v2/models/m/infer",
            content=header + ROW.tobytes(),
            headers={"inference-header-content-length": str(len(header))},
        )
    for response in (as_json, as_binary, as_numpy, as_v2):
        assert response.status_code == 200, response.text
    assert orjson.loads(as_json.content)["predictions"] == [[2.0, 4.0, 6.0, 8.0]]
    numpy_answer = msgpack.unpackb(as_numpy.content, object_hook=msgpack_numpy.decode)
    assert np.asarray(numpy_answer["predictions"]).tolist() == [[2.0, 4.0, 6.0, 8.0]]
    assert orjson.loads(as_v2.content)["outputs"][0]["data"] == [2.0, 4.0, 6.0, 8.0]
