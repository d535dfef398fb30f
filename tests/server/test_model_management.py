"""Loading, reloading and unloading the served model: the repository routes, `/admin/model`,
versions, and a reload that drops nothing."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import numpy as np
import orjson
import pytest

from batchserve.batching import BatchProcessorConfig
from batchserve.config import Settings
from batchserve.metrics import Metrics
from batchserve.server.engine import ServingEngine
from batchserve.server.statistics import EngineCollector, ModelStatistics
from tests.server.support import RecordingModel, recording_model, serving, until

TOKEN = "model-admin-token-0123456789"
AUTH = {"authorization": f"Bearer {TOKEN}"}
JSON = {"content-type": "application/json"}
SCALE = "tests.server.v2_models:scale"
TRIPLE = "tests.server.v2_models:triple"
SETTINGS = Settings(model=SCALE, admin_token=TOKEN)
LOAD = "/v2/repository/models/scale/load"
UNLOAD = "/v2/repository/models/scale/unload"


def load_body(reference: str) -> dict[str, Any]:
    """What tritonclient's ``load_model(name, config=json.dumps({"model": reference}))`` sends."""
    return {"parameters": {"config": json.dumps({"model": reference})}}


def infer_body(rows: int = 1) -> dict[str, Any]:
    data = [1.0] * (4 * rows)
    return {"inputs": [{"name": "x", "shape": [rows, 4], "datatype": "FP32", "data": data}]}


async def answer(client: httpx.AsyncClient) -> tuple[str, list[float]]:
    """The model version and ``y`` row of one inference of ``[1, 1, 1, 1]``."""
    response = await client.post("/v2/models/scale/infer", json=infer_body())
    assert response.status_code == 200, response.text
    body = response.json()
    y = next(o for o in body["outputs"] if o["name"] == "y")
    return body["model_version"], y["data"]


async def test_the_repository_index_lists_the_served_version() -> None:
    async with serving(SETTINGS) as (_, client):
        index = await client.post("/v2/repository/index")
        ready_only = await client.post("/v2/repository/index", json={"ready": True})
        bad = await client.post("/v2/repository/index", json={"ready": "yes"})
    entry = {"name": "scale", "version": "1", "state": "READY", "reason": ""}
    assert (index.status_code, index.json()) == (200, [entry])
    assert ready_only.json() == [entry]
    assert bad.status_code == 400


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [("POST", LOAD, None), ("POST", UNLOAD, None), ("POST", "/admin/model", None)],
)
@pytest.mark.parametrize(
    ("settings", "headers", "status"),
    [
        (Settings(model=SCALE), AUTH, 403),
        (SETTINGS, {}, 401),
        (SETTINGS, {"authorization": "Bearer wrong"}, 403),
    ],
)
async def test_load_and_unload_need_the_admin_token(
    method: str, path: str, body: Any, settings: Settings, headers: dict[str, str], status: int
) -> None:
    async with serving(settings) as (_, client):
        response = await client.request(method, path, json=body, headers=headers)
        ready = await client.get("/v2/models/scale/ready")
        index = (await client.post("/v2/repository/index")).json()
    assert response.status_code == status
    assert TOKEN not in response.text
    assert ready.status_code == 200
    assert index[0]["version"] == "1"


async def test_unload_answers_503_model_unavailable_until_the_next_load() -> None:
    async with serving(SETTINGS) as (_, client):
        unloaded = await client.post(UNLOAD, headers=AUTH, json={"parameters": {}})
        infer = await client.post("/v2/models/scale/infer", json=infer_body())
        predict = await client.post("/predict", json={"instances": [[1.0] * 4]})
        seen = {
            path: (await client.get(path)).status_code
            for path in ("/v2/models/scale/ready", "/v2/health/ready", "/health/ready")
        }
        metadata = await client.get("/v2/models/scale")
        health = (await client.get("/health/ready")).json()
        index = (await client.post("/v2/repository/index")).json()
        ready_only = (await client.post("/v2/repository/index", json={"ready": True})).json()
        stats = (await client.get("/stats")).json()["model"]
        loaded = await client.post(LOAD, headers=AUTH)
        version, y = await answer(client)
        ready = await client.get("/health/ready")
    assert unloaded.status_code == 200
    assert unloaded.json() == {
        "name": "scale",
        "version": "1",
        "platform": "batchserve_python",
        "state": "UNAVAILABLE",
    }
    for response in (infer, predict, metadata):
        assert response.status_code == 503
        assert response.json()["code"] == "model_unavailable"
    assert seen == dict.fromkeys(seen, 503)
    assert health == {"ready": False, "phase": "ready", "model_loaded": False}
    assert index == [
        {"name": "scale", "version": "1", "state": "UNAVAILABLE", "reason": "unloaded"}
    ]
    assert ready_only == []
    assert stats["loaded"] is False
    assert (loaded.status_code, loaded.json()["state"]) == (200, "READY")
    assert (version, y) == ("2", [2.0] * 4)
    assert ready.status_code == 200


async def test_a_load_serves_the_new_model_under_the_same_name_as_the_next_version() -> None:
    async with serving(SETTINGS) as (_, client):
        before = await answer(client)
        loaded = await client.post(LOAD, headers=AUTH, json=load_body(TRIPLE))
        after = await answer(client)
        metadata = (await client.get("/v2/models/scale")).json()
        old_version = await client.get("/v2/models/scale/versions/1")
        new_version = await client.get("/v2/models/scale/versions/2/ready")
        stat = (await client.get("/v2/models/scale/stats")).json()["model_stats"]
        stats = (await client.get("/stats")).json()["model"]
        again = await client.post("/admin/model", headers=AUTH)  # the current reference again
        metrics = (await client.get("/metrics")).text
    assert before == ("1", [2.0] * 4)
    assert loaded.status_code == 200
    assert loaded.json()["version"] == "2"
    assert after == ("2", [3.0] * 4)
    assert metadata["name"] == "scale"
    assert metadata["versions"] == ["2"]
    assert old_version.status_code == 404
    assert new_version.status_code == 200
    assert [s["version"] for s in stat] == ["2"]
    assert stats["version"] == "2"
    assert (again.status_code, again.json()["version"]) == (200, "3")
    assert 'batchserve_model_version_info{model="scale",version="3"} 1.0' in metrics
    assert 'batchserve_model_reloads_total{outcome="success"} 2.0' in metrics


@pytest.mark.parametrize(
    "reference", ["tests.server.v2_models:unloadable", "tests.server.v2_models:broken", "no_such"]
)
async def test_a_failed_load_leaves_the_served_model_serving(reference: str) -> None:
    async with serving(SETTINGS) as (_, client):
        v2 = await client.post(LOAD, headers=AUTH, json=load_body(reference))
        admin = await client.post("/admin/model", headers=AUTH, json={"model": reference})
        served = await answer(client)
        index = (await client.post("/v2/repository/index")).json()
        metrics = (await client.get("/metrics")).text
    assert v2.status_code == 400
    assert admin.status_code == 422
    for response in (v2, admin):
        assert response.json()["code"] == "model_load_failed"
    assert served == ("1", [2.0] * 4)
    assert index[0]["version"] == "1"
    assert 'batchserve_model_reloads_total{outcome="failure"} 2.0' in metrics
    assert 'batchserve_model_version_info{model="scale",version="1"} 1.0' in metrics


@pytest.mark.parametrize(
    ("path", "body"),
    [
        (LOAD, b"{not json"),
        (LOAD, b"[1]"),
        (LOAD, orjson.dumps({"parameters": {"config": "{"}})),
        (LOAD, orjson.dumps({"parameters": {"config": '{"model": "x", "max_batch_size": 8}'}})),
        (LOAD, orjson.dumps({"parameters": {"config": '{"model": ""}'}})),
        (LOAD, orjson.dumps({"parameters": {"file:1/model.onnx": "AAAA"}})),
        (LOAD, orjson.dumps({"model": "tests.server.v2_models:triple"})),
        (UNLOAD, orjson.dumps({"parameters": {"force": True}})),
        ("/v2/repository/models/other/load", b""),
        ("/admin/model", b"[]"),
        ("/admin/model", orjson.dumps({"model": "x", "name": "y"})),
        ("/admin/model", orjson.dumps({"model": "  "})),
    ],
)
async def test_malformed_load_requests_are_refused_and_change_nothing(
    path: str, body: bytes
) -> None:
    async with serving(SETTINGS) as (_, client):
        response = await client.post(path, content=body, headers={**AUTH, **JSON})
        served = await answer(client)
    assert 400 <= response.status_code < 500
    assert response.json()["code"] in {"malformed_request", "invalid_input", "model_not_found"}
    assert served == ("1", [2.0] * 4)


async def test_loads_run_one_at_a_time_and_each_adds_a_version() -> None:
    async with serving(SETTINGS) as (_, client):
        responses = await asyncio.gather(
            *(client.post(LOAD, headers=AUTH, json=load_body(TRIPLE)) for _ in range(3))
        )
        served = await answer(client)
    assert sorted(r.json()["version"] for r in responses) == ["2", "3", "4"]
    assert served == ("4", [3.0] * 4)


async def test_requests_running_or_queued_during_a_reload_are_answered_by_the_old_model() -> None:
    """Including a request whose rows are split between a running call and the queue."""
    model = RecordingModel(gated=True)
    model.gate.set()  # let the warm-up through
    # Batches of 2: the first request's third row waits in the queue while its first two are
    # in the model, so a reload that switched models between two calls would mix its answer.
    settings = Settings(admin_token=TOKEN, max_batch_size=2)
    body = orjson.dumps({"instances": [[1.0] * 4, [2.0] * 4, [3.0] * 4]})
    rows = np.array([[1.0] * 4, [2.0] * 4, [3.0] * 4])
    async with serving(settings, recording_model(model)) as (app, client):
        model.gate.clear()
        model.entered.clear()
        running = asyncio.create_task(client.post("/predict", content=body, headers=JSON))
        assert await asyncio.to_thread(model.entered.wait, 5)
        old = app.state.processor
        queued = asyncio.create_task(client.post("/predict", content=body, headers=JSON))
        await until(lambda: len(old) == 1 + 3)
        loaded = await client.post("/admin/model", headers=AUTH, json={"model": TRIPLE})
        ready = await client.get("/health/ready")
        after = await client.post("/predict", content=body, headers=JSON)
        model.gate.set()
        answers = [await running, await queued]
        for response in answers:
            assert response.status_code == 200
            assert np.array_equal(response.json()["predictions"], rows * 2)
        await until(old.shutdown_event.is_set)  # the old engine drained, then stopped
        name = app.state.model.name
    assert (loaded.status_code, loaded.json()["version"]) == (200, "2")
    assert ready.status_code == 200
    assert [p["y"] for p in after.json()["predictions"]] == (rows * 3).tolist()
    assert name == "echo"  # the served name stays
    assert old is not app.state.processor


def engine(factor: float, metrics: Metrics, version: str) -> ServingEngine:
    served = ServingEngine(
        BatchProcessorConfig(), EngineCollector(metrics, ModelStatistics("m", version))
    )
    served.start(lambda batch: batch * factor)
    return served


async def test_a_submission_to_a_handed_over_engine_is_queued_on_its_successor() -> None:
    metrics = Metrics(process_metrics=False)
    old, new = engine(2.0, metrics, "1"), engine(3.0, metrics, "2")
    try:
        before = await old.submit(np.ones(2))
        old.hand_over(new)
        after = await old.submit(np.ones(2))
    finally:
        old.stop()
        new.stop()
    assert (before.tolist(), after.tolist()) == ([2.0, 2.0], [3.0, 3.0])
    # The retired engine no longer sets the gauges its successor owns.
    old.collector.on_queue_depth({"high": 0, "normal": 7, "low": 0})
    assert metrics.registry.get_sample_value("batchserve_queue_depth", {"priority": "normal"}) == 0
    # stop() has run every pending book: each call is in its own version's statistics.
    assert old.statistics.as_dict()["inference_count"] == 1
    assert new.statistics.as_dict()["inference_count"] == 1
