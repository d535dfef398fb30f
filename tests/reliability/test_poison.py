"""A poison input fails its own caller only; the rest of its batch is answered."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from tests.reliability.models import POISON
from tests.reliability.support import (
    Tally,
    check_engine_totals,
    check_server_counts,
    quiet_log,
    run_workers,
    service,
)

pytestmark = pytest.mark.e2e

REQUESTS = 400
AFTERWARDS = 40
WORKERS = 32
ENV = {"BATCHSERVE_MAX_BATCH_SIZE": "16", "BATCHSERVE_ACCESS_LOG": "false"}


def is_poison(ident: int) -> bool:
    return ident % 8 == 5


def test_poison_rows_fail_only_their_callers_and_the_engine_keeps_going(tmp_path: Path) -> None:
    tally = Tally()
    jobs = [
        {"ids": i, "kind": POISON if is_poison(i) else 0.0, "wire": "json" if i % 2 else "msgpack"}
        for i in range(1, REQUESTS + 1)
    ]
    later = [{"ids": i} for i in range(REQUESTS + 1, REQUESTS + AFTERWARDS + 1)]
    with service(tmp_path, ENV, delay_s=0.005) as svc:
        asyncio.run(run_workers(svc.url, WORKERS, jobs, tally))
        afterwards = Tally()
        asyncio.run(run_workers(svc.url, 8, later, afterwards))
        tally.extend(afterwards.outcomes)
        live = httpx.get(f"{svc.url}/health/live")
        metrics = check_server_counts(svc, tally)
        engine = check_engine_totals(svc, metrics)
        calls = svc.call_log.calls()
        log = svc.log()

    tally.check(REQUESTS + AFTERWARDS)
    poisoned = {i for i in range(1, REQUESTS + 1) if is_poison(i)}
    assert tally.ids(500) == poisoned, tally.summary()
    assert all(o.code == "model_error" for o in tally.with_status(500))
    assert tally.codes() == {"200": REQUESTS + AFTERWARDS - len(poisoned), "500": len(poisoned)}
    # Poison rows really shared batches with good rows, which were then answered.
    mixed = [c for c in calls if set(c.ids) & poisoned and set(c.ids) - poisoned]
    assert mixed, "no batch mixed poison and good rows; the scenario proved nothing"
    assert metrics.value("batchserve_batch_isolations_total") > 0
    assert engine["error_count"] == len(poisoned)
    assert afterwards.codes() == {"200": AFTERWARDS}
    assert live.status_code == 200, live.text
    assert not quiet_log(log), quiet_log(log)[:5]
