"""The typed client: against the in-process app, against answers built by hand (both clients),
and against sockets where no answer comes (tests/e2e drives it against a real server too)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from typing import Any

import httpx
import msgpack
import msgpack_numpy
import numpy as np
import pytest

import batchserve
from batchserve.client import (
    AsyncClient,
    Client,
    ClientError,
    PredictError,
    TransportError,
    encode_request,
)
from batchserve.config import Settings
from batchserve.models import LoadedModel, TensorSpec
from tests.server.support import RecordingModel, recording_model, serving, until

MODES = ("sync", "async")


def predict(
    mode: str,
    url: str,
    instances: Any,
    *,
    transport: httpx.MockTransport | None = None,
    wire: str = "msgpack",
    timeout_s: float = 10.0,
) -> Any:
    """One `predict` call through the blocking or the asyncio client."""
    options: dict[str, Any] = {"wire": wire, "timeout_s": timeout_s, "transport": transport}
    if mode == "sync":
        with Client(url, **options) as client:
            return client.predict(instances)

    async def call() -> Any:
        async with AsyncClient(url, **options) as client:
            return await client.predict(instances)

    return asyncio.run(call())


def answering(body: bytes, content_type: str = "application/msgpack") -> httpx.MockTransport:
    """A transport whose every answer is 200 with `body`."""
    return httpx.MockTransport(
        lambda _: httpx.Response(200, content=body, headers={"content-type": content_type})
    )


def binary(arr: np.ndarray) -> dict[str, Any]:
    """`arr` as a binary tensor map, as the server writes it."""
    return {"dtype": arr.dtype.name, "shape": list(arr.shape), "data": arr.tobytes()}


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A loopback port nothing listens on (held bound, so nothing else takes it meanwhile)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield int(sock.getsockname()[1])


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A loopback port that accepts connections (the kernel's backlog) but never answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield int(sock.getsockname()[1])


@pytest.mark.parametrize("wire", ["json", "msgpack"])
async def test_async_client_round_trips_arrays(wire) -> None:
    async with serving(model=recording_model(RecordingModel())) as (app, _):
        transport = httpx.ASGITransport(app=app)
        async with AsyncClient("http://test", wire=wire, transport=transport) as client:
            batch = np.arange(12, dtype=np.float32).reshape(3, 4)
            predictions = await client.predict(batch, priority="high", timeout_s=5)
    np.testing.assert_array_equal(np.asarray(predictions, dtype=np.float32), batch * 2)


def named_outputs() -> LoadedModel:
    """x (4 float32) -> y = 2x (4 float32) and total = sum(x) (a float32 scalar)."""
    return LoadedModel(
        name="named",
        platform="test",
        predict_fn=lambda batch: {"y": batch * 2, "total": batch.sum(axis=1)},
        inputs=(TensorSpec("x", (4,), "float32"),),
        outputs=(TensorSpec("y", (4,), "float32"), TensorSpec("total", (), "float32")),
    )


async def test_msgpack_client_returns_named_outputs_of_each_row_as_arrays() -> None:
    batch = np.arange(12, dtype=np.float32).reshape(3, 4)
    async with serving(model=named_outputs()) as (app, _):
        transport = httpx.ASGITransport(app=app)
        async with AsyncClient("http://test", wire="msgpack", transport=transport) as client:
            predictions = await client.predict(batch)
    assert isinstance(predictions, list)
    assert len(predictions) == len(batch)
    for row, prediction in zip(batch, predictions, strict=True):
        assert isinstance(prediction["y"], np.ndarray)
        assert prediction["y"].dtype == np.float32
        np.testing.assert_array_equal(prediction["y"], row * 2)
        assert float(prediction["total"]) == float(row.sum())


@pytest.mark.parametrize("mode", MODES)
def test_msgpack_answers_decode_binary_tensor_maps_at_any_depth(mode: str) -> None:
    y = np.arange(6, dtype=np.float32).reshape(2, 3)
    ids = np.array([7, 8], dtype=np.int64)
    body = msgpack.packb(
        {
            "predictions": [
                {"y": binary(y[0]), "label": "cat", "rank": 1},
                {"y": binary(y[1]), "extra": [{"ids": binary(ids)}], "meta": {"data": "x"}},
            ]
        }
    )
    first, second = predict(mode, "http://test", [[0.0]], transport=answering(body))
    np.testing.assert_array_equal(first["y"], y[0])
    np.testing.assert_array_equal(second["y"], y[1])
    np.testing.assert_array_equal(second["extra"][0]["ids"], ids)
    assert second["extra"][0]["ids"].dtype == np.int64
    assert (first["label"], first["rank"], second["meta"]) == ("cat", 1, {"data": "x"})


@pytest.mark.parametrize("mode", MODES)
def test_msgpack_answers_decode_msgpack_numpy_arrays_and_scalars_at_any_depth(mode: str) -> None:
    probabilities = np.array([[0.25, 0.75]], dtype=np.float64)
    doc = {"predictions": [{"scores": {"p": probabilities}, "label": np.int64(3)}]}
    body = msgpack.packb(doc, default=msgpack_numpy.encode)
    (prediction,) = predict(mode, "http://test", [[0.0]], transport=answering(body))
    np.testing.assert_array_equal(prediction["scores"]["p"], probabilities)
    assert isinstance(prediction["label"], np.int64)
    assert prediction["label"] == 3


@pytest.mark.parametrize("mode", MODES)
def test_a_whole_batch_tensor_comes_back_as_one_array(mode: str) -> None:
    y = np.arange(8, dtype=np.int32).reshape(4, 2)
    body = msgpack.packb({"predictions": binary(y)})
    predictions = predict(mode, "http://test", [[0.0]], transport=answering(body))
    assert isinstance(predictions, np.ndarray)
    np.testing.assert_array_equal(predictions, y)


@pytest.mark.parametrize("mode", MODES)
def test_msgpack_client_never_unpickles_object_arrays(mode: str) -> None:
    pickled = np.array([{"a": 1}, None], dtype=object)
    body = msgpack.packb({"predictions": [pickled]}, default=msgpack_numpy.encode)
    with pytest.raises(ClientError, match="never unpickled"):
        predict(mode, "http://test", [[0.0]], transport=answering(body))


@pytest.mark.parametrize(
    "body",
    [
        msgpack.packb({"predictions": [{"dtype": "float32", "shape": [3], "data": b"\0" * 8}]}),
        msgpack.packb({"predictions": [{"dtype": "no-such", "shape": [1], "data": b"\0" * 4}]}),
        msgpack.packb({"predictions": [{"dtype": "object", "shape": [1], "data": b"\0" * 8}]}),
        msgpack.packb({"result": [1, 2]}),
        b"\xc1",
    ],
)
@pytest.mark.parametrize("mode", MODES)
def test_an_answer_that_does_not_decode_raises_client_error(mode: str, body: bytes) -> None:
    with pytest.raises(ClientError) as refused:
        predict(mode, "http://test", [[0.0]], transport=answering(body))
    assert not isinstance(refused.value, PredictError | TransportError)


@pytest.mark.parametrize("mode", MODES)
def test_json_answers_are_lists_as_sent(mode: str) -> None:
    body = b'{"predictions": [{"label": 3, "probabilities": [0.5, 0.5]}]}'
    transport = answering(body, "application/json")
    predictions = predict(mode, "http://test", [[0.0]], transport=transport, wire="json")
    assert predictions == [{"label": 3, "probabilities": [0.5, 0.5]}]


@pytest.mark.parametrize("mode", MODES)
def test_a_refused_connection_raises_transport_error(mode: str, closed_port: int) -> None:
    url = f"http://127.0.0.1:{closed_port}"
    with pytest.raises(TransportError) as refused:
        predict(mode, url, [[0.0]])
    assert isinstance(refused.value, ClientError)
    assert isinstance(refused.value.__cause__, httpx.ConnectError)
    assert "cannot connect" in str(refused.value)
    assert f"{url}/predict" in str(refused.value)


@pytest.mark.parametrize("mode", MODES)
def test_a_server_that_never_answers_raises_transport_error(mode: str, silent_port: int) -> None:
    url = f"http://127.0.0.1:{silent_port}"
    with pytest.raises(TransportError) as waited:
        predict(mode, url, [[0.0]], timeout_s=0.2)
    assert isinstance(waited.value.__cause__, httpx.TimeoutException)
    assert "timeout of 0.2 s" in str(waited.value)


@pytest.mark.parametrize("mode", MODES)
def test_a_broken_exchange_raises_transport_error(mode: str) -> None:
    def broken(request: httpx.Request) -> httpx.Response:
        raise httpx.RemoteProtocolError("peer closed the connection mid-answer", request=request)

    with pytest.raises(TransportError) as broke:
        predict(mode, "http://test", [[0.0]], transport=httpx.MockTransport(broken))
    assert isinstance(broke.value.__cause__, httpx.RemoteProtocolError)
    assert "RemoteProtocolError" in str(broke.value)


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
    assert isinstance(bad.value, ClientError)


def test_the_client_and_its_errors_are_importable_from_the_package() -> None:
    assert batchserve.Client is Client
    assert batchserve.AsyncClient is AsyncClient
    assert batchserve.PredictError is PredictError
    assert batchserve.ClientError is ClientError
    assert batchserve.TransportError is TransportError
    assert issubclass(PredictError, ClientError)
    assert issubclass(TransportError, ClientError)


def test_msgpack_requests_carry_arrays_as_one_binary_tensor() -> None:
    body = msgpack.unpackb(encode_request(np.ones((2, 3), np.float32), "msgpack"))
    tensor = body["instances"]
    assert tensor["dtype"] == "float32"
    assert tensor["shape"] == [2, 3]
    assert len(tensor["data"]) == 24
