"""Pause and resume under load: paused work waits without loss (deadlines still apply), and
resume releases it highest priority first."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.reliability.support import (
    Service,
    Tally,
    check_engine_totals,
    check_server_counts,
    client,
    eventually_async,
    quiet_log,
    send,
    service,
)

pytestmark = pytest.mark.e2e

TOKEN = "pause-scenario-token"
ADMIN = {"authorization": f"Bearer {TOKEN}"}
PER_LEVEL = 30
LOW = range(1, PER_LEVEL + 1)
NORMAL = range(PER_LEVEL + 1, 2 * PER_LEVEL + 1)
HIGH = range(2 * PER_LEVEL + 1, 3 * PER_LEVEL + 1)
SHORT = range(3 * PER_LEVEL + 1, 3 * PER_LEVEL + 6)  # time out while paused
SHORT_TIMEOUT_S = 0.5
ENV = {
    "BATCHSERVE_ADMIN_TOKEN": TOKEN,
    "BATCHSERVE_MAX_BATCH_SIZE": "2",
    # No aging: every item here waits long enough for it to reorder them.
    "BATCHSERVE_PRIORITY_AGING": "600",
}


async def _queued(http: httpx.AsyncClient, level: str, expected: int) -> None:
    async def reached() -> bool:
        engine = (await http.get("/stats")).json()["engine"]
        return bool(engine["queue_by_priority"][level] == expected)

    await eventually_async(reached, what=f"{expected} {level} queued")


async def _pause_queue_resume(svc: Service, tally: Tally) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    async with client(svc.url, connections=4) as admin, client(svc.url, connections=100) as http:
        paused = await admin.post("/admin/pause", headers=ADMIN)
        seen["pause"] = (paused.status_code, paused.json())
        waiting = []
        for level, ids in (("low", LOW), ("normal", NORMAL), ("high", HIGH)):
            waiting += [asyncio.create_task(send(http, i, priority=level)) for i in ids]
            await _queued(admin, level, len(ids))
        short = [send(http, i, timeout_s=SHORT_TIMEOUT_S, wire="msgpack") for i in SHORT]
        timed_out = await asyncio.gather(*short)
        tally.extend(timed_out)
        seen["calls_while_paused"] = svc.call_log.calls()
        seen["metrics"] = (await admin.get("/metrics")).text.splitlines()
        seen["health"] = (await admin.get("/health")).json()
        resumed = await admin.post("/admin/resume", headers=ADMIN)
        seen["resume"] = (resumed.status_code, resumed.json())
        tally.extend(await asyncio.gather(*waiting))
    return seen


def test_pause_holds_work_and_resume_releases_it_in_priority_order(tmp_path: Path) -> None:
    tally = Tally()
    with service(tmp_path, ENV, delay_s=0.005) as svc:
        seen = asyncio.run(_pause_queue_resume(svc, tally))
        metrics = check_server_counts(svc, tally)
        engine = check_engine_totals(svc, metrics)
        order = svc.call_log.first_seen()
        log = svc.log()

    held = 3 * PER_LEVEL
    assert seen["pause"] == (200, {"paused": True, "queue_size": 0})
    assert seen["calls_while_paused"] == []
    assert "batchserve_paused 1.0" in seen["metrics"]
    assert seen["health"]["paused"] is True
    assert seen["resume"] == (200, {"paused": False, "queue_size": held})

    tally.check(held + len(SHORT))
    assert tally.codes() == {"200": held, "504": len(SHORT)}, tally.summary()
    for outcome in tally.with_status(504):
        assert outcome.ids[0] in SHORT
        assert outcome.latency_s >= SHORT_TIMEOUT_S, outcome  # never before its deadline
    assert order == [*_sorted(HIGH, order), *_sorted(NORMAL, order), *_sorted(LOW, order)]
    assert set(order) == {*HIGH, *NORMAL, *LOW}
    assert engine["rejected"] == {"deadline": len(SHORT)}, engine["rejected"]
    assert not quiet_log(log), quiet_log(log)[:5]


def _sorted(level: range, order: list[int]) -> list[int]:
    """The ids of `level` in the order the model saw them (FIFO within a level is not
    checked: concurrent clients reach the queue in any order)."""
    return [i for i in order if i in level]
