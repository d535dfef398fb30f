"""SIGTERM with 200 requests in flight: readiness fails first, every accepted request is
answered, new ones are refused with 503, and the process exits 0 within the drain deadline."""

from __future__ import annotations

import asyncio
import itertools
import signal
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.reliability.support import (
    Outcome,
    Service,
    Tally,
    client,
    eventually_async,
    inflight,
    quiet_log,
    report,
    send,
    served_codes,
    service,
)

pytestmark = pytest.mark.e2e

IN_FLIGHT = 200
DELAY_S = 0.05  # per call of at most 4 rows: 80 rows/s, so draining 200 takes ~2.5 s
GRACE_S = 1.5
DRAIN_S = 15.0
LATE_PROBES = 3
ENV = {
    "BATCHSERVE_MAX_BATCH_SIZE": "4",
    "BATCHSERVE_SHUTDOWN_GRACE_S": str(GRACE_S),
    "BATCHSERVE_DRAIN_TIMEOUT_S": str(DRAIN_S),
}


async def _probe(url: str, ident: int) -> Outcome:
    """One new request on a new connection."""
    async with client(url, connections=1, timeout_s=DRAIN_S) as http:
        return await send(http, ident)


async def _shut_down_under_load(
    svc: Service, tally: Tally, probes: list[Outcome]
) -> dict[str, Any]:
    ids: Iterator[int] = itertools.count(IN_FLIGHT + 1)
    seen: dict[str, Any] = {}
    async with client(svc.url, connections=IN_FLIGHT) as loaded, client(svc.url) as admin:
        pending = [asyncio.create_task(send(loaded, i)) for i in range(1, IN_FLIGHT + 1)]

        async def all_arrived() -> bool:
            done = sum(task.done() for task in pending)
            return await inflight(admin) + done >= IN_FLIGHT

        await eventually_async(all_arrived, 30, "every request in the server")
        seen["answered_before_term"] = sum(task.done() for task in pending)
        svc.server.process.send_signal(signal.SIGTERM)
        seen["term_at"] = time.monotonic()

        async def not_ready() -> httpx.Response | None:
            response = await admin.get("/health/ready")
            return response if response.status_code == 503 else None

        ready = await eventually_async(not_ready, GRACE_S, "readiness 503")
        seen["ready"] = (ready.status_code, ready.json())
        metrics = (await admin.get("/metrics")).text.splitlines()
        seen["ready_metric"] = [line for line in metrics if line.startswith("batchserve_ready ")]
        # Still within the grace window: new work is accepted (and queued behind the rest).
        probes.append(await _probe(svc.url, next(ids)))

        async def refused() -> bool:
            probes.append(await _probe(svc.url, next(ids)))
            return probes[-1].status != 200

        await eventually_async(refused, GRACE_S + DRAIN_S, "new requests refused")
        for _ in range(LATE_PROBES):
            probes.append(await _probe(svc.url, next(ids)))
        tally.extend(await asyncio.gather(*pending))
    return seen


def test_sigterm_under_load_answers_every_accepted_request_and_exits_clean(
    tmp_path: Path,
) -> None:
    tally = Tally()
    probes: list[Outcome] = []
    with service(tmp_path, ENV, delay_s=DELAY_S) as svc:
        seen = asyncio.run(_shut_down_under_load(svc, tally, probes))
        exit_code = svc.server.process.wait(GRACE_S + DRAIN_S + 5)
        exited_after = time.monotonic() - seen["term_at"]
        log = svc.log()

    assert seen["answered_before_term"] < IN_FLIGHT // 4, seen  # truly in flight at SIGTERM
    tally.check(IN_FLIGHT)
    assert tally.codes() == {"200": IN_FLIGHT}, tally.summary()

    assert seen["ready"] == (503, {"ready": False, "phase": "draining"})
    assert seen["ready_metric"] == ["batchserve_ready 0.0"]
    assert probes[0].started - seen["term_at"] < GRACE_S, "the grace window ended first"
    assert probes[0].status == 200, probes[0]
    refused = [p for p in probes[1:] if p.status != 200]
    assert refused, probes
    # Once refused, always refused: 503 while draining, then the port closes.
    first = probes.index(refused[0])
    for probe in probes[first:]:
        assert probe.status == 503 or probe.error == "ConnectError", probe
    assert all(
        p.code == "shutting_down" and p.retry_after == "1" for p in probes if p.status == 503
    )
    assert all(p.correct for p in probes if p.status == 200)

    assert exit_code == 0, log
    report(exit_after_sigterm_s=round(exited_after, 2))
    answered = [p for p in probes if p.status is not None]
    expected = tally.codes() + Counter(p.key for p in answered)
    assert served_codes(log) == expected, (served_codes(log), expected)
    assert "drained" in log
    assert not quiet_log(log), quiet_log(log)[:5]


# -- a second signal, and SIGHUP --------------------------------------------------------------

SLOW_DRAIN_S = 120.0  # far longer than the queue below needs: only a second signal ends it
SLOW_ENV = {
    "BATCHSERVE_MAX_BATCH_SIZE": "1",
    "BATCHSERVE_DRAIN_TIMEOUT_S": str(SLOW_DRAIN_S),
    "BATCHSERVE_ACCESS_LOG": "false",
}
QUEUED = 60
SLOW_CALL_S = 0.5  # one row per call: the queue alone would take 30 s to drain


async def _second_signal(svc: Service, tally: Tally) -> float:
    async with client(svc.url, connections=QUEUED) as loaded, client(svc.url) as admin:
        pending = [asyncio.create_task(send(loaded, i)) for i in range(1, QUEUED + 1)]

        async def all_arrived() -> bool:
            return await inflight(admin) >= QUEUED

        await eventually_async(all_arrived, 30, "every request in the server")
        svc.server.process.send_signal(signal.SIGTERM)

        async def draining() -> bool:
            return (await admin.get("/health/ready")).status_code == 503

        await eventually_async(draining, 10, "the drain started")
        svc.server.process.send_signal(signal.SIGTERM)
        second_at = time.monotonic()
        tally.extend(await asyncio.gather(*pending))
    return second_at


def test_a_second_signal_answers_what_is_left_with_503_and_exits_at_once(
    tmp_path: Path,
) -> None:
    tally = Tally()
    with service(tmp_path, SLOW_ENV, delay_s=SLOW_CALL_S) as svc:
        second_at = asyncio.run(_second_signal(svc, tally))
        exit_code = svc.server.process.wait(SLOW_DRAIN_S)
        exited_after = time.monotonic() - second_at
        log = svc.log()

    tally.check(QUEUED)  # every request answered, none lost, every 200 right
    codes = tally.codes()
    assert set(codes) <= {"200", "503"}, codes
    assert codes["503"] >= QUEUED // 2, codes  # most were still queued at the second signal
    assert {o.code for o in tally.with_status(503)} == {"shutting_down"}
    assert exit_code == 0, log
    # Not the drain's 30 s of queued work, nor its 120 s deadline: the report has the figure.
    report(exit_after_second_signal_s=round(exited_after, 2))
    assert "second shutdown signal" in log or "signal 15 again" in log


def test_sighup_drains_like_sigterm(tmp_path: Path) -> None:
    tally = Tally()
    with service(tmp_path, {"BATCHSERVE_MAX_BATCH_SIZE": "4"}, delay_s=0.05) as svc:

        async def scenario() -> None:
            async with client(svc.url, connections=40) as http, client(svc.url) as admin:
                pending = [asyncio.create_task(send(http, i)) for i in range(1, 41)]

                async def all_arrived() -> bool:
                    return await inflight(admin) + sum(t.done() for t in pending) >= 40

                await eventually_async(all_arrived, 30, "every request in the server")
                svc.server.process.send_signal(signal.SIGHUP)
                tally.extend(await asyncio.gather(*pending))

        asyncio.run(scenario())
        exit_code = svc.server.process.wait(30)
        log = svc.log()
    tally.check(40)
    assert tally.codes() == {"200": 40}, tally.summary()
    assert exit_code == 0, log
    assert "drained" in log
