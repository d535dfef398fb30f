"""Clients that leave while their request waits: the work is dropped before the model, counted
as cancelled, and nothing leaks or spams the log."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
import pytest

from tests.reliability.models import make_row
from tests.reliability.support import (
    ABORTED,
    Outcome,
    Service,
    Tally,
    check_server_counts,
    client,
    encode,
    eventually_async,
    inflight,
    quiet_log,
    send,
    service,
)

pytestmark = pytest.mark.e2e

TOKEN = "disconnect-scenario-token"
ADMIN = {"authorization": f"Bearer {TOKEN}"}
GOOD = range(1, 11)  # wait for their answers
CANCELLED = range(11, 21)  # the client task is cancelled: httpx closes the connection
TIMED_OUT = range(21, 31)  # httpx gives up after its own read timeout
RAW = range(31, 41)  # a raw socket sends the whole request, then closes
PARTIAL = range(41, 46)  # a raw socket sends half the body, then closes: never queued
CLIENT_TIMEOUT_S = 1.0
ENV = {"BATCHSERVE_ADMIN_TOKEN": TOKEN, "BATCHSERVE_MAX_BATCH_SIZE": "8"}


def _raw_request(ident: int) -> bytes:
    body, content_type = encode([make_row(ident)], "json")
    head = (
        f"POST /predict HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: {content_type}\r\n"
        f"content-length: {len(body)}\r\nx-request-id: req-{ident}\r\n\r\n"
    )
    return head.encode() + body


async def _queued(http: httpx.AsyncClient) -> int:
    return int((await http.get("/stats")).json()["engine"]["queue_size"])


async def _leave_while_waiting(svc: Service, tally: Tally) -> dict[str, int]:
    host, port = "127.0.0.1", int(svc.url.rsplit(":", 1)[1])
    async with client(svc.url, connections=4) as http:
        assert (await http.post("/admin/pause", headers=ADMIN)).status_code == 200
        waiting = client(svc.url, connections=40)
        impatient = client(svc.url, connections=10, timeout_s=CLIENT_TIMEOUT_S)
        good = [asyncio.create_task(send(waiting, i)) for i in GOOD]
        doomed = [asyncio.create_task(send(waiting, i)) for i in CANCELLED]
        timing_out = [asyncio.create_task(send(impatient, i)) for i in TIMED_OUT]
        sockets = [await asyncio.open_connection(host, port) for _ in [*RAW, *PARTIAL]]
        for (_, writer), ident in zip(sockets, [*RAW, *PARTIAL], strict=True):
            request = _raw_request(ident)
            writer.write(request if ident in RAW else request[: len(request) - 10])
            await writer.drain()
        queued = len(GOOD) + len(CANCELLED) + len(TIMED_OUT) + len(RAW)
        everyone = queued + len(PARTIAL)
        await _until(_queued, http, queued, "all queued")
        await _until(inflight, http, everyone, "all in flight")

        for task in doomed:
            task.cancel()
        for _, writer in sockets:
            writer.close()
            await writer.wait_closed()
        for outcome in await asyncio.gather(*timing_out):
            assert outcome.error == "ReadTimeout", outcome
        left = [*CANCELLED, *TIMED_OUT, *RAW, *PARTIAL]
        tally.extend(Outcome((i,), None, ABORTED) for i in left)
        await _until(inflight, http, len(GOOD), "leavers gone")
        in_queue = await _queued(http)  # dropped lazily: still queued until a batch takes them

        assert (await http.post("/admin/resume", headers=ADMIN)).status_code == 200
        tally.extend(await asyncio.gather(*good))
        await asyncio.gather(*doomed, return_exceptions=True)
        await waiting.aclose()
        await impatient.aclose()
        await _until(_queued, http, 0, "queue empty")
        await _until(inflight, http, 0, "nothing in flight")
    return {"in_queue_before_resume": in_queue}


async def _until(
    read: Callable[[httpx.AsyncClient], Awaitable[int]],
    http: httpx.AsyncClient,
    expected: int,
    what: str,
) -> None:
    async def reached() -> bool:
        return await read(http) == expected

    await eventually_async(reached, what=what)


def test_clients_that_leave_have_their_work_dropped_before_the_model(tmp_path: Path) -> None:
    tally = Tally()
    with service(tmp_path, ENV) as svc:
        seen = asyncio.run(_leave_while_waiting(svc, tally))
        metrics = check_server_counts(svc, tally)
        engine = svc.engine()
        ran = svc.call_log.ids()
        log = svc.log()

    tally.check(len(GOOD) + len(CANCELLED) + len(TIMED_OUT) + len(RAW) + len(PARTIAL))
    cancelled = len(CANCELLED) + len(TIMED_OUT) + len(RAW)
    assert tally.codes() == {"200": len(GOOD), "499": cancelled + len(PARTIAL)}
    assert ran == set(GOOD), sorted(ran)
    assert seen["in_queue_before_resume"] == len(GOOD) + cancelled
    assert engine["rejected"] == {"cancelled": cancelled}, engine["rejected"]
    assert metrics.value("batchserve_rejected_total", reason="cancelled") == cancelled
    assert engine["total_processed"] == len(GOOD) + 1  # and the warm-up row
    assert engine["queue_size"] == 0
    assert metrics.value("batchserve_queue_depth") == 0
    assert not quiet_log(log), quiet_log(log)[:5]
