"""Soak: steady mixed traffic for `--soak` seconds (15 by default). After a warm-up, memory,
threads and open files stay flat and latency does not drift.

    pytest tests/reliability/test_soak.py --soak 300
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import time
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from batchserve.batching import BatchProcessor, BatchProcessorConfig
from tests.reliability.support import (
    ResourceSampler,
    Sample,
    Service,
    Tally,
    check_engine_totals,
    check_server_counts,
    client,
    percentile,
    quiet_log,
    report,
    send,
    service,
)

pytestmark = pytest.mark.e2e

WORKERS = 8
SCRAPE_INTERVAL_S = 1.0  # how often /stats, /metrics and /health are read, as a monitor would
WIRES = ("json", "msgpack", "msgpack-lists")
PRIORITIES = (None, "high", "normal", "low")
RSS_GROWTH_MB = 20.0  # after warm-up, for any duration: a leak of 1 KiB a request shows
TRANSIENT = 2  # threads or descriptors that come and go (a reconnecting client)
ENV = {"BATCHSERVE_MAX_BATCH_SIZE": "32", "BATCHSERVE_ACCESS_LOG": "false"}
SERVED = 1000
KEPT_AT_MOST = 100  # the queue sheds what it has served in bulk, every few dozen items


def _jobs(ids: Iterator[int]) -> Iterator[dict[str, Any]]:
    """An endless, deterministic mix of formats, priorities and request sizes."""
    for n in itertools.count():
        rows = 1 + n % 4 if n % 5 == 0 else 1
        yield {
            "ids": [next(ids) for _ in range(rows)],
            "wire": WIRES[n % len(WIRES)],
            "priority": PRIORITIES[n % len(PRIORITIES)],
        }


async def _traffic(svc: Service, tally: Tally, duration_s: float) -> tuple[int, int]:
    """WORKERS clients sending back to back, plus a monitor reading /stats, /metrics and
    /health, for `duration_s`; returns how many requests were sent and scrapes made."""
    end = time.monotonic() + duration_s
    jobs = _jobs(itertools.count(1))
    sent, scrapes = [0], [0]

    async def worker() -> None:
        async with client(svc.url, connections=1) as http:
            while time.monotonic() < end:
                sent[0] += 1
                tally.add(await send(http, **next(jobs)))

    async def scraper() -> None:
        async with client(svc.url, connections=1) as http:
            while time.monotonic() < end:
                for path in ("/stats", "/metrics", "/health"):
                    assert (await http.get(path)).status_code == 200
                scrapes[0] += 1
                await asyncio.sleep(min(SCRAPE_INTERVAL_S, max(0.0, end - time.monotonic())))

    await asyncio.gather(scraper(), *(worker() for _ in range(WORKERS)))
    return sent[0], scrapes[0]


def _window(samples: list[Sample], start: float, end: float) -> list[Sample]:
    return [s for s in samples if start <= s.at <= end]


def test_soak_keeps_memory_threads_files_and_latency_flat(tmp_path: Path, soak_s: float) -> None:
    warm_up_s = max(3.0, soak_s / 5)
    tally = Tally()
    with service(tmp_path, ENV, delay_s=0.002) as svc:
        began = time.monotonic()
        with ResourceSampler(svc.process, interval_s=0.25) as resources:
            sent, scrapes = asyncio.run(_traffic(svc, tally, warm_up_s + soak_s))
        metrics = check_server_counts(svc, tally, limit_s=30)
        check_engine_totals(svc, metrics)
        log = svc.log()

    tally.check(sent)
    assert tally.codes() == {"200": sent}, tally.summary()
    assert scrapes >= soak_s / 2

    samples = resources.samples
    warm = _window(samples, began + warm_up_s / 2, began + warm_up_s)
    after = _window(samples, began + warm_up_s, float("inf"))
    assert warm, "no sample in the warm-up"
    assert after, "no sample after the warm-up"
    growth_mb = (max(s.rss for s in after) - max(s.rss for s in warm)) / 2**20
    assert growth_mb < RSS_GROWTH_MB, (growth_mb, samples[-5:])
    last_third = _window(samples, began + warm_up_s + 2 * soak_s / 3, float("inf"))
    for kind in ("threads", "fds"):
        warm_max = max(getattr(s, kind) for s in warm)
        late = sorted(getattr(s, kind) for s in last_third)
        assert late[len(late) // 2] <= warm_max, (kind, samples)  # no trend upwards
        assert late[-1] <= warm_max + TRANSIENT, (kind, samples)

    soak = [o for o in tally.outcomes if o.started >= began + warm_up_s]
    third = soak_s / 3
    first = [o.latency_s for o in soak if o.started < began + warm_up_s + third]
    last = [o.latency_s for o in soak if o.started >= began + warm_up_s + 2 * third]
    p99_first, p99_last = percentile(first, 99), percentile(last, 99)
    # Latency depends on the machine: the drift goes to the reliability report.
    report(p99_first_third_ms=round(p99_first * 1e3, 2), p99_last_third_ms=round(p99_last * 1e3, 2))
    assert not quiet_log(log), quiet_log(log)[:5]


def test_the_engine_keeps_nothing_alive_of_the_items_it_has_served() -> None:
    """In process, the mechanism behind flat memory: an answered item (its array, future and
    result) is freed although its deadline is far away, not kept until the deadline passes."""
    processor: BatchProcessor[np.ndarray, np.ndarray] = BatchProcessor(
        BatchProcessorConfig(enable_health_monitoring=False)
    )
    processor.start(lambda batch: batch * 2)
    items: list[weakref.ref[np.ndarray]] = []
    try:
        for i in range(SERVED):
            item = np.full(4, i, np.float32)
            items.append(weakref.ref(item))
            processor.enqueue_predict(item, item_timeout=300).result(timeout=5)
            del item
    finally:
        processor.stop(timeout=5)
    gc.collect()
    assert sum(ref() is not None for ref in items) < KEPT_AT_MOST
