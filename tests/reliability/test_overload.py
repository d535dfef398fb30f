"""Overload: offered load far above capacity against a small queue and a slow model."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.reliability.support import (
    ResourceSampler,
    Service,
    Tally,
    check_engine_totals,
    check_server_counts,
    client,
    percentile,
    quiet_log,
    report,
    run_workers,
    send,
    service,
)

pytestmark = pytest.mark.e2e

QUEUE = 8
BATCH = 4
DELAY_S = 0.05  # per model call
CAPACITY_PER_S = BATCH / DELAY_S  # 80 rows/s
CLIENTS = 24  # each with its own connection; more would only load the test's own event loop
OVERLOAD_REQUESTS = 1500
RECOVERY_REQUESTS = 40
ENV = {
    "BATCHSERVE_MAX_QUEUE_SIZE": str(QUEUE),
    "BATCHSERVE_MAX_BATCH_SIZE": str(BATCH),
    "BATCHSERVE_ACCESS_LOG": "false",
}


async def _overload(svc: Service, tally: Tally, ids: Iterator[int]) -> None:
    """CLIENTS closed-loop clients that resend at once, whatever the answer."""
    jobs = ({"ids": next(ids), "timeout_s": 10} for _ in range(OVERLOAD_REQUESTS))
    await run_workers(svc.url, CLIENTS, jobs, tally, timeout_s=10)


async def _recovery(svc: Service, tally: Tally, ids: Iterator[int]) -> Tally:
    """Load within capacity: a few at a time."""
    recovered = Tally()
    async with client(svc.url, connections=BATCH) as http:
        for _ in range(RECOVERY_REQUESTS // BATCH):
            batch = await asyncio.gather(*(send(http, next(ids)) for _ in range(BATCH)))
            recovered.extend(batch)
    tally.extend(recovered.outcomes)
    return recovered


def test_overload_is_refused_fast_and_service_recovers_when_load_drops(tmp_path: Path) -> None:
    tally = Tally()
    ids = itertools.count(1)
    with service(tmp_path, ENV, delay_s=DELAY_S) as svc:
        with ResourceSampler(svc.process) as resources:
            began = time.monotonic()
            asyncio.run(_overload(svc, tally, ids))
            offered_per_s = OVERLOAD_REQUESTS / (time.monotonic() - began)
        overload = Tally(list(tally.outcomes))
        recovered = asyncio.run(_recovery(svc, tally, ids))
        metrics = check_server_counts(svc, tally)
        engine = check_engine_totals(svc, metrics)
        log = svc.log()

    # How fast refusals come back, and how much memory overload costs, depend on the
    # machine: they go to the reliability report, never into an assertion.
    report(
        offered_per_s=round(offered_per_s),
        capacity_per_s=CAPACITY_PER_S,
        reject_p99_ms=round(percentile(overload.latencies(429), 99) * 1e3, 1),
        accepted_max_ms=round(max(overload.latencies(200)) * 1e3, 1),
        recovered_max_ms=round(max(recovered.latencies(200)) * 1e3, 1),
        peak_rss_growth_mb=round(resources.peak_rss_growth_mb(), 1),
    )
    tally.check(OVERLOAD_REQUESTS + RECOVERY_REQUESTS)
    rejected = overload.with_status(429)
    accepted = overload.with_status(200)
    assert set(overload.codes()) <= {"200", "429"}, overload.summary()
    # CLIENTS requests outstanding against room for QUEUE + BATCH: some are always refused.
    assert rejected, overload.summary()
    assert accepted, overload.summary()
    assert all(o.code == "queue_full" for o in rejected)
    assert all(o.retry_after is not None and int(o.retry_after) >= 1 for o in rejected)
    assert recovered.codes() == {"200": RECOVERY_REQUESTS}, recovered.summary()
    assert engine["rejected"].get("queue_full", 0) == len(rejected)
    assert engine["queue_size"] == 0
    assert metrics.value("batchserve_rejected_total", reason="queue_full") == len(rejected)
    assert not quiet_log(log), quiet_log(log)[:5]
