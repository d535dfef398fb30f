"""A Prometheus histogram that takes a whole batch of observations in one call.

The engine reports one queue wait per item after every batch. prometheus_client's `Histogram`
costs about a microsecond per `observe` (a Python scan of the buckets and two locked
increments), which is time the model waits for its next batch. This collector bins a batch's
values with numpy under one lock and is exposed exactly like a `Histogram` (``_bucket``,
``_count`` and ``_sum`` series, labelled or not).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
from prometheus_client import CollectorRegistry
from prometheus_client.core import HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString


class BatchHistogram(Collector):
    """A histogram observed with `observe_many`; with `labelnames`, one child per distinct
    tuple of label values (created by its first observation, as prometheus_client's are)."""

    def __init__(
        self,
        name: str,
        documentation: str,
        buckets: Sequence[float],
        registry: CollectorRegistry,
        labelnames: Sequence[str] = (),
    ) -> None:
        bounds = sorted(float(b) for b in buckets)
        if not bounds or bounds[-1] != math.inf:
            bounds.append(math.inf)
        self._name = name
        self._documentation = documentation
        self._labelnames = tuple(labelnames)
        self._bounds = np.array(bounds)
        self._le = [floatToGoString(b) for b in bounds]  # type: ignore[no-untyped-call]
        # label values -> [bucket counts, sum]; the unlabelled histogram exists from the start
        self._children: dict[tuple[str, ...], list[Any]] = {}
        if not self._labelnames:
            self._children[()] = [np.zeros(len(bounds), dtype=np.int64), 0.0]
        self._lock = threading.Lock()
        registry.register(self)

    def observe_many(self, values: Sequence[float], labels: tuple[str, ...] = ()) -> None:
        """Observe every value (in the child of `labels`, one value per label name); a value
        equal to a bucket's bound counts in that bucket."""
        if not len(values):
            return
        if len(labels) != len(self._labelnames):
            raise ValueError(f"{self._name} takes labels {self._labelnames}, got {labels}")
        array = np.asarray(values, dtype=np.float64)
        slots = np.searchsorted(self._bounds, array)  # first bound >= value
        hits = np.bincount(np.minimum(slots, len(self._bounds) - 1), minlength=len(self._bounds))
        total = float(array.sum())
        with self._lock:
            child = self._children.get(labels)
            if child is None:
                child = self._children[labels] = [np.zeros(len(self._bounds), np.int64), 0.0]
            child[0] += hits
            child[1] += total

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            children = [
                (labels, np.cumsum(counts).tolist(), total)
                for labels, (counts, total) in self._children.items()
            ]
        family = HistogramMetricFamily(
            self._name, self._documentation, labels=list(self._labelnames)
        )
        for labels, cumulative, total in children:
            family.add_metric(
                list(labels), list(zip(self._le, cumulative, strict=True)), sum_value=total
            )
        yield family
