"""V2 health, server and model metadata, readiness, and the OpenAPI document."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from batchserve.config import Settings
from batchserve.server.app import create_app
from batchserve.server.lifecycle import drain_service
from tests.server.support import serving, until

SCALE = Settings(model="tests.server.v2_models:scale")
ROW = {"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}


async def test_server_metadata_names_the_supported_extensions() -> None:
    async with serving(SCALE) as (_, client):
        response = await client.get("/v2")
    assert response.status_code == 200
    body = response.json()
    assert body["name"] == "batchserve"
    assert body["version"]
    assert body["extensions"] == [
        "binary_tensor_data",
        "schedule_policy",
        "model_configuration",
        "model_repository",
        "statistics",
    ]


async def test_live_and_ready_answer_with_the_status_code() -> None:
    async with serving(SCALE) as (_, client):
        live = await client.get("/v2/health/live")
        ready = await client.get("/v2/health/ready")
    assert (live.status_code, live.json()) == (200, {"live": True})
    assert (ready.status_code, ready.json()) == (200, {"ready": True})


@pytest.mark.parametrize("path", ["/v2/models/scale", "/v2/models/scale/versions/1"])
async def test_model_metadata_prepends_the_batch_dimension(path) -> None:
    async with serving(SCALE) as (_, client):
        response = await client.get(path)
    assert response.status_code == 200
    assert response.json() == {
        "name": "scale",
        "versions": ["1"],
        "platform": "batchserve_python",
        "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 4]}],
        "outputs": [
            {"name": "y", "datatype": "FP32", "shape": [-1, 4]},
            {"name": "batch_size", "datatype": "INT64", "shape": [-1]},
            {"name": "call", "datatype": "INT64", "shape": [-1]},
        ],
    }


async def test_metadata_of_bytes_and_undeclared_models() -> None:
    async with serving(Settings(model="tests.server.v2_models:texts")) as (_, client):
        texts = (await client.get("/v2/models/texts")).json()
    async with serving(Settings(model="tests.server.v2_models:plus_one")) as (_, client):
        undeclared = (await client.get("/v2/models/plus_one")).json()
    assert texts["inputs"] == [{"name": "text", "datatype": "BYTES", "shape": [-1]}]
    assert texts["outputs"][1] == {"name": "upper", "datatype": "BYTES", "shape": [-1]}
    assert undeclared["inputs"] == []
    assert undeclared["outputs"] == [{"name": "output0", "datatype": "FP32", "shape": [-1, -1]}]


@pytest.mark.parametrize("path", ["/v2/models/scale/ready", "/v2/models/scale/versions/1/ready"])
async def test_model_ready_once_started(path) -> None:
    async with serving(SCALE) as (_, client):
        response = await client.get(path)
    assert (response.status_code, response.json()) == (200, {"name": "scale", "ready": True})


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v2/models/other"),
        ("GET", "/v2/models/other/ready"),
        ("GET", "/v2/models/scale/versions/2"),
        ("GET", "/v2/models/scale/versions/2/ready"),
        ("POST", "/v2/models/other/infer"),
        ("POST", "/v2/models/scale/versions/7/infer"),
    ],
)
async def test_unknown_model_or_version_is_404(method, path) -> None:
    async with serving(SCALE) as (_, client):
        response = await client.request(method, path, json={"inputs": [ROW]})
    assert response.status_code == 404
    assert response.json()["code"] == "model_not_found"
    assert "scale" in response.json()["error"]


async def test_everything_but_liveness_is_503_before_the_model_is_loaded() -> None:
    app = create_app(SCALE)  # the lifespan never runs: nothing is loaded
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        live = await client.get("/v2/health/live")
        ready = await client.get("/v2/health/ready")
        model_ready = await client.get("/v2/models/scale/ready")
        metadata = await client.get("/v2/models/scale")
        infer = await client.post("/v2/models/scale/infer", json={"inputs": [ROW]})
    assert live.status_code == 200
    assert (ready.status_code, ready.json()) == (503, {"ready": False})
    assert (model_ready.status_code, model_ready.json()) == (503, {"name": "scale", "ready": False})
    for response in (metadata, infer):
        assert response.status_code == 503
        assert response.json()["code"] == "not_ready"
        assert response.headers["retry-after"] == "1"


async def test_draining_reports_not_ready_then_refuses_inference() -> None:
    async with serving(Settings(model=SCALE.model, shutdown_grace_s=2.0)) as (app, client):
        drain = asyncio.create_task(drain_service(app.state))
        await until(lambda: not app.state.ready)
        assert (await client.get("/v2/health/ready")).status_code == 503
        assert (await client.get("/v2/models/scale/ready")).status_code == 503
        served = await client.post("/v2/models/scale/infer", json={"inputs": [ROW]})
        assert served.status_code == 200  # still serving inside the grace window
        await drain
        refused = await client.post("/v2/models/scale/infer", json={"inputs": [ROW]})
    assert refused.status_code == 503
    assert refused.json()["code"] == "shutting_down"


async def test_openapi_documents_the_v2_routes() -> None:
    async with serving(SCALE) as (_, client):
        doc = (await client.get("/openapi.json")).json()
    paths = doc["paths"]
    for path in (
        "/v2",
        "/v2/health/live",
        "/v2/health/ready",
        "/v2/models/{model_name}",
        "/v2/models/{model_name}/versions/{model_version}",
        "/v2/models/{model_name}/ready",
        "/v2/models/{model_name}/versions/{model_version}/ready",
        "/v2/models/{model_name}/versions/{model_version}/infer",
    ):
        assert path in paths
    infer = paths["/v2/models/{model_name}/infer"]["post"]
    assert set(infer["requestBody"]["content"]) == {"application/json", "application/octet-stream"}
    assert {"400", "404", "500", "503", "504"} <= set(infer["responses"])
    headers = {p["name"] for p in infer["parameters"] if p["in"] == "header"}
    assert "Inference-Header-Content-Length" in headers


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/v2/systemsharedmemory/status"), ("POST", "/v2/models/scale/trace/setting")],
)
async def test_other_v2_paths_are_404_in_the_v2_error_format(method, path) -> None:
    async with serving(SCALE) as (_, client):
        response = await client.request(method, path)
    assert response.status_code == 404
    assert path in response.json()["error"]
