"""`BatchStats` summaries (distributions, throughput, errors, caching) and what
`BatchProcessor.get_stats` reports; plus the knobs that act after each batch (debug logging,
garbage collection)."""

from __future__ import annotations

import gc
import logging
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

import batchserve.batching.stats as stats_module
from batchserve.batching import BatchStats
from tests.batching.support import ProcessorFactory, Recorder, RecordingModel, row

DISTRIBUTIONS = ("batch_size", "processing_time", "queue_time", "latency")


class FakeTime:
    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeTime:
    fake = FakeTime()
    monkeypatch.setattr(stats_module, "time", SimpleNamespace(monotonic=fake.monotonic))
    return fake


def test_summary_has_mean_and_percentiles_of_every_distribution() -> None:
    stats = BatchStats(window_size=1000)
    for i in range(1, 101):
        stats.update(processing_time=i / 1000, batch_size=i, queue_time=i / 100, latency=i / 10)
    summary = stats.get_stats()
    expected = np.arange(1, 101)
    for name, scale in zip(DISTRIBUTIONS, (1, 1 / 1000, 1 / 100, 1 / 10), strict=True):
        assert summary[f"avg_{name}"] == pytest.approx(expected.mean() * scale)
        for q in (50, 95, 99):
            assert summary[f"p{q}_{name}"] == pytest.approx(np.percentile(expected, q) * scale)
    assert summary["total_processed"] == expected.sum()
    assert summary["batch_count"] == 100


def test_an_empty_window_summarises_to_zeros() -> None:
    summary = BatchStats(window_size=5).get_stats()
    assert summary["throughput"] == 0.0
    assert summary["error_rate"] == 0.0
    assert all(summary[f"p99_{name}"] == 0.0 for name in DISTRIBUTIONS)


def test_window_keeps_only_the_most_recent_batches() -> None:
    stats = BatchStats(window_size=3)
    for size in (100, 100, 1, 2, 3):
        stats.update(0.01, size, 0.0, queue_length=size)
    summary = stats.get_stats()
    assert list(stats.batch_sizes) == [1, 2, 3]
    assert summary["avg_batch_size"] == pytest.approx(2.0)
    assert summary["max_queue_length"] == 3
    assert summary["total_processed"] == 206  # totals cover everything, not just the window


def test_error_rate_is_failed_items_over_attempted_items() -> None:
    stats = BatchStats(window_size=10)
    stats.update(0.01, 6, 0.0)
    stats.record_error(2)
    assert stats.get_stats()["error_rate"] == pytest.approx(2 / 8)


def test_throughput_is_items_over_the_window_span(clock: FakeTime) -> None:
    stats = BatchStats(window_size=10)
    stats.update(0.1, 10, 0.0)
    assert stats.get_stats()["throughput"] == pytest.approx(100.0)  # one batch: its busy time
    clock.now += 2.0
    stats.update(0.1, 30, 0.0)
    clock.now += 2.0
    stats.update(0.1, 50, 0.0)
    # Items finished after the first batch, over the time since it: (30 + 50) / 4 s.
    assert stats.get_stats()["throughput"] == pytest.approx(20.0)


def test_summary_is_cached_until_the_next_update(clock: FakeTime) -> None:
    stats = BatchStats(window_size=10)
    stats.update(0.01, 4, 0.0)
    first = stats.get_stats()
    stats.batch_sizes.append(1000)  # bypasses update(): invisible while the cache holds
    assert stats.get_stats() == first
    clock.now += 0.5
    assert stats.get_stats() == first
    stats.update(0.01, 4, 0.0)
    assert stats.get_stats()["avg_batch_size"] == pytest.approx((4 + 1000 + 4) / 3)


def test_cached_summary_expires_after_its_validity(clock: FakeTime) -> None:
    stats = BatchStats(window_size=10)
    stats.update(0.01, 4, 0.0)
    first = stats.get_stats()
    stats.batch_sizes.append(8)
    clock.now += 1.5
    assert stats.get_stats() != first


def test_window_size_must_be_positive() -> None:
    with pytest.raises(ValueError, match="window_size"):
        BatchStats(window_size=0)


def run_batches(
    make_processor: ProcessorFactory, sizes: list[int], **config: Any
) -> tuple[dict[str, Any], RecordingModel]:
    """Run one batch of each size, in order, and return get_stats() after the last."""
    recorder = Recorder()
    model = RecordingModel()
    processor = make_processor(model, metrics_collector=recorder, **config)
    ident = 0
    for count, size in enumerate(sizes, start=1):
        futures = processor.enqueue_many([row(ident + i) for i in range(size)])
        for future in futures:
            future.result(timeout=5)
        ident += size
        recorder.wait_finished(count)
    return processor.get_stats(), model


def test_get_stats_reports_distributions_throughput_errors_and_state(
    make_processor: ProcessorFactory,
) -> None:
    stats, model = run_batches(make_processor, [1, 3, 2], initial_batch_size=8)
    assert model.batch_sizes == [1, 3, 2]
    for name in DISTRIBUTIONS:
        for prefix in ("avg", "p50", "p95", "p99"):
            assert stats[f"{prefix}_{name}"] >= 0
    assert stats["avg_batch_size"] == pytest.approx(2.0)
    assert stats["avg_latency"] == pytest.approx(
        stats["avg_queue_time"] + stats["avg_processing_time"], abs=1e-6
    )
    assert stats["total_processed"] == 6
    assert stats["batch_count"] == 3
    assert stats["error_rate"] == 0.0
    assert stats["throughput"] > 0
    assert stats["queue_size"] == 0
    assert stats["current_batch_size"] == 8
    assert stats["is_running"] is True
    assert stats["queue_by_priority"] == {"high": 0, "normal": 0, "low": 0}


def test_monitoring_window_bounds_the_statistics(make_processor: ProcessorFactory) -> None:
    narrow, _ = run_batches(make_processor, [1, 3, 3], monitoring_window=2)
    wide, _ = run_batches(make_processor, [1, 3, 3], monitoring_window=1000)
    assert narrow["avg_batch_size"] == pytest.approx(3.0)
    assert wide["avg_batch_size"] == pytest.approx(7 / 3)
    assert narrow["total_processed"] == wide["total_processed"] == 7


def test_with_monitoring_disabled_get_stats_is_empty(make_processor: ProcessorFactory) -> None:
    processor = make_processor(RecordingModel(), enable_monitoring=False)
    processor.enqueue_predict(row(1)).result(timeout=5)
    assert processor.get_stats() == {}
    assert processor.stats is None


@pytest.mark.parametrize("debug", [True, False])
def test_debug_mode_logs_every_batch(
    make_processor: ProcessorFactory, caplog: pytest.LogCaptureFixture, debug: bool
) -> None:
    caplog.set_level(logging.DEBUG, logger="batchserve.batching")
    run_batches(make_processor, [3], debug_mode=debug)
    logged = [r for r in caplog.records if r.getMessage().startswith("batch of 3 (target")]
    assert len(logged) == (1 if debug else 0)


@pytest.mark.parametrize(
    ("optimize", "sizes", "collected"),
    [(True, [3], []), (True, [3, 4, 5], [1, 1]), (False, [4, 5], [])],
)
def test_memory_optimization_collects_garbage_after_batches_at_the_threshold(
    make_processor: ProcessorFactory,
    monkeypatch: pytest.MonkeyPatch,
    optimize: bool,
    sizes: list[int],
    collected: list[int],
) -> None:
    calls: list[int] = []

    def collect(generation: int = 2) -> int:
        calls.append(generation)
        return 0

    monkeypatch.setattr(gc, "collect", collect)
    run_batches(
        make_processor,
        sizes,
        enable_memory_optimization=optimize,
        gc_batch_threshold=4,
    )
    assert calls == collected
