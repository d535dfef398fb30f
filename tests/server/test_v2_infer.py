"""V2 inference in JSON: tensors in and out, outputs, datatypes, and the shared engine."""

from __future__ import annotations

import asyncio

import orjson
import pytest

from batchserve.batching import BatchPriority
from batchserve.config import Settings
from batchserve.server.inference.policy import schedule_policy
from tests.server.support import serving, until

SCALE = Settings(model="tests.server.v2_models:scale", admin_token="t" * 16)
AUTH = {"authorization": "Bearer " + "t" * 16}
INFER = "/v2/models/scale/infer"


def x_input(rows: list[list[float]], **extra) -> dict:
    return {"name": "x", "shape": [len(rows), 4], "datatype": "FP32", "data": rows, **extra}


def outputs_by_name(body: dict) -> dict:
    return {out["name"]: out for out in body["outputs"]}


async def test_rows_come_back_in_order_with_the_id_echoed() -> None:
    async with serving(SCALE) as (_, client):
        response = await client.post(
            INFER, json={"id": "req-7", "inputs": [x_input([[1, 2, 3, 4], [5, 6, 7, 8]])]}
        )
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert "inference-header-content-length" not in response.headers
    body = response.json()
    assert (body["model_name"], body["model_version"], body["id"]) == ("scale", "1", "req-7")
    y = outputs_by_name(body)["y"]
    assert y == {
        "name": "y",
        "datatype": "FP32",
        "shape": [2, 4],
        "data": [2, 4, 6, 8, 10, 12, 14, 16],
    }


async def test_flat_and_nested_data_are_the_same_tensor() -> None:
    flat = {"name": "x", "shape": [2, 4], "datatype": "FP32", "data": list(range(8))}
    nested = x_input([[0, 1, 2, 3], [4, 5, 6, 7]])
    async with serving(SCALE) as (_, client):
        a = await client.post(INFER, json={"inputs": [flat]})
        b = await client.post(INFER, json={"inputs": [nested]})
    assert outputs_by_name(a.json())["y"]["data"] == outputs_by_name(b.json())["y"]["data"]


async def test_only_requested_outputs_are_returned_in_requested_order() -> None:
    request = {"inputs": [x_input([[1, 1, 1, 1]])], "outputs": [{"name": "call"}, {"name": "y"}]}
    async with serving(SCALE) as (_, client):
        body = (await client.post(INFER, json=request)).json()
    assert [out["name"] for out in body["outputs"]] == ["call", "y"]
    assert "id" not in body


async def test_every_common_datatype_round_trips_through_a_multi_io_model() -> None:
    request = {
        "inputs": [
            {"name": "f32", "shape": [2, 3], "datatype": "FP32", "data": [1, 2, 3, 4, 5, 6.5]},
            {"name": "i64", "shape": [2, 2], "datatype": "INT64", "data": [[1, 2], [3, 2**40]]},
            {"name": "f64", "shape": [2], "datatype": "FP64", "data": [1.5, -2]},
            {
                "name": "u8",
                "shape": [2, 4],
                "datatype": "UINT8",
                "data": [0, 1, 2, 3, 4, 5, 6, 255],
            },
            {"name": "flag", "shape": [2], "datatype": "BOOL", "data": [True, False]},
        ]
    }
    async with serving(Settings(model="tests.server.v2_models:multi_io")) as (_, client):
        response = await client.post("/v2/models/multi_io/infer", json=request)
    assert response.status_code == 200, response.text
    out = outputs_by_name(response.json())
    assert out["f32_twice"]["data"] == [2, 4, 6, 8, 10, 13]
    assert (out["i64_sum"]["datatype"], out["i64_sum"]["data"]) == ("INT64", [3, 3 + 2**40])
    assert (out["f64_neg"]["datatype"], out["f64_neg"]["data"]) == ("FP64", [-1.5, 2.0])
    assert out["u8_inv"]["data"] == [255, 254, 253, 252, 251, 250, 249, 0]
    assert out["u8_inv"]["shape"] == [2, 4]
    assert (out["flag_not"]["datatype"], out["flag_not"]["data"]) == ("BOOL", [False, True])


async def test_json_integers_are_coerced_to_the_declared_float_type() -> None:
    async with serving(SCALE) as (_, client):
        body = (await client.post(INFER, json={"inputs": [x_input([[1, 2, 3, 4]])]})).json()
    assert outputs_by_name(body)["y"]["datatype"] == "FP32"


async def test_bytes_tensors_carry_utf8_strings_in_json() -> None:
    request = {
        "inputs": [{"name": "text", "shape": [2], "datatype": "BYTES", "data": ["ab", "çd"]}]
    }
    async with serving(Settings(model="tests.server.v2_models:texts")) as (_, client):
        response = await client.post("/v2/models/texts/infer", json=request)
    out = outputs_by_name(response.json())
    assert out["length"]["data"] == [2, 3]  # bytes, not characters
    assert (out["upper"]["datatype"], out["upper"]["data"]) == ("BYTES", ["AB", "çD"])


async def test_a_text_model_receives_str_and_answers_bytes() -> None:
    request = {"inputs": [{"name": "word", "shape": [1], "datatype": "BYTES", "data": ["héllo"]}]}
    async with serving(Settings(model="tests.server.v2_models:words")) as (_, client):
        response = await client.post("/v2/models/words/infer", json=request)
    out = outputs_by_name(response.json())["reversed"]
    assert (out["datatype"], out["data"]) == ("BYTES", ["olléh"])


async def test_an_undeclared_model_takes_one_input_of_any_name_and_type() -> None:
    request = {
        "inputs": [{"name": "anything", "shape": [2, 2], "datatype": "INT32", "data": [1, 2, 3, 4]}]
    }
    async with serving(Settings(model="tests.server.v2_models:plus_one")) as (_, client):
        response = await client.post("/v2/models/plus_one/infer", json=request)
    assert response.json()["outputs"] == [
        {"name": "output0", "datatype": "INT32", "shape": [2, 2], "data": [2, 3, 4, 5]}
    ]


async def test_v2_rows_batch_together_with_predict_rows() -> None:
    async with serving(SCALE) as (app, client):
        await client.post("/admin/pause", headers=AUTH)
        predict = asyncio.create_task(client.post("/predict", json={"instances": [[1, 1, 1, 1]]}))
        await until(lambda: len(app.state.processor) == 1)
        v2 = asyncio.create_task(client.post(INFER, json={"inputs": [x_input([[2] * 4, [3] * 4])]}))
        await until(lambda: len(app.state.processor) == 3)
        await client.post("/admin/resume", headers=AUTH)
        v2_body, predict_body = (await v2).json(), (await predict).json()
    assert outputs_by_name(v2_body)["batch_size"]["data"] == [3, 3]
    assert predict_body["predictions"][0]["batch_size"] == 3
    assert outputs_by_name(v2_body)["y"]["data"] == [4] * 4 + [6] * 4


async def test_priority_parameter_overtakes_queued_low_priority_work() -> None:
    settings = Settings(model=SCALE.model, admin_token=SCALE.admin_token, max_batch_size=1)
    async with serving(settings) as (app, client):
        await client.post("/admin/pause", headers=AUTH)
        low = asyncio.create_task(
            client.post(INFER, json={"parameters": {"priority": 3}, "inputs": [x_input([[1] * 4])]})
        )
        await until(lambda: len(app.state.processor) == 1)
        high = asyncio.create_task(
            client.post(INFER, json={"parameters": {"priority": 1}, "inputs": [x_input([[2] * 4])]})
        )
        await until(lambda: len(app.state.processor) == 2)
        await client.post("/admin/resume", headers=AUTH)
        low_call = outputs_by_name((await low).json())["call"]["data"][0]
        high_call = outputs_by_name((await high).json())["call"]["data"][0]
    assert high_call < low_call


async def test_the_x_priority_header_applies_without_a_priority_parameter() -> None:
    settings = Settings(model=SCALE.model, admin_token=SCALE.admin_token, max_batch_size=1)
    body = orjson.dumps({"inputs": [x_input([[1] * 4])]})
    async with serving(settings) as (app, client):
        await client.post("/admin/pause", headers=AUTH)
        low = asyncio.create_task(client.post(INFER, content=body, headers={"x-priority": "low"}))
        await until(lambda: len(app.state.processor) == 1)
        high = asyncio.create_task(client.post(INFER, content=body, headers={"x-priority": "high"}))
        await until(lambda: len(app.state.processor) == 2)
        await client.post("/admin/resume", headers=AUTH)
        low_call = outputs_by_name((await low).json())["call"]["data"][0]
        high_call = outputs_by_name((await high).json())["call"]["data"][0]
    assert high_call < low_call


SETTINGS = Settings(request_timeout_s=30.0)


@pytest.mark.parametrize(
    ("params", "headers", "expected"),
    [
        ({}, {}, (BatchPriority.NORMAL, 30.0)),
        ({"priority": 0}, {"x-priority": "high"}, (BatchPriority.HIGH, 30.0)),
        ({"priority": 1}, {"x-priority": "low"}, (BatchPriority.HIGH, 30.0)),
        ({"priority": 2}, {}, (BatchPriority.NORMAL, 30.0)),
        ({"priority": 3}, {}, (BatchPriority.LOW, 30.0)),
        ({"priority": 1000}, {}, (BatchPriority.LOW, 30.0)),
        ({"timeout": 250_000}, {}, (BatchPriority.NORMAL, 0.25)),
        ({"timeout": 0}, {"x-request-timeout-seconds": "2"}, (BatchPriority.NORMAL, 2.0)),
        ({"timeout": 5_000_000}, {"x-request-timeout-seconds": "1"}, (BatchPriority.NORMAL, 5.0)),
    ],
)
def test_schedule_policy_maps_triton_levels_and_microseconds(params, headers, expected) -> None:
    assert schedule_policy(params, headers, SETTINGS) == expected
