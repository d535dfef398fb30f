"""The spec's public surface (shared/spec/batch_processor.md) exists and behaves as written."""

from __future__ import annotations

import inspect
from concurrent.futures import Future
from typing import Any

import numpy as np
import pytest

import batchserve.batching
from batchserve.batching import (
    BatchPriority,
    BatchProcessingStrategy,
    BatchProcessor,
    BatchProcessorConfig,
    BatchStats,
    PrioritizedItem,
)
from batchserve.errors import DeadlineExceeded, ItemTooLarge, QueueFull, ShuttingDown
from tests.batching.support import ProcessorFactory, Recorder, RecordingModel, row

SPEC_PARAMETERS = (
    "initial_batch_size",
    "min_batch_size",
    "max_batch_size",
    "max_queue_size",
    "batch_timeout",
    "item_timeout",
    "enable_priority_queue",
    "max_workers",
    "enable_monitoring",
    "monitoring_window",
    "max_retries",
    "retry_delay",
    "enable_adaptive_batching",
    "processing_strategy",
    "min_batch_interval",
    "max_batch_memory_mb",
    "enable_memory_optimization",
    "gc_batch_threshold",
    "debug_mode",
    "enable_health_monitoring",
    "health_check_interval",
    "memory_warning_threshold",
    "memory_critical_threshold",
    "queue_warning_threshold",
    "queue_critical_threshold",
    "reduce_batch_on_failure",
)


def test_spec_names_are_exported_from_app_batching() -> None:
    for name in (
        "BatchProcessor",
        "BatchProcessorConfig",
        "BatchProcessingStrategy",
        "BatchPriority",
        "PrioritizedItem",
        "BatchStats",
    ):
        assert name in batchserve.batching.__all__
        assert getattr(batchserve.batching, name) is not None


def test_config_has_every_spec_parameter_plus_the_documented_extras() -> None:
    fields = BatchProcessorConfig.model_fields
    assert len(SPEC_PARAMETERS) == 26
    assert set(SPEC_PARAMETERS) <= set(fields)
    assert set(fields) - set(SPEC_PARAMETERS) == {
        "isolate_failures",
        "priority_aging",
        "stuck_batch_timeout",
        "instances",
    }
    for name, info in fields.items():
        assert info.description, f"{name} is undocumented"


def test_config_defaults_are_a_working_engine_configuration() -> None:
    config = BatchProcessorConfig()
    assert config.min_batch_size <= config.initial_batch_size <= config.max_batch_size
    assert config.processing_strategy is BatchProcessingStrategy.ADAPTIVE
    assert config.enable_priority_queue
    assert config.isolate_failures


def test_priorities_order_high_before_normal_before_low() -> None:
    assert BatchPriority.HIGH < BatchPriority.NORMAL < BatchPriority.LOW
    assert {s.name for s in BatchProcessingStrategy} >= {"ADAPTIVE", "GREEDY", "FIXED"}


def test_prioritized_items_order_by_priority_then_arrival() -> None:
    late_high = PrioritizedItem(BatchPriority.HIGH, 5, "late-high")
    early_normal = PrioritizedItem(BatchPriority.NORMAL, 1, "early-normal")
    late_normal = PrioritizedItem(BatchPriority.NORMAL, 2, "late-normal")
    assert sorted([late_normal, early_normal, late_high]) == [
        late_high,
        early_normal,
        late_normal,
    ]


def test_processor_methods_have_the_spec_signatures() -> None:
    def params(method: Any) -> dict[str, Any]:
        return {
            name: p.default
            for name, p in inspect.signature(method).parameters.items()
            if name != "self"
        }

    assert list(params(BatchProcessor.__init__))[:2] == ["config", "metrics_collector"]
    assert params(BatchProcessor.__init__)["metrics_collector"] is None
    assert list(params(BatchProcessor.start))[:1] == ["process_func"]
    assert params(BatchProcessor.start)["collator"] is None  # keyword-only, optional
    assert params(BatchProcessor.stop) == {"timeout": 5.0}
    for method in (BatchProcessor.enqueue, BatchProcessor.enqueue_predict):
        declared = params(method)
        assert declared["timeout"] is None
        assert declared["priority"] is BatchPriority.NORMAL
    assert list(params(BatchProcessor.update_batch_size)) == ["new_size"]
    for name in ("pause", "resume", "get_stats"):
        assert params(getattr(BatchProcessor, name)) == {}


def test_batch_stats_has_the_spec_interface() -> None:
    stats = BatchStats(window_size=10)
    stats.update(0.5, 4, 0.1)
    stats.update(processing_time=0.5, batch_size=4, queue_time=0.1, latency=0.7, queue_length=3)
    stats.record_error()
    stats.record_error(count=2)
    summary = stats.get_stats()
    assert summary["total_processed"] == 8
    assert summary["error_count"] == 3
    assert stats.window_size == 10


def test_errors_raised_to_callers_are_the_documented_builtin_kinds() -> None:
    assert issubclass(QueueFull, RuntimeError)
    assert issubclass(ShuttingDown, RuntimeError)
    assert issubclass(ItemTooLarge, ValueError)
    assert issubclass(DeadlineExceeded, TimeoutError)


def test_spec_example_doubles_fifty_items() -> None:
    """The spec's own test, as written there (with the default health monitor running)."""
    config = BatchProcessorConfig(
        initial_batch_size=10, max_batch_size=100, enable_priority_queue=True
    )
    processor: BatchProcessor[np.ndarray, np.ndarray] = BatchProcessor(config)
    processor.start(lambda batch: batch * 2)
    try:
        futures = [processor.enqueue_predict(np.array([i])) for i in range(50)]
        results = [future.result(timeout=10) for future in futures]
    finally:
        processor.stop()
    for i, result in enumerate(results):
        assert result[0] == i * 2


def test_enqueue_predict_returns_a_concurrent_future_with_the_callers_row(
    make_processor: ProcessorFactory, model: RecordingModel
) -> None:
    processor = make_processor(model)
    future = processor.enqueue_predict(row(7), priority=BatchPriority.HIGH)
    assert isinstance(future, Future)
    np.testing.assert_array_equal(future.result(timeout=5), row(14))


def test_enqueue_processes_without_returning_a_future(
    make_processor: ProcessorFactory, model: RecordingModel
) -> None:
    processor = make_processor(model)
    assert processor.enqueue(row(3), timeout=1.0, priority=BatchPriority.LOW) is None  # type: ignore[func-returns-value]
    model.wait_calls(1)
    assert model.seen == [3]


def test_update_batch_size_sets_the_target_within_bounds(
    make_processor: ProcessorFactory,
) -> None:
    processor = make_processor(min_batch_size=2, initial_batch_size=8, max_batch_size=16)
    processor.update_batch_size(4)
    assert processor.current_batch_size == 4
    assert processor.get_stats()["current_batch_size"] == 4
    for bad in (1, 17):
        with pytest.raises(ValueError, match="batch size"):
            processor.update_batch_size(bad)
    assert processor.current_batch_size == 4


def test_update_batch_size_caps_the_next_batches(
    make_processor: ProcessorFactory, model: RecordingModel
) -> None:
    processor = make_processor(model, processing_strategy="greedy", max_batch_size=64)
    processor.update_batch_size(3)
    processor.pause()
    futures = [processor.enqueue_predict(row(i)) for i in range(7)]
    processor.resume()
    for future in futures:
        future.result(timeout=5)
    assert model.batch_sizes == [3, 3, 1]


def test_metrics_collector_is_optional_and_receives_the_engine_hooks(
    make_processor: ProcessorFactory, model: RecordingModel
) -> None:
    recorder = Recorder()
    processor = make_processor(model, metrics_collector=recorder)
    assert processor.metrics is recorder
    processor.enqueue_predict(row(1)).result(timeout=5)
    recorder.wait_finished(1)
    assert recorder.batches[0][0] == 1
    assert make_processor().metrics is None
