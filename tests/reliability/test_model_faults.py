"""A model that raises `BaseException`s (SystemExit, KeyboardInterrupt, CancelledError) fails
only its own callers, and the service keeps serving; a batch worker that dies anyway fails the
service closed: every request answered 503, liveness 503 with the reason, SIGTERM clean."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import httpx
import pytest

from tests.reliability.models import BASE_EXCEPTIONS, KILL_WORKER
from tests.reliability.support import (
    Tally,
    check_server_counts,
    client,
    quiet_log,
    run_workers,
    send,
    service,
)

pytestmark = pytest.mark.e2e

REQUESTS = 240
ENV = {"BATCHSERVE_MAX_BATCH_SIZE": "16", "BATCHSERVE_ACCESS_LOG": "false"}
KINDS = sorted(BASE_EXCEPTIONS)


def fault_of(ident: int) -> float:
    """Every tenth request carries one of the BaseException kinds, in turn."""
    return KINDS[(ident // 10) % len(KINDS)] if ident % 10 == 3 else 0.0


def test_base_exceptions_from_the_model_fail_only_their_callers(tmp_path: Path) -> None:
    tally = Tally()
    jobs = [{"ids": i, "kind": fault_of(i)} for i in range(1, REQUESTS + 1)]
    with service(tmp_path, ENV, delay_s=0.002) as svc:
        asyncio.run(run_workers(svc.url, 24, jobs, tally))
        after = Tally()
        asyncio.run(run_workers(svc.url, 4, [{"ids": i} for i in range(1000, 1040)], after))
        tally.extend(after.outcomes)
        live = httpx.get(f"{svc.url}/health/live")
        check_server_counts(svc, tally)
        svc.server.process.send_signal(signal.SIGTERM)
        exit_code = svc.server.process.wait(30)
        log = svc.log()

    tally.check(REQUESTS + 40)
    faulty = {i for i in range(1, REQUESTS + 1) if fault_of(i)}
    assert tally.ids(500) == faulty, tally.summary()
    assert tally.codes() == {"200": REQUESTS + 40 - len(faulty), "500": len(faulty)}
    assert all(o.code == "model_error" for o in tally.with_status(500))
    assert live.status_code == 200, live.text
    assert exit_code == 0, log
    for error in BASE_EXCEPTIONS.values():
        assert error.__name__ in log
    assert not quiet_log(log), quiet_log(log)[:5]


async def _kill_the_worker(url: str, tally: Tally) -> httpx.Response:
    async with client(url) as http:
        tally.add(await send(http, 1))
        tally.add(await send(http, 2, kind=KILL_WORKER))
        for ident in range(3, 23):
            tally.add(await send(http, ident))
        return await http.get("/health/live")


def test_a_dead_worker_fails_the_service_closed(tmp_path: Path) -> None:
    tally = Tally()
    env = {**ENV, "BATCHSERVE_LOG_FORMAT": "json"}
    with service(tmp_path, env) as svc:
        live = asyncio.run(_kill_the_worker(svc.url, tally))
        svc.server.process.send_signal(signal.SIGTERM)
        exit_code = svc.server.process.wait(30)
        log = svc.log()

    tally.check(22)
    assert tally.codes() == {"200": 1, "500": 1, "503": 20}, tally.summary()
    assert {o.code for o in tally.with_status(503)} == {"engine_failed"}
    assert live.status_code == 503
    assert any("engine failed" in reason for reason in live.json()["reasons"])
    assert exit_code == 0, log
    for line in log.splitlines():  # JSON logs stay one object per line, tracebacks included
        assert line.startswith("{"), line
