"""Triton's model configuration and statistics extensions: JSON shapes, and figures that add
up to the requests sent."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import httpx
import orjson
import pytest

from batchserve.config import Settings
from tests.server.support import serving
from tests.server.v2_models import POISON

SCALE = "tests.server.v2_models:scale"
JSON = {"content-type": "application/json"}


def infer_body(rows: int, value: float = 1.0) -> dict[str, Any]:
    data = [value] * (4 * rows)
    return {"inputs": [{"name": "x", "shape": [rows, 4], "datatype": "FP32", "data": data}]}


async def model_stat(client: httpx.AsyncClient, path: str = "/v2/models/scale/stats") -> Any:
    response = await client.get(path)
    assert response.status_code == 200, response.text
    (stat,) = response.json()["model_stats"]
    return stat


async def booked(client: httpx.AsyncClient, done: Callable[[Any], bool]) -> Any:
    """The statistics once `done(stat)` holds: the engine books a model call on its
    follow-up thread right after answering it, so the last answer's book may still be on
    its way when the client has it."""
    loop = asyncio.get_running_loop()
    end = loop.time() + 5.0
    while not done(stat := await model_stat(client)):
        if loop.time() > end:
            raise AssertionError(f"statistics never got there: {stat}")
        await asyncio.sleep(0.001)
    return stat


async def test_config_describes_the_model_and_the_live_engine_settings() -> None:
    settings = Settings(
        model=SCALE,
        processing_strategy="fixed",
        batch_timeout=0.004,
        max_batch_size=16,
        max_queue_size=500,
        request_timeout_s=2.5,
        model_instances=2,
    )
    async with serving(settings) as (_, client):
        config = (await client.get("/v2/models/scale/config")).json()
        versioned = (await client.get("/v2/models/scale/versions/1/config")).json()
    assert versioned == config
    assert config["name"] == "scale"
    assert config["platform"] == "batchserve_python"
    assert config["max_batch_size"] == 16
    assert config["input"] == [{"name": "x", "data_type": "TYPE_FP32", "dims": [4]}]
    assert config["output"] == [
        {"name": "y", "data_type": "TYPE_FP32", "dims": [4]},
        {"name": "batch_size", "data_type": "TYPE_INT64", "dims": [1], "reshape": {"shape": []}},
        {"name": "call", "data_type": "TYPE_INT64", "dims": [1], "reshape": {"shape": []}},
    ]
    assert config["dynamic_batching"] == {
        "preferred_batch_size": [],
        "max_queue_delay_microseconds": 4000,
        "preserve_ordering": False,
        "priority_levels": 3,
        "default_priority_level": 2,
        "default_queue_policy": {
            "timeout_action": "REJECT",
            "default_timeout_microseconds": 2_500_000,
            "allow_timeout_override": True,
            "max_queue_size": 500,
        },
    }
    assert config["instance_group"] == [{"name": "scale_0", "kind": "KIND_CPU", "count": 2}]


async def test_only_the_fixed_strategy_has_a_queue_delay_and_text_is_type_string() -> None:
    settings = Settings(model="tests.server.v2_models:texts", batch_timeout=0.5)
    async with serving(settings) as (_, client):
        config = (await client.get("/v2/models/texts/config")).json()
    assert config["dynamic_batching"]["max_queue_delay_microseconds"] == 0
    assert config["input"][0]["data_type"] == "TYPE_STRING"


@pytest.mark.parametrize(
    "path",
    [
        "/v2/models/other/config",
        "/v2/models/scale/versions/2/config",
        "/v2/models/other/stats",
        "/v2/models/scale/versions/7/stats",
    ],
)
async def test_config_and_stats_of_another_model_or_version_are_404(path: str) -> None:
    async with serving(Settings(model=SCALE)) as (_, client):
        response = await client.get(path)
    assert response.status_code == 404
    assert response.json()["code"] == "model_not_found"


async def test_statistics_count_the_requests_and_rows_sent() -> None:
    requests, rows = 6, 3
    async with serving(Settings(model=SCALE)) as (_, client):
        before = await model_stat(client)
        for _ in range(requests - 2):
            response = await client.post("/v2/models/scale/infer", json=infer_body(rows))
            assert response.status_code == 200
        for _ in range(2):  # the same model on the other route
            body = orjson.dumps({"instances": [[1.0] * 4] * rows})
            assert (await client.post("/predict", content=body, headers=JSON)).status_code == 200
        expected = before["inference_count"] + requests * rows
        after = await booked(client, lambda stat: stat["inference_count"] >= expected)
        everything = (await client.get("/v2/models/stats")).json()["model_stats"]
        versioned = await model_stat(client, "/v2/models/scale/versions/1/stats")
    assert everything == [after] == [versioned]
    assert after["name"] == "scale"
    assert after["version"] == "1"
    assert after["inference_count"] - before["inference_count"] == requests * rows
    executions = after["execution_count"] - before["execution_count"]
    assert 1 <= executions <= requests * rows
    inference = after["inference_stats"]
    assert inference["success"]["count"] - before["inference_stats"]["success"]["count"] == requests
    assert inference["success"]["ns"] > 0
    assert inference["fail"]["count"] == 0
    for stage in ("queue", "compute_input", "compute_infer", "compute_output"):
        assert inference[stage]["count"] == after["inference_count"]
    assert inference["compute_infer"]["ns"] > 0
    assert (
        sum(b["compute_infer"]["count"] for b in after["batch_stats"]) == (after["execution_count"])
    )
    assert (
        sum(b["batch_size"] * b["compute_infer"]["count"] for b in after["batch_stats"])
        == (after["inference_count"])
    )
    assert after["last_inference"] > 0 == before["last_inference"]  # ms since the epoch


async def test_failed_requests_and_rows_are_counted_as_failures() -> None:
    async with serving(Settings(model=SCALE)) as (_, client):
        before = await model_stat(client)
        poisoned = await client.post("/v2/models/scale/infer", json=infer_body(2, POISON))
        refused = await client.post("/v2/models/scale/infer", json={"inputs": []})
        elsewhere = await client.post("/v2/models/other/infer", json=infer_body(1))
        served = await client.post("/v2/models/scale/infer", json=infer_body(1))
        executions = before["execution_count"] + 2
        after = await booked(client, lambda stat: stat["execution_count"] >= executions)
    assert [poisoned.status_code, refused.status_code, elsewhere.status_code] == [500, 400, 404]
    assert served.status_code == 200
    fail = after["inference_stats"]["fail"]
    assert fail["count"] - before["inference_stats"]["fail"]["count"] == 2  # not the 404
    assert fail["ns"] > 0
    assert after["inference_stats"]["success"]["count"] == 1
    # The poisoned rows ran in model calls but are not inferences; the served row is.
    assert after["inference_count"] - before["inference_count"] == 1
