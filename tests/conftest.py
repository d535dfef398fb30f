"""Fixtures shared by every test package: engines that are always stopped."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from batchserve.batching import BatchProcessor, BatchProcessorConfig

ProcessorFactory = Callable[..., BatchProcessor[Any, Any]]


@pytest.fixture
def make_processor() -> Iterator[ProcessorFactory]:
    """``make_processor(model=None, *, metrics_collector=None, memory_probe=None, **config)``
    builds a `BatchProcessor` from config keywords, starts it when a model is given, and stops
    it at teardown. The health monitor thread is off unless a test turns it on."""
    made: list[BatchProcessor[Any, Any]] = []

    def make(
        model: Callable[[Any], Any] | None = None,
        *,
        metrics_collector: Any = None,
        memory_probe: Callable[[], float] | None = None,
        **config: Any,
    ) -> BatchProcessor[Any, Any]:
        config.setdefault("enable_health_monitoring", False)
        processor: BatchProcessor[Any, Any] = BatchProcessor(
            BatchProcessorConfig(**config), metrics_collector, memory_probe=memory_probe
        )
        made.append(processor)
        if model is not None:
            processor.start(model)
        return processor

    yield make
    for processor in made:
        processor.stop(timeout=5.0)
