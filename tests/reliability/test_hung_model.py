"""A model that never returns: liveness fails with a reason, nothing waits past its deadline,
and SIGTERM still ends the process after the drain deadline."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.reliability.models import HANG
from tests.reliability.support import (
    Outcome,
    Served,
    Service,
    Tally,
    access_log,
    check_server_counts,
    client,
    eventually_async,
    report,
    request_id,
    send,
    service,
)

pytestmark = pytest.mark.e2e

STUCK_S = 1.0
DEFAULT_TIMEOUT_S = 2.0
HUNG_TIMEOUT_S = 3.0
SHORT_TIMEOUT_S = 1.0
DRAIN_S = 1.0
QUEUED = 20
EARLY_S = 0.005  # the server's event loop may fire a timer this early (libuv's cached clock)
EXIT_LIMIT_S = DRAIN_S + 4.0  # and uvicorn's own shutdown
ENV = {
    "BATCHSERVE_MAX_BATCH_SIZE": "4",
    "BATCHSERVE_STUCK_BATCH_TIMEOUT": str(STUCK_S),
    "BATCHSERVE_HEALTH_CHECK_INTERVAL": "0.2",
    "BATCHSERVE_REQUEST_TIMEOUT_S": str(DEFAULT_TIMEOUT_S),
    "BATCHSERVE_DRAIN_TIMEOUT_S": str(DRAIN_S),
}


async def _hang_the_model(svc: Service, tally: Tally) -> dict[str, Any]:
    """The hung request, then QUEUED requests behind it; returns what the health and metrics
    routes said while the batch was stuck."""
    async with client(svc.url, connections=QUEUED + 4) as http:
        before = await http.get("/health/live")
        assert (before.status_code, before.json()) == (200, {"live": True, "reasons": []})
        hung = asyncio.create_task(send(http, 1, kind=HANG, timeout_s=HUNG_TIMEOUT_S))

        async def model_entered() -> bool:
            return 1 in svc.call_log.ids()

        await eventually_async(model_entered, what="the model entered")
        queued = [
            asyncio.create_task(
                send(http, i, timeout_s=SHORT_TIMEOUT_S if i % 2 else None, wire="msgpack")
            )
            for i in range(2, QUEUED + 2)
        ]

        async def unhealthy() -> httpx.Response | None:
            response = await http.get("/health/live")
            return response if response.status_code == 503 else None

        live = await eventually_async(unhealthy, STUCK_S + 5, "liveness 503")
        metrics = (await http.get("/metrics")).text
        tally.extend(await asyncio.gather(hung, *queued))
    return {"live": live.json(), "metrics": metrics}


def _on_time(outcome: Outcome, timeout_s: float, served: dict[str, Served]) -> bool:
    """Answered at its deadline, never before it, by the server's clock (how late after it
    depends on the machine, and goes to the reliability report)."""
    entry = served[request_id(outcome.ids[0])]
    report(request=outcome.ids[0], past_deadline_ms=round((entry.duration_s - timeout_s) * 1e3, 1))
    return entry.status == outcome.status and timeout_s - EARLY_S <= entry.duration_s


def test_a_hung_model_fails_liveness_and_every_request_meets_its_deadline(
    tmp_path: Path,
) -> None:
    tally = Tally()
    with service(tmp_path, ENV) as svc:
        seen = asyncio.run(_hang_the_model(svc, tally))
        metrics = check_server_counts(svc, tally)
        engine = svc.engine()
        calls = svc.call_log.calls()
        stuck_after = metrics.value("batchserve_stuck_batches")
        term_sent = time.monotonic()
        svc.server.process.send_signal(signal.SIGTERM)
        exit_code = svc.server.process.wait(EXIT_LIMIT_S + 5)
        exit_after = time.monotonic() - term_sent
        log = svc.log()

    tally.check(QUEUED + 1)
    assert tally.codes() == {"504": QUEUED + 1}, tally.summary()
    assert all(o.code == "deadline_exceeded" for o in tally.outcomes)
    by_id = {o.ids[0]: o for o in tally.outcomes}
    served = access_log(log)
    assert _on_time(by_id[1], HUNG_TIMEOUT_S, served), by_id[1]
    for ident in range(2, QUEUED + 2):
        timeout_s = SHORT_TIMEOUT_S if ident % 2 else DEFAULT_TIMEOUT_S
        assert _on_time(by_id[ident], timeout_s, served), by_id[ident]
    # Only the hung request ever reached the model; the others expired in the queue.
    assert [c.ids for c in calls] == [(1,)]
    assert engine["rejected"].get("deadline", 0) == QUEUED
    assert metrics.value("batchserve_rejected_total", reason="deadline") == QUEUED

    live = seen["live"]
    assert live["live"] is False
    assert any("stuck_batch_timeout" in reason for reason in live["reasons"]), live
    assert "batchserve_stuck_batches 1.0" in seen["metrics"].splitlines()
    assert stuck_after == 1

    assert exit_code == 0, log
    report(exit_after_sigterm_s=round(exit_after, 2))
    assert "still running at the drain deadline" in log
