"""Admin routes: token handling, pause/resume, batch size; the token never leaks."""

from __future__ import annotations

import asyncio
import logging

import orjson
import pytest

from batchserve.config import Settings
from tests.server.support import RecordingModel, recording_model, serving, until

TOKEN = "s3cret-admin-token-0123456789"
AUTH = {"authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def settings() -> Settings:
    return Settings(admin_token=TOKEN)


async def test_admin_is_disabled_without_a_configured_token() -> None:
    async with serving(Settings()) as (_, client):
        response = await client.post("/admin/pause", headers=AUTH)
    assert response.status_code == 403
    assert "BATCHSERVE_ADMIN_TOKEN" in response.json()["error"]


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({}, 401),
        ({"authorization": "Basic abc"}, 401),
        ({"authorization": "Bearer"}, 401),
        ({"authorization": "Bearer wrong"}, 403),
        ({"authorization": f"Bearer {TOKEN}x"}, 403),
        ({"x-admin-token": TOKEN}, 401),
        ({"authorization": TOKEN}, 401),
    ],
)
async def test_admin_refuses_missing_or_wrong_tokens(settings, headers, status) -> None:
    async with serving(settings) as (app, client):
        response = await client.post("/admin/pause", headers=headers)
        assert response.status_code == status
        assert TOKEN not in response.text
        assert not app.state.processor.is_paused
    if status == 401:
        assert response.headers["www-authenticate"].startswith("Bearer ")


async def test_pause_holds_requests_and_resume_releases_them(settings) -> None:
    model = RecordingModel()
    async with serving(settings, recording_model(model)) as (app, client):
        paused = await client.post("/admin/pause", headers=AUTH)
        assert paused.status_code == 200
        assert paused.json() == {"paused": True, "queue_size": 0}
        body = orjson.dumps({"instances": [[3.0] * 4]})
        task = asyncio.create_task(
            client.post("/predict", content=body, headers={"content-type": "application/json"})
        )
        await until(lambda: len(app.state.processor) == 1)
        assert 3.0 not in model.rows_seen
        health = (await client.get("/health")).json()
        assert health["paused"] is True
        resumed = await client.post("/admin/resume", headers=AUTH)
        assert resumed.json()["paused"] is False
        assert (await task).json()["predictions"] == [[6.0] * 4]


async def test_batch_size_can_be_read_and_set(settings) -> None:
    async with serving(settings) as (_, client):
        current = await client.get("/admin/batch-size", headers=AUTH)
        assert current.status_code == 200
        assert current.json()["max_batch_size"] == 128
        changed = await client.put("/admin/batch-size", headers=AUTH, json={"batch_size": 5})
        assert changed.json()["batch_size"] == 5
        too_big = await client.put("/admin/batch-size", headers=AUTH, json={"batch_size": 999})
        assert too_big.status_code == 422
        assert "max_batch_size" in too_big.json()["error"]
        not_a_number = await client.put("/admin/batch-size", headers=AUTH, json={"batch_size": "x"})
        assert not_a_number.status_code == 422


@pytest.mark.parametrize(
    "body", [b"", b"{", b"batch_size=5", b'{"batch_size": 5', b"[5]", b"5", b'"5"', b"null"]
)
async def test_batch_size_refuses_a_body_that_is_not_a_json_object_with_400(settings, body) -> None:
    async with serving(settings) as (_, client):
        before = (await client.get("/admin/batch-size", headers=AUTH)).json()
        response = await client.put(
            "/admin/batch-size",
            headers={**AUTH, "content-type": "application/json"},
            content=body,
        )
        after = (await client.get("/admin/batch-size", headers=AUTH)).json()
    assert response.status_code == 400
    assert response.json()["code"] == "malformed_request"
    assert after == before


@pytest.mark.parametrize(
    ("body", "named"),
    [
        ({"batch_size": 5, "batch_sise": 6}, "batch_sise"),
        ({"batch_size": 5, "max_batch_size": 64}, "max_batch_size"),
        ({"batch_size": 5, "min_batch_size": 1}, "min_batch_size"),
        ({"target": 5}, "target"),
        ({}, "batch_size"),
        ({"batch_size": 0}, "batch_size"),
        ({"batch_size": [5]}, "batch_size"),
    ],
)
async def test_batch_size_refuses_unknown_or_bad_fields_naming_them(settings, body, named) -> None:
    async with serving(settings) as (_, client):
        before = (await client.get("/admin/batch-size", headers=AUTH)).json()
        response = await client.put("/admin/batch-size", headers=AUTH, json=body)
        after = (await client.get("/admin/batch-size", headers=AUTH)).json()
    assert response.status_code == 422
    assert response.json()["code"] == "invalid_input"
    assert named in response.json()["error"]
    assert after == before


@pytest.mark.parametrize(
    ("configured", "headers", "status"),
    [
        (TOKEN, {}, 401),
        (TOKEN, {"authorization": "Bearer wrong"}, 403),
        (None, AUTH, 403),
    ],
)
async def test_batch_size_body_is_read_only_after_the_token_is_accepted(
    configured, headers, status
) -> None:
    bodies = (b"{", b'{"bogus": 1}', b'{"batch_size": 5}')
    async with serving(Settings(admin_token=configured)) as (app, client):
        before = app.state.processor.current_batch_size
        statuses = [
            (await client.put("/admin/batch-size", headers=headers, content=body)).status_code
            for body in bodies
        ]
        after = app.state.processor.current_batch_size
    assert statuses == [status] * len(bodies)
    assert after == before != 5


async def test_token_never_appears_in_stats_metrics_errors_or_logs(settings, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    async with serving(settings) as (_, client):
        texts = [
            (await client.get("/stats")).text,
            (await client.get("/metrics")).text,
            (await client.post("/admin/pause", headers={"authorization": "Bearer nope"})).text,
            (await client.post("/admin/pause", headers=AUTH)).text,
            (await client.get("/openapi.json")).text,
        ]
        stats = (await client.get("/stats")).json()
    assert stats["settings"]["admin_enabled"] is True
    assert "admin_token" not in stats["settings"]
    for text in [*texts, caplog.text]:
        assert TOKEN not in text
