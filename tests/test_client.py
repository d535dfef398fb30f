"""The typed client against the in-process app (the sync client is exercised in tests/e2e)."""

from __future__ import annotations

import asyncio

import httpx
import msgpack
import numpy as np
import pytest

from batchserve.client import AsyncClient, PredictError, encode_request
from batchserve.config import Settings
from tests.server.support import RecordingModel, recording_model, serving, until


@pytest.mark.parametrize("wire", ["json", "msgpack"])
async def test_async_client_round_trips_arrays(wire) -> None:
    async with serving(model=recording_model(RecordingModel())) as (app, _):
        transport = httpx.ASGITransport(app=app)
        async with AsyncClient("http://test", wire=wire, transport=transport) as client:
            batch = np.arange(12, dtype=np.float32).reshape(3, 4)
            predictions = await client.predict(batch, priority="high", timeout_s=5)
    np.testing.assert_array_equal(np.asarray(predictions, dtype=np.float32), batch * 2)


async def test_client_raises_typed_errors_with_status_and_code() -> None:
    async with serving(Settings(max_queue_size=1), recording_model(RecordingModel())) as (app, _):
        transport = httpx.ASGITransport(app=app)
        async with AsyncClient("http://test", transport=transport) as client:
            with pytest.raises(PredictError) as bad:
                await client.predict([[1.0, 2.0]])
            processor = app.state.processor
            processor.pause()
            waiting = asyncio.create_task(client.predict([[1.0] * 4]))
            await until(lambda: len(processor) == 1)
            with pytest.raises(PredictError) as full:
                await client.predict([[2.0] * 4])
            processor.resume()
            assert len(await waiting) == 1
    assert (bad.value.status, bad.value.code) == (422, "invalid_input")
    assert (full.value.status, full.value.code) == (429, "queue_full")
    assert full.value.retry_after == "1"


def test_msgpack_requests_carry_arrays_as_one_binary_tensor() -> None:
    body = msgpack.unpackb(encode_request(np.ones((2, 3), np.float32), "msgpack"))
    tensor = body["instances"]
    assert tensor["dtype"] == "float32"
    assert tensor["shape"] == [2, 3]
    assert len(tensor["data"]) == 24
