"""A Prometheus histogram that takes a whole batch of observations in one call.

The engine reports one queue wait per item after every batch. prometheus_client's `Histogram`
costs about a microsecond per `observe` (a Python scan of the buckets and two locked
increments), which is time the model waits for its next batch. This collector bins a batch's
values with numpy under one lock and is exposed exactly like a `Histogram` (``_bucket``,
``_count`` and ``_sum`` series).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator, Sequence

import numpy as np
from prometheus_client import CollectorRegistry
from prometheus_client.core import HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString


class BatchHistogram(Collector):
    """A label-less histogram observed with `observe_many`."""

    def __init__(
        self, name: str, documentation: str, buckets: Sequence[float], registry: CollectorRegistry
    ) -> None:
        bounds = sorted(float(b) for b in buckets)
        if not bounds or bounds[-1] != math.inf:
            bounds.append(math.inf)
        self._name = name
        self._documentation = documentation
        self._bounds = np.array(bounds)
        self._le = [floatToGoString(b) for b in bounds]  # type: ignore[no-untyped-call]
        self._counts = np.zeros(len(bounds), dtype=np.int64)
        self._sum = 0.0
        self._lock = threading.Lock()
        registry.register(self)

    def observe_many(self, values: Sequence[float]) -> None:
        """Observe every value; a value equal to a bucket's bound counts in that bucket."""
        if not len(values):
            return
        array = np.asarray(values, dtype=np.float64)
        slots = np.searchsorted(self._bounds, array)  # first bound >= value
        hits = np.bincount(np.minimum(slots, len(self._bounds) - 1), minlength=len(self._bounds))
        total = float(array.sum())
        with self._lock:
            self._counts += hits
            self._sum += total

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            cumulative = np.cumsum(self._counts).tolist()
            total = self._sum
        yield HistogramMetricFamily(
            self._name,
            self._documentation,
            buckets=list(zip(self._le, cumulative, strict=True)),
            sum_value=total,
        )
