"""The uvicorn door on a real socket under uvicorn: framing, keep-alive, pipelining order and
back-pressure, the connection limits of an exposed server, disconnects, deadlines, and the
fallback of everything else to the ASGI app. The hostile cases run with the fast path on and
off: the answers, metrics and logs must not depend on it."""

from __future__ import annotations

import asyncio
import gc
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import msgpack
import numpy as np
import orjson
import pytest
import uvicorn

from batchserve.config import Settings
from batchserve.models import LoadedModel
from batchserve.server.app import create_app
from batchserve.server.doors.asgi import ServiceMiddleware
from batchserve.server.doors.uvicorn import protocol_for
from tests.server.support import RecordingModel, recording_model, until


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return orjson.loads(self.body)


@dataclass
class Live:
    app: ServiceMiddleware
    port: int
    asgi_paths: list[str]  # HTTP requests that reached the ASGI app
    server: uvicorn.Server

    def connections(self) -> set[Any]:
        """The connections the server holds open."""
        return set(self.server.server_state.connections)

    async def connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.open_connection("127.0.0.1", self.port)


@asynccontextmanager
async def live_server(
    settings: Settings | None = None, model: LoadedModel | None = None
) -> AsyncIterator[Live]:
    """The service under uvicorn with `PredictProtocol`, on an ephemeral port of this loop."""
    app = create_app(settings or Settings(), model=model or recording_model(RecordingModel()))
    asgi_paths: list[str] = []

    async def spy(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            asgi_paths.append(scope["path"])
        await app(scope, receive, send)

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(
        spy, http=protocol_for(app), ws="none", lifespan="on", log_config=None, access_log=False
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        await until(lambda: server.started or task.done(), limit_s=30)
        assert server.started, "uvicorn did not start"
        yield Live(app, sock.getsockname()[1], asgi_paths, server)
    finally:
        server.should_exit = True
        await task
        sock.close()


def post(
    body: bytes,
    *headers: str,
    path: str = "/predict",
    version: str = "1.1",
    content_type: str = "application/json",
) -> bytes:
    lines = [f"POST {path} HTTP/{version}", "Host: test", f"Content-Type: {content_type}"]
    lines += [f"Content-Length: {len(body)}", *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def instances(*firsts: float) -> bytes:
    return orjson.dumps({"instances": [[f, 0.0, 0.0, 0.0] for f in firsts]})


async def read_response(reader: asyncio.StreamReader) -> Response:
    """The next final response; interim 1xx responses are skipped."""
    head = await reader.readuntil(b"\r\n\r\n")
    while head.startswith(b"HTTP/1.1 1"):
        head = await reader.readuntil(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")[:-2]
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return Response(int(status_line.split()[1]), headers, body)


async def exchange(live: Live, request: bytes) -> Response:
    reader, writer = await live.connect()
    writer.write(request)
    try:
        return await read_response(reader)
    finally:
        writer.close()


async def test_plain_predict_is_answered_without_the_asgi_app() -> None:
    async with live_server() as live:
        response = await exchange(live, post(instances(1.5), "X-Request-ID: proto-1"))
        assert response.status == 200
        assert response.json() == {"predictions": [[3.0, 0.0, 0.0, 0.0]]}
        assert response.headers["content-type"] == "application/json"
        assert response.headers["x-request-id"] == "proto-1"
        assert "date" in response.headers
        assert "server" in response.headers
        assert live.asgi_paths == []
        assert live.app.state.counters["status_200"] == 1


async def test_other_routes_and_unusual_predicts_go_through_asgi() -> None:
    async with live_server() as live:
        health = await exchange(live, b"GET /health/live HTTP/1.1\r\nHost: t\r\n\r\n")
        query = await exchange(live, post(instances(1.0), path="/predict?verbose=1"))
        continued = await exchange(live, post(instances(2.0), "Expect: 100-continue"))
        assert [health.status, query.status, continued.status] == [200, 200, 200]
        assert continued.json()["predictions"][0][0] == 4.0
        assert live.asgi_paths == ["/health/live", "/predict"]  # the query string is fine


async def test_keep_alive_serves_many_requests_on_one_connection() -> None:
    async with live_server() as live:
        reader, writer = await live.connect()
        answers = []
        for value in (1.0, 2.0, 3.0):
            writer.write(post(instances(value)))
            answers.append((await read_response(reader)).json()["predictions"][0][0])
        writer.close()
        assert answers == [2.0, 4.0, 6.0]


async def test_answered_requests_leave_no_garbage_for_the_cycle_collector() -> None:
    # Cyclic garbage per request makes the collector run every few requests, and each pass
    # holds the GIL: reference counting alone must free an answered exchange.
    async with live_server() as live:
        reader, writer = await live.connect()
        gc.collect()
        gc.disable()
        gc.set_debug(gc.DEBUG_SAVEALL)
        try:
            # Past the engine's slack for served entries in its deadline heap (compacted at 64).
            for value in range(200):
                writer.write(post(instances(float(value))))
                assert (await read_response(reader)).status == 200
            gc.collect()
            left = {type(o).__name__ for o in gc.garbage} & {
                "Exchange", "_Exchanged", "Gathering", "CallbackFuture"
            }  # fmt: skip
        finally:
            gc.set_debug(0)
            gc.garbage.clear()
            gc.enable()
            writer.close()
        assert left == set()


async def test_pipelined_requests_are_answered_in_order() -> None:
    async with live_server() as live:
        reader, writer = await live.connect()
        writer.write(
            post(instances(1.0))
            + b"GET /health/live HTTP/1.1\r\nHost: t\r\n\r\n"
            + post(instances(2.0, 3.0))
            + post(b"{not json")
        )
        first, health, second, bad = [await read_response(reader) for _ in range(4)]
        writer.close()
        assert first.json()["predictions"] == [[2.0, 0.0, 0.0, 0.0]]
        assert health.status == 200
        assert b"predictions" not in health.body
        assert [row[0] for row in second.json()["predictions"]] == [4.0, 6.0]
        assert bad.status == 400
        assert bad.json()["code"] == "malformed_request"


async def test_connection_close_and_http_1_0_close_after_the_answer() -> None:
    async with live_server() as live:
        for request in (
            post(instances(1.0), "Connection: close"),
            post(instances(1.0), version="1.0"),
        ):
            reader, writer = await live.connect()
            writer.write(request)
            response = await read_response(reader)
            assert response.status == 200
            assert response.headers["connection"] == "close"
            assert await reader.read() == b""  # the server closed the connection
            writer.close()


async def test_chunked_body_is_reassembled() -> None:
    body = instances(5.0)
    head = b"POST /predict HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in (body[:7], body[7:]))
    async with live_server() as live:
        response = await exchange(
            live, head + b"Transfer-Encoding: chunked\r\n\r\n" + chunks + b"0\r\n\r\n"
        )
        assert response.status == 200
        assert response.json()["predictions"][0][0] == 10.0


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
async def test_oversized_body_is_refused_with_413_without_reading_it_and_the_connection_closes(
    chunked: bool,
) -> None:
    big = orjson.dumps({"instances": [[1.0] * 4] * 200})
    async with live_server(Settings(max_body_bytes=1024)) as live:
        reader, writer = await live.connect()
        if chunked:
            head = b"POST /predict HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
            writer.write(head + b"%x\r\n%s\r\n0\r\n\r\n" % (len(big), big))
        else:
            writer.write(post(big))
        refused = await read_response(reader)
        closed = await reader.read()
        writer.close()
        assert refused.status == 413
        assert refused.json()["code"] == "payload_too_large"
        assert refused.headers["connection"] == "close"
        assert closed == b""  # nginx's way too: the rest of an oversized body is never read


async def test_clients_that_disconnect_are_counted_once_and_their_rows_dropped() -> None:
    model = RecordingModel()
    async with live_server(model=recording_model(model)) as live:
        processor = live.app.state.processor
        metrics = live.app.state.metrics
        assert processor is not None
        processor.pause()
        (_, queued), (_, partial) = [await live.connect() for _ in range(2)]
        queued.write(post(instances(7.0)))
        partial.write(post(instances(8.0))[:-5])  # the body never completes
        await until(lambda: len(processor) == 1 and metrics.inflight == 2)
        queued.close()
        partial.close()
        await until(lambda: metrics.inflight == 0)
        assert live.app.state.counters["status_499"] == 2
        processor.resume()
        await until(lambda: processor.get_stats()["rejected"].get("cancelled") == 1)
        assert (await exchange(live, post(instances(1.0)))).status == 200
    assert 7.0 not in model.rows_seen
    assert 8.0 not in model.rows_seen
    assert 1.0 in model.rows_seen


async def test_deadline_answers_504_while_the_model_is_stuck() -> None:
    model = RecordingModel()
    async with live_server(model=recording_model(model)) as live:
        model.gate.clear()  # closed after the warm-up batch went through
        reader, writer = await live.connect()
        writer.write(post(instances(1.0), "X-Request-Timeout-Seconds: 0.2"))
        response = await read_response(reader)
        model.gate.set()
        writer.close()
    assert response.status == 504
    assert response.json()["code"] == "deadline_exceeded"


async def test_bad_input_gets_its_error_and_spares_the_batch() -> None:
    model = RecordingModel()
    async with live_server(model=recording_model(model)) as live:
        processor = live.app.state.processor
        assert processor is not None
        warm_up_rows = len(model.rows_seen)
        processor.pause()
        requests = [post(instances(1.0)), post(b'{"instances": [[1, 2]]}'), post(instances(2.0))]
        connections = [await live.connect() for _ in requests]
        for (_, writer), request in zip(connections, requests, strict=True):
            writer.write(request)
        await until(lambda: len(processor) == 2)
        processor.resume()
        answers = [await read_response(reader) for reader, _ in connections]
        for _, writer in connections:
            writer.close()
    assert [a.status for a in answers] == [200, 422, 200]
    assert answers[1].json()["code"] == "invalid_input"
    assert sorted(model.rows_seen[warm_up_rows:]) == [1.0, 2.0]


# -- the limits of an exposed server, with the fast path on and off ----------------------------

FAST = pytest.mark.parametrize("fast_path", [True, False], ids=["fast-path", "asgi"])
SHORT = {"header_timeout_s": 0.3, "body_timeout_s": 0.3, "keep_alive_timeout_s": 0.3}


def gated() -> tuple[RecordingModel, LoadedModel]:
    model = RecordingModel()
    return model, recording_model(model)


async def closed_by_server(reader: asyncio.StreamReader) -> bool:
    """Whether the server closes the connection (EOF), whatever it wrote before."""
    await reader.read()
    return True


@FAST
async def test_pipelined_bodies_behind_a_slow_request_are_not_read_ahead(fast_path: bool) -> None:
    model, loaded = gated()
    rows = np.ones((40_000, 4), dtype=np.float32)  # 640 kB of binary tensor per request
    tensor = {"dtype": "float32", "shape": list(rows.shape), "data": rows.tobytes()}
    big = msgpack.packb({"instances": tensor})
    settings = Settings(fast_path=fast_path, max_body_bytes=2 * len(big), max_queue_size=100_000)
    async with live_server(settings, loaded) as live:
        model.gate.clear()
        request = post(big, content_type="application/msgpack")

        def offer() -> int:
            """Requests the server lets the client send: 200 (128 MB) without back-pressure."""
            with socket.create_connection(("127.0.0.1", live.port), timeout=1.0) as sock:
                for sent in range(200):
                    try:
                        sock.sendall(request)
                    except TimeoutError:
                        return sent
            return 200

        sent = await asyncio.to_thread(offer)
        model.gate.set()
    assert sent < 40, sent  # the socket buffers and two requests, not 128 MB


@FAST
async def test_hundreds_of_pipelined_answers_come_back_in_order(fast_path: bool) -> None:
    model, loaded = gated()
    async with live_server(Settings(fast_path=fast_path), loaded) as live:
        model.gate.clear()
        reader, writer = await live.connect()
        requests = [post(instances(1.0))] + [
            post(b"{bad", f"X-Request-ID: r{i}") for i in range(300)
        ]
        writer.write(b"".join(requests))
        await until(lambda: model.entered.is_set())
        model.gate.set()
        answers = [await read_response(reader) for _ in range(301)]
        writer.close()
    assert answers[0].status == 200
    assert [a.status for a in answers[1:]] == [400] * 300
    assert [a.headers["x-request-id"] for a in answers[1:]] == [f"r{i}" for i in range(300)]


@FAST
async def test_a_malformed_request_is_answered_after_the_requests_before_it(
    fast_path: bool,
) -> None:
    model, loaded = gated()
    async with live_server(Settings(fast_path=fast_path), loaded) as live:
        model.gate.clear()
        reader, writer = await live.connect()
        writer.write(post(instances(1.0)) + b"NOT HTTP AT ALL\r\n\r\n")
        await until(lambda: model.entered.is_set())
        model.gate.set()
        first = await read_response(reader)
        broken = await read_response(reader)
        assert await closed_by_server(reader)
        writer.close()
    assert first.status == 200
    assert first.json()["predictions"][0][0] == 2.0
    assert broken.status == 400
    assert broken.json()["code"] == "malformed_request"


@FAST
async def test_a_head_over_max_header_bytes_gets_431_and_the_connection_closes(
    fast_path: bool,
) -> None:
    async with live_server(Settings(fast_path=fast_path, max_header_bytes=4096)) as live:
        for request in (
            post(instances(1.0), "X-Big: " + "a" * 5000),  # one large header, one piece
            post(instances(1.0), *[f"X-{i}: {'b' * 50}" for i in range(100)]),  # many headers
        ):
            reader, writer = await live.connect()
            for offset in range(0, len(request), 1000):  # arriving in pieces
                writer.write(request[offset : offset + 1000])
                await writer.drain()
            response = await read_response(reader)
            assert response.status == 431
            assert response.json()["code"] == "header_too_large"
            assert await closed_by_server(reader)
            writer.close()
        assert (await exchange(live, post(instances(1.0)))).status == 200


@FAST
async def test_slow_heads_and_stalled_bodies_get_408_and_their_connection_back(
    fast_path: bool,
) -> None:
    async with live_server(Settings(fast_path=fast_path, **SHORT)) as live:
        slow_head = await live.connect()
        slow_head[1].write(b"POST /predict HTTP/1.1\r\nHost: t\r\n")  # and nothing more
        stalled = await live.connect()
        stalled[1].write(post(instances(1.0) + b" " * 100)[:-50])  # 50 bytes short
        for reader, writer in (slow_head, stalled):
            response = await read_response(reader)
            assert response.status == 408
            assert response.json()["code"] == "request_timeout"
            assert await closed_by_server(reader)
            writer.close()
        await until(lambda: len(live.connections()) == 0)


async def test_idle_connections_are_closed_without_an_answer() -> None:
    async with live_server(Settings(**SHORT)) as live:
        fresh = await live.connect()  # never sends a byte
        used = await live.connect()
        used[1].write(post(instances(1.0)))
        assert (await read_response(used[0])).status == 200  # then idles on keep-alive
        for reader, writer in (fresh, used):
            assert await reader.read() == b""
            writer.close()


@FAST
async def test_past_max_connections_an_idle_one_makes_room_else_new_ones_get_503(
    fast_path: bool,
) -> None:
    model, loaded = gated()
    settings = Settings(fast_path=fast_path, max_connections=3)
    async with live_server(settings, loaded) as live:
        idle = [await live.connect() for _ in range(3)]
        await until(lambda: len(live.connections()) == 3)
        served = await exchange(live, post(instances(1.0)))  # one idle connection closes
        assert served.status == 200
        assert sum([reader.at_eof() or await _eof(reader) for reader, _ in idle]) >= 1
        model.gate.clear()
        busy = [await live.connect() for _ in range(3)]
        for _, writer in busy:
            writer.write(post(instances(2.0)))
        await until(lambda: live.app.state.metrics.inflight == 3)
        refused = await exchange(live, b"GET /health/live HTTP/1.1\r\nHost: t\r\n\r\n")
        model.gate.set()
        assert refused.status == 503
        assert refused.json()["code"] == "too_many_connections"
        assert [(await read_response(reader)).status for reader, _ in busy] == [200] * 3
        for _, writer in idle + busy:
            writer.close()


async def _eof(reader: asyncio.StreamReader) -> bool:
    try:
        return await asyncio.wait_for(reader.read(), 0.5) == b""
    except TimeoutError:
        return False


@FAST
async def test_a_client_gone_while_queued_is_a_499_not_a_500(fast_path: bool) -> None:
    model, loaded = gated()
    async with live_server(Settings(fast_path=fast_path), loaded) as live:
        processor = live.app.state.processor
        assert processor is not None
        processor.pause()
        _, writer = await live.connect()
        writer.write(post(instances(7.0)))
        await until(lambda: len(processor) == 1)
        writer.close()
        await until(lambda: live.app.state.counters["status_499"] == 1)
        processor.resume()
        assert live.app.state.counters["status_500"] == 0
    assert 7.0 not in model.rows_seen


@FAST
async def test_v2_refuses_an_over_limit_declared_body_with_its_own_400(fast_path: bool) -> None:
    async with live_server(Settings(fast_path=fast_path, max_body_bytes=1024)) as live:
        response = await exchange(
            live, post(b"{" + b" " * 2000 + b"}", path="/v2/models/echo/infer")
        )
    assert response.status == 400
    assert set(response.json()) == {"error", "code"}
    assert response.json()["code"] == "payload_too_large"
