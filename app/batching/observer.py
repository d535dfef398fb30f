"""The hooks through which the engine reports to an optional metrics collector.

`BatchProcessor(config, metrics_collector=...)` accepts any object; the engine calls the
methods below that the object defines and ignores the ones it does not. A hook that raises is
logged and never disturbs the engine. Subclass `MetricsCollector` to get typed no-op defaults.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

logger = logging.getLogger("batchserve.batching")

# Reasons an item is refused or dropped without reaching the model.
REJECT_QUEUE_FULL = "queue_full"
REJECT_DEADLINE = "deadline"
REJECT_CANCELLED = "cancelled"
REJECT_SHUTTING_DOWN = "shutting_down"
REJECT_TOO_LARGE = "too_large"


class MetricsCollector:
    """No-op base of the engine's metric hooks; every time is in seconds."""

    def on_enqueue(self, priority: str, queue_depth: int) -> None:
        """An item was accepted; `queue_depth` counts queued items after it."""

    def on_batch(
        self,
        batch_size: int,
        target_size: int,
        processing_time_s: float,
        queue_waits_s: Sequence[float],
    ) -> None:
        """A model call finished (successfully or not) on `batch_size` items."""

    def on_instance_batch(self, instance: str, processing_time_s: float) -> None:
        """With several execution slots: `instance` finished a model call."""

    def on_padding(self, rows: int, values: int) -> None:
        """A batch was padded: `rows` rows to reach an allowed batch size, `values` values to
        bring variable-length rows to a common length."""

    def on_rejected(self, reason: str, count: int = 1) -> None:
        """`count` items were refused or dropped before the model, for `reason`."""

    def on_model_error(self, count: int = 1) -> None:
        """`count` items failed because the model raised or broke its output contract."""

    def on_retry(self) -> None:
        """A failed batch is retried whole."""

    def on_isolation(self) -> None:
        """A failed batch is split in two to isolate the failing items."""

    def on_target_size(self, size: int) -> None:
        """The target batch size changed."""

    def on_queue_depth(self, depths: dict[str, int]) -> None:
        """Queue depth by priority name, after a batch was taken."""


def notify(collector: Any, hook: str, *args: Any) -> None:
    """Call `collector.<hook>(*args)` if it exists; a failing hook is logged, never raised."""
    if collector is None:
        return
    try:
        # Inside the try: a collector whose attribute lookup itself raises is just as broken.
        method = getattr(collector, hook, None)
        if method is not None:
            method(*args)
    except BaseException:  # a collector's KeyboardInterrupt must not end the worker either
        logger.exception("metrics hook %s failed", hook)
