"""Health, readiness, stats, metrics and the OpenAPI document."""

from __future__ import annotations

import asyncio

import orjson
import pytest

from batchserve.config import Settings
from batchserve.server.lifecycle import drain_service
from tests.server.support import RecordingModel, recording_model, serving, until

JSON = {"content-type": "application/json"}


async def test_ready_and_live_once_started() -> None:
    async with serving() as (_, client):
        live = await client.get("/health/live")
        ready = await client.get("/health/ready")
        full = await client.get("/health")
    assert live.status_code == 200
    assert live.json()["live"] is True
    assert ready.status_code == 200
    assert ready.json()["ready"] is True
    body = full.json()
    assert full.status_code == 200
    assert body["engine"]["state"] in ("healthy", "degraded")
    assert "memory_percent" in body["engine"]


async def test_stuck_batch_fails_liveness_with_a_reason() -> None:
    model = RecordingModel(gated=True)
    model.gate.set()  # let the warm-up through
    settings = Settings(stuck_batch_timeout=0.05)
    async with serving(settings, recording_model(model)) as (app, client):
        model.gate.clear()
        model.entered.clear()
        task = asyncio.create_task(
            client.post("/predict", content=orjson.dumps({"instances": [[1.0] * 4]}), headers=JSON)
        )
        assert await asyncio.to_thread(model.entered.wait, 5)
        processor = app.state.processor
        await until(lambda: processor.check_health().stuck_batches == 1)
        live = await client.get("/health/live")
        assert live.status_code == 503
        assert "stuck" in " ".join(live.json()["reasons"])
        metrics = (await client.get("/metrics")).text
        assert "batchserve_stuck_batches 1.0" in metrics
        model.gate.set()
        assert (await task).status_code == 200


async def test_readiness_fails_first_when_draining() -> None:
    async with serving(Settings(shutdown_grace_s=2.0)) as (app, client):
        drain = asyncio.create_task(drain_service(app.state))
        await until(lambda: not app.state.ready)
        ready = await client.get("/health/ready")
        assert ready.status_code == 503
        # Still serving inside the grace window.
        body = orjson.dumps({"instances": [[0.0] * 64]})
        served = await client.post("/predict", content=body, headers=JSON)
        assert served.status_code == 200
        await drain
        after = await client.post("/predict", content=body, headers=JSON)
        assert after.status_code == 503
        assert after.json()["code"] == "shutting_down"


async def test_stats_reports_engine_and_server_counters() -> None:
    async with serving() as (_, client):
        body = orjson.dumps({"instances": [[0.0] * 64] * 3})
        for _ in range(4):
            await client.post("/predict", content=body, headers=JSON)
        stats = (await client.get("/stats")).json()
    engine = stats["engine"]
    assert engine["total_processed"] >= 12
    for key in ("avg_batch_size", "p99_latency", "p95_queue_time", "throughput", "error_rate"):
        assert key in engine
    assert stats["server"]["status_200"] >= 4
    assert stats["model"] == {
        "name": "digits",
        "platform": "batchserve_numpy",
        "version": "1",
        "loaded": True,
    }


async def test_metrics_count_what_clients_saw() -> None:
    async with serving() as (app, client):
        good = orjson.dumps({"instances": [[0.0] * 64]})
        for _ in range(3):
            await client.post("/predict", content=good, headers=JSON)
        await client.post("/predict", content=b"{", headers=JSON)
        text = (await client.get("/metrics")).text
        registry = app.state.metrics.registry
        assert registry.get_sample_value("batchserve_ready") == 1.0
    assert "# TYPE batchserve_batch_size histogram" in text
    ok = registry.get_sample_value(
        "batchserve_requests_total", {"route": "/predict", "code": "200", "outcome": "success"}
    )
    bad = registry.get_sample_value(
        "batchserve_requests_total",
        {"route": "/predict", "code": "400", "outcome": "client_error"},
    )
    assert (ok, bad) == (3.0, 1.0)
    assert registry.get_sample_value("batchserve_rejected_total", {"reason": "invalid"}) == 1.0
    assert registry.get_sample_value("batchserve_ready") == 0.0  # after shutdown


async def test_openapi_documents_predict_formats_and_errors() -> None:
    async with serving() as (_, client):
        schema = (await client.get("/openapi.json")).json()
        docs = await client.get("/docs")
    predict = schema["paths"]["/predict"]["post"]
    assert set(predict["requestBody"]["content"]) == {"application/json", "application/msgpack"}
    for status in ("400", "413", "415", "422", "429", "500", "503", "504"):
        assert status in predict["responses"]
    headers = {p["name"] for p in predict["parameters"]}
    assert {"X-Priority", "X-Request-Timeout-Seconds"} <= headers
    for path in ("/health/live", "/health/ready", "/stats", "/metrics", "/admin/pause"):
        assert path in schema["paths"]
    assert docs.status_code == 200


@pytest.mark.parametrize(("ready_when_paused", "expected"), [(False, 503), (True, 200)])
async def test_readiness_while_paused_follows_the_setting(
    ready_when_paused: bool, expected: int
) -> None:
    settings = Settings(admin_token="t" * 16, ready_when_paused=ready_when_paused)
    bearer = {"authorization": "Bearer " + "t" * 16}
    async with serving(settings, recording_model(RecordingModel())) as (_, client):
        assert (await client.get("/health/ready")).status_code == 200
        assert (await client.post("/admin/pause", headers=bearer)).status_code == 200
        assert (await client.get("/health/ready")).status_code == expected
        assert (await client.get("/v2/health/ready")).status_code == expected
        await client.post("/admin/resume", headers=bearer)
        assert (await client.get("/health/ready")).status_code == 200


async def test_a_trailing_slash_is_not_redirected_to_a_client_supplied_host() -> None:
    async with serving(Settings(), recording_model(RecordingModel())) as (_, client):
        response = await client.get("/stats/", headers={"host": "evil.example"})
    assert response.status_code == 404
    assert "location" not in response.headers
