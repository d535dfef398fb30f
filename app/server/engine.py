"""The service's engine: one `BatchProcessor` per served model version, able to hand its
admissions over to the next version's.

A reload starts a second engine beside the first and switches to it (`hand_over`), rather
than swapping the model function inside one engine: the rows of one request may run in two
model calls, and only a request that is wholly in one engine's queue is sure to be answered
by one model. The retiring engine then drains what it holds with its own model and stops.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from ..batching import BatchPriority, BatchProcessor, BatchProcessorConfig
from ..batching.futures import Gathering, Settled
from .statistics import EngineCollector, ModelStatistics


class ServingEngine(BatchProcessor[Any, Any]):
    """A `BatchProcessor` serving one model version, reporting through its `EngineCollector`.

    After `hand_over(successor)`, `enqueue_async` (what every inference request submits
    through) queues on the successor: a request decoded just before the switch, whose
    submission comes after it, is answered, wholly by the new model, instead of being
    refused by a stopping engine.
    """

    def __init__(self, config: BatchProcessorConfig, collector: EngineCollector) -> None:
        super().__init__(config, metrics_collector=collector)
        self.collector = collector
        #: The statistics of the version this engine serves.
        self.statistics: ModelStatistics = collector.statistics
        self._successor: ServingEngine | None = None

    def hand_over(self, successor: ServingEngine) -> None:
        """Send later submissions to `successor` and leave it the shared gauges. Call on the
        event loop (where submissions are made), then stop this engine."""
        self._successor = successor
        # An instance attribute shadows the method: no extra call per request before the
        # hand-over, and `_forward` follows the successor's own later hand-over.
        self.enqueue_async = self._forward  # type: ignore[method-assign]
        self.collector.retire()

    def _forward(
        self,
        items: Sequence[Any],
        *,
        priority: BatchPriority = BatchPriority.NORMAL,
        item_timeout: float | None = None,
        on_settled: Settled | None = None,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> Gathering:
        assert self._successor is not None
        return self._successor.enqueue_async(
            items, priority=priority, item_timeout=item_timeout, on_settled=on_settled, loop=loop
        )
