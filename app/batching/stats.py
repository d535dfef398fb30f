"""Windowed batch statistics (`BatchStats`)."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Iterable

import numpy as np


class BatchStats:
    """Thread-safe statistics over the last `window_size` batches, with a cached summary.

    The summary from `get_stats` is cached until the next `update`/`record_error` or until
    `_cache_valid_time` seconds pass, so frequent readers (an HTTP stats route, a scraper) cost
    nothing between batches. Times are seconds.
    """

    def __init__(self, window_size: int) -> None:
        if window_size < 1:
            raise ValueError("window_size must be >= 1")
        self.window_size = window_size
        self.processing_times: deque[float] = deque(maxlen=window_size)
        self.batch_sizes: deque[int] = deque(maxlen=window_size)
        self.queue_times: deque[float] = deque(maxlen=window_size)
        self.latencies: deque[float] = deque(maxlen=window_size)
        self.queue_lengths: deque[int] = deque(maxlen=window_size)
        self._timestamps: deque[float] = deque(maxlen=window_size)
        self.error_counts = 0
        self.batch_counts = 0
        self.total_processed = 0
        self.lock = threading.RLock()
        self._stats_cache: dict[str, float] = {}
        self._last_update_time = 0.0
        self._cache_valid_time = 1.0

    def update(
        self,
        processing_time: float,
        batch_size: int,
        queue_time: float,
        latency: float = 0.0,
        queue_length: int = 0,
    ) -> None:
        """Record one processed batch."""
        with self.lock:
            self.processing_times.append(processing_time)
            self.batch_sizes.append(batch_size)
            self.queue_times.append(queue_time)
            self.latencies.append(latency)
            self.queue_lengths.append(queue_length)
            self._timestamps.append(time.monotonic())
            self.batch_counts += 1
            self.total_processed += batch_size
            self._stats_cache = {}

    def record_error(self, count: int = 1) -> None:
        """Record `count` items that failed."""
        with self.lock:
            self.error_counts += count
            self._stats_cache = {}

    def get_stats(self) -> dict[str, float]:
        """Summary of the window: mean/p50/p95/p99 of batch size, processing time, queue time
        and latency; throughput (items/s); error rate; queue length; totals."""
        with self.lock:
            now = time.monotonic()
            if self._stats_cache and now - self._last_update_time < self._cache_valid_time:
                return dict(self._stats_cache)
            stats = self._compute()
            self._stats_cache = stats
            self._last_update_time = now
            return dict(stats)

    def _compute(self) -> dict[str, float]:
        stats: dict[str, float] = {
            "total_processed": float(self.total_processed),
            "batch_count": float(self.batch_counts),
            "error_count": float(self.error_counts),
        }
        attempted = self.total_processed + self.error_counts
        stats["error_rate"] = self.error_counts / attempted if attempted else 0.0
        for name, values in (
            ("batch_size", self.batch_sizes),
            ("processing_time", self.processing_times),
            ("queue_time", self.queue_times),
            ("latency", self.latencies),
        ):
            stats.update(_summary(name, values))
        lengths = self.queue_lengths
        stats["avg_queue_length"] = float(np.mean(lengths)) if lengths else 0.0
        stats["max_queue_length"] = float(max(lengths)) if lengths else 0.0
        stats["throughput"] = self._throughput()
        return stats

    def _throughput(self) -> float:
        """Items per second over the window's wall time (or its busy time for one batch)."""
        if not self.batch_sizes:
            return 0.0
        items = float(sum(self.batch_sizes))
        span = self._timestamps[-1] - self._timestamps[0]
        if len(self._timestamps) > 1 and span > 0:
            # The first batch's items finished at the window's start: count the rest.
            return (items - self.batch_sizes[0]) / span
        busy = sum(self.processing_times)
        return items / busy if busy > 0 else 0.0


def _summary(name: str, values: Iterable[float]) -> dict[str, float]:
    data = np.fromiter(values, dtype=np.float64)
    if data.size == 0:
        return {f"avg_{name}": 0.0, f"p50_{name}": 0.0, f"p95_{name}": 0.0, f"p99_{name}": 0.0}
    p50, p95, p99 = np.percentile(data, [50, 95, 99])
    return {
        f"avg_{name}": float(data.mean()),
        f"p50_{name}": float(p50),
        f"p95_{name}": float(p95),
        f"p99_{name}": float(p99),
    }
