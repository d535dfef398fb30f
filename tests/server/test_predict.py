"""`POST /predict`: formats, ordering, isolation and every error status."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import msgpack
import msgpack_numpy
import numpy as np
import orjson
import pytest
from sklearn.datasets import load_digits

from batchserve.config import Settings
from batchserve.server.app import create_app
from tests.server.support import POISON, RecordingModel, recording_model, serving, until


@pytest.fixture(params=[True, False], ids=["fast-path", "fastapi-route"])
def fast_path(request: pytest.FixtureRequest) -> bool:
    return bool(request.param)


@pytest.fixture
async def digits(fast_path: bool) -> AsyncIterator:
    async with serving(Settings(fast_path=fast_path)) as (_, client):
        yield client


def json_body(instances: object) -> dict:
    return {"content": orjson.dumps({"instances": instances}), "headers": JSON}


JSON = {"content-type": "application/json"}
MSGPACK = {"content-type": "application/msgpack"}


async def test_digits_are_classified(digits) -> None:
    data = load_digits()
    images, labels = data.data[:20], data.target[:20]
    response = await digits.post("/predict", **json_body(images.tolist()))
    assert response.status_code == 200
    predictions = response.json()["predictions"]
    assert len(predictions) == 20
    predicted = [p["label"] for p in predictions]
    assert np.mean(np.array(predicted) == labels) >= 0.9
    assert all(abs(sum(p["probabilities"]) - 1) < 1e-4 for p in predictions)


async def test_response_carries_request_id(digits) -> None:
    response = await digits.post(
        "/predict", **json_body([[0.0] * 64]) | {"headers": JSON | {"x-request-id": "abc-123"}}
    )
    assert response.headers["x-request-id"] == "abc-123"
    fresh = [await digits.post("/predict", **json_body([[0.0] * 64])) for _ in range(2)]
    ids = {r.headers["x-request-id"] for r in fresh}
    assert len(ids) == 2
    assert all(len(i) >= 16 for i in ids)


async def test_msgpack_lists_round_trip(digits) -> None:
    body = msgpack.packb({"instances": [[1.0] * 64, [2.0] * 64]})
    response = await digits.post("/predict", content=body, headers=MSGPACK)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/msgpack"
    predictions = msgpack.unpackb(response.content)["predictions"]
    assert len(predictions) == 2
    assert set(predictions[0]) == {"label", "probabilities"}


async def test_msgpack_binary_tensor_is_accepted(digits) -> None:
    batch = np.arange(3 * 64, dtype=np.float32).reshape(3, 64) % 17
    tensor = {"dtype": "float32", "shape": [3, 64], "data": batch.tobytes()}
    response = await digits.post(
        "/predict", content=msgpack.packb({"instances": tensor}), headers=MSGPACK
    )
    assert response.status_code == 200
    assert len(msgpack.unpackb(response.content)["predictions"]) == 3


async def test_msgpack_numpy_client_works_unchanged(digits) -> None:
    batch = np.full((2, 64), 3.0, dtype=np.float32)
    body = msgpack.packb({"instances": batch}, default=msgpack_numpy.encode)
    response = await digits.post("/predict", content=body, headers=MSGPACK)
    assert response.status_code == 200
    doc = msgpack.unpackb(response.content, object_hook=msgpack_numpy.decode)
    assert isinstance(doc["predictions"][0]["probabilities"], np.ndarray)


async def test_accept_header_picks_the_response_format(digits) -> None:
    response = await digits.post(
        "/predict",
        **json_body([[0.0] * 64]) | {"headers": JSON | {"accept": "application/msgpack"}},
    )
    assert response.headers["content-type"] == "application/msgpack"
    assert len(msgpack.unpackb(response.content)["predictions"]) == 1


@pytest.mark.parametrize(
    ("body", "headers", "status", "code"),
    [
        (b"{not json", JSON, 400, "malformed_request"),
        (b'{"rows": [[1]]}', JSON, 400, "malformed_request"),
        (b'{"instances": []}', JSON, 422, "invalid_input"),
        (orjson.dumps({"instances": [[0.0] * 63]}), JSON, 422, "invalid_input"),
        (orjson.dumps({"instances": [["a"] * 64]}), JSON, 422, "invalid_input"),
        (b'{"instances": [[NaN]]}', JSON, 400, "malformed_request"),
        (b"instances", {"content-type": "text/plain"}, 415, "unsupported_media_type"),
        (orjson.dumps({"instances": [[0.0] * 64]}), JSON | {"x-priority": "urgent"}, 400, None),
        (
            orjson.dumps({"instances": [[0.0] * 64]}),
            JSON | {"x-request-timeout-seconds": "-1"},
            400,
            None,
        ),
    ],
)
async def test_bad_requests_get_clear_errors(digits, body, headers, status, code) -> None:
    response = await digits.post("/predict", content=body, headers=headers)
    assert response.status_code == status, response.text
    error = response.json()
    assert error["error"]
    if code is not None:
        assert error["code"] == code


async def test_non_finite_values_are_refused() -> None:
    model = RecordingModel()
    async with serving(model=recording_model(model)) as (_, client):
        body = msgpack.packb({"instances": [[float("nan"), 0.0, 0.0, 0.0]]})
        response = await client.post("/predict", content=body, headers=MSGPACK)
    assert response.status_code == 422
    assert not any(np.isnan(v) for v in model.rows_seen)


async def test_oversized_body_is_refused_before_reading(fast_path: bool) -> None:
    settings = Settings(max_body_bytes=1024, fast_path=fast_path)
    async with serving(settings) as (_, client):
        response = await client.post("/predict", **json_body([[0.0] * 64] * 40))
    assert response.status_code == 413
    assert response.json()["code"] == "payload_too_large"


async def test_rows_come_back_in_order_even_across_batches(fast_path: bool) -> None:
    model = RecordingModel()
    settings = Settings(fast_path=fast_path, max_batch_size=3, initial_batch_size=3)
    async with serving(settings, recording_model(model)) as (_, client):
        rows = [[float(i)] * 4 for i in range(10)]
        response = await client.post("/predict", **json_body(rows))
    assert response.status_code == 200
    assert response.json()["predictions"] == [[2.0 * i] * 4 for i in range(10)]
    assert max(len(b) for b in model.batches) <= 3


async def test_concurrent_callers_each_get_their_own_rows(fast_path: bool) -> None:
    model = RecordingModel()
    async with serving(Settings(fast_path=fast_path), recording_model(model)) as (_, client):
        responses = await asyncio.gather(
            *(client.post("/predict", **json_body([[float(i)] * 4])) for i in range(200))
        )
    for i, response in enumerate(responses):
        assert response.json()["predictions"] == [[2.0 * i] * 4]
    assert len(model.batches) < 200  # rows were batched together


async def test_poison_row_fails_only_its_own_request(fast_path: bool) -> None:
    model = RecordingModel()
    async with serving(Settings(fast_path=fast_path), recording_model(model)) as (app, client):
        processor = app.state.processor
        processor.pause()
        tasks = [
            asyncio.create_task(client.post("/predict", **json_body([[value] * 4])))
            for value in (1.0, POISON, 3.0, 4.0)
        ]
        await until(lambda: len(processor) == 4)
        processor.resume()
        responses = await asyncio.gather(*tasks)
    assert [r.status_code for r in responses] == [200, 500, 200, 200]
    assert responses[1].json()["code"] == "model_error"
    assert responses[3].json()["predictions"] == [[8.0] * 4]
    assert len(model.batches[1]) == 4  # after warm-up: the poison arrived with the others


async def test_full_queue_answers_429_with_retry_after() -> None:
    settings = Settings(max_queue_size=2)
    async with serving(settings, recording_model(RecordingModel())) as (app, client):
        app.state.processor.pause()
        first = asyncio.create_task(client.post("/predict", **json_body([[1.0] * 4] * 2)))
        await until(lambda: len(app.state.processor) == 2)
        response = await client.post("/predict", **json_body([[2.0] * 4]))
        assert response.status_code == 429
        assert response.headers["retry-after"] == "1"
        assert response.json()["code"] == "queue_full"
        app.state.processor.resume()
        assert (await first).status_code == 200


async def test_deadline_passing_in_the_queue_answers_504_and_skips_the_model() -> None:
    model = RecordingModel()
    async with serving(model=recording_model(model)) as (app, client):
        app.state.processor.pause()
        response = await client.post(
            "/predict",
            **json_body([[5.0] * 4]) | {"headers": JSON | {"x-request-timeout-seconds": "0.05"}},
        )
        app.state.processor.resume()
    assert response.status_code == 504
    assert response.json()["code"] == "deadline_exceeded"
    assert 5.0 not in model.rows_seen


async def test_high_priority_overtakes_queued_low_priority() -> None:
    model = RecordingModel()
    settings = Settings(max_batch_size=1, initial_batch_size=1)
    async with serving(settings, recording_model(model)) as (app, client):
        processor = app.state.processor
        processor.pause()
        tasks = []
        for value, priority in ((1.0, "low"), (2.0, "normal"), (3.0, "high")):
            headers = JSON | {"x-priority": priority}
            tasks.append(
                asyncio.create_task(
                    client.post("/predict", **json_body([[value] * 4]) | {"headers": headers})
                )
            )
            expected = len(tasks)
            await until(lambda: len(processor) == expected)  # noqa: B023
        processor.resume()
        await asyncio.gather(*tasks)
    assert model.rows_seen[-3:] == [3.0, 2.0, 1.0]


async def test_client_disconnect_cancels_queued_work() -> None:
    model = RecordingModel()
    async with serving(model=recording_model(model)) as (app, _):
        processor = app.state.processor
        processor.pause()
        sent: list[dict] = []
        disconnect = asyncio.Event()
        body = orjson.dumps({"instances": [[7.0] * 4]})
        messages = [{"type": "http.request", "body": body, "more_body": False}]

        async def receive() -> dict:
            if messages:
                return messages.pop(0)
            await disconnect.wait()
            return {"type": "http.disconnect"}

        async def send(message: dict) -> None:
            sent.append(message)

        scope = {
            "type": "http",
            "method": "POST",
            "path": "/predict",
            "headers": [(b"content-type", b"application/json")],
            "query_string": b"",
        }
        call = asyncio.create_task(app(scope, receive, send))
        await until(lambda: len(processor) == 1)
        disconnect.set()
        await call
        processor.resume()
        # The cancelled row is dropped when the worker next takes from the queue.
        await until(lambda: processor.get_stats()["rejected"].get("cancelled") == 1)
    assert 7.0 not in model.rows_seen
    assert sent == []


async def test_requests_before_start_get_503_not_ready() -> None:
    app = create_app(Settings(), model=recording_model(RecordingModel()))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        response = await client.post("/predict", **json_body([[1.0] * 4]))
        assert response.status_code == 503
        assert response.json()["code"] == "not_ready"
        ready = await client.get("/health/ready")
        assert ready.status_code == 503


async def test_more_rows_than_the_queue_can_ever_hold_is_413_not_retryable() -> None:
    async with serving(Settings(max_queue_size=2), recording_model(RecordingModel())) as (_, c):
        response = await c.post("/predict", **json_body([[1.0] * 4] * 3))
    assert response.status_code == 413
    assert response.json()["code"] == "too_many_items"
    assert "retry-after" not in response.headers
