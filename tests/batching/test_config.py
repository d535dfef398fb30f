"""`BatchProcessorConfig` refuses every bad value at construction, naming the parameter."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import pytest

from batchserve.batching import BatchProcessingStrategy, BatchProcessorConfig

BAD_VALUES: list[tuple[str, Any]] = [
    ("instances", 0),
    ("instances", 65),
    ("initial_batch_size", 0),
    ("initial_batch_size", -1),
    ("initial_batch_size", 1.5),
    ("initial_batch_size", "many"),
    ("min_batch_size", 0),
    ("min_batch_size", "few"),
    ("max_batch_size", 0),
    ("max_batch_size", [128]),
    ("max_queue_size", 0),
    ("max_queue_size", -5),
    ("batch_timeout", -0.001),
    ("batch_timeout", 60.5),
    ("batch_timeout", math.nan),
    ("batch_timeout", "soon"),
    ("item_timeout", 0),
    ("item_timeout", -1.0),
    ("item_timeout", math.inf),
    ("item_timeout", math.nan),
    ("enable_priority_queue", "sometimes"),
    ("enable_priority_queue", 2),
    ("enable_priority_queue", None),
    ("max_workers", 0),
    ("max_workers", 257),
    ("max_workers", 2.5),
    ("enable_monitoring", "sometimes"),
    ("monitoring_window", 0),
    ("max_retries", -1),
    ("max_retries", 11),
    ("retry_delay", -1.0),
    ("retry_delay", 61.0),
    ("retry_delay", math.inf),
    ("enable_adaptive_batching", "sometimes"),
    ("processing_strategy", "turbo"),
    ("processing_strategy", None),
    ("min_batch_interval", -0.1),
    ("min_batch_interval", 61.0),
    ("max_batch_memory_mb", 0),
    ("max_batch_memory_mb", -1.0),
    ("max_batch_memory_mb", math.inf),
    ("enable_memory_optimization", "sometimes"),
    ("gc_batch_threshold", 0),
    ("debug_mode", "sometimes"),
    ("enable_health_monitoring", "sometimes"),
    ("health_check_interval", 0),
    ("health_check_interval", 3601),
    ("memory_warning_threshold", 0),
    ("memory_warning_threshold", 100.5),
    ("memory_critical_threshold", 0),
    ("memory_critical_threshold", 101),
    ("queue_warning_threshold", 0),
    ("queue_warning_threshold", "half"),
    ("queue_critical_threshold", 0),
    ("reduce_batch_on_failure", "sometimes"),
    ("isolate_failures", "sometimes"),
    ("priority_aging", 0),
    ("priority_aging", -1.0),
    ("priority_aging", math.nan),
    ("stuck_batch_timeout", 0),
    ("stuck_batch_timeout", math.inf),
]


@pytest.mark.parametrize(("parameter", "value"), BAD_VALUES)
def test_bad_value_is_refused_naming_the_parameter(parameter: str, value: Any) -> None:
    with pytest.raises(ValueError, match=re.escape(parameter)):
        BatchProcessorConfig(**{parameter: value})


def test_every_parameter_has_a_bad_value_case() -> None:
    assert {name for name, _ in BAD_VALUES} == set(BatchProcessorConfig.model_fields)


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        ({"min_batch_size": 8, "initial_batch_size": 4}, "min_batch_size"),
        ({"initial_batch_size": 64, "max_batch_size": 32}, "max_batch_size"),
        ({"min_batch_size": 64, "max_batch_size": 32}, "min_batch_size"),
        ({"memory_warning_threshold": 90, "memory_critical_threshold": 90}, "memory_warning"),
        ({"memory_warning_threshold": 95, "memory_critical_threshold": 90}, "memory_critical"),
        ({"queue_warning_threshold": 100, "queue_critical_threshold": 100}, "queue_warning"),
        ({"queue_warning_threshold": 200, "queue_critical_threshold": 100}, "queue_critical"),
    ],
)
def test_inconsistent_parameters_are_refused_naming_them(
    settings: dict[str, Any], named: str
) -> None:
    with pytest.raises(ValueError, match=named):
        BatchProcessorConfig(**settings)


def test_unknown_parameter_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="batch_size_max"):
        BatchProcessorConfig(batch_size_max=3)  # type: ignore[call-arg]


def test_config_is_frozen_after_validation() -> None:
    config = BatchProcessorConfig()
    with pytest.raises(ValueError, match="max_batch_size"):
        config.max_batch_size = 0  # type: ignore[misc]


def test_boundary_values_are_accepted() -> None:
    config = BatchProcessorConfig(
        initial_batch_size=1,
        min_batch_size=1,
        max_batch_size=1,
        max_queue_size=1,
        batch_timeout=0,
        item_timeout=0.001,
        max_workers=256,
        max_retries=10,
        retry_delay=0,
        min_batch_interval=0,
        max_batch_memory_mb=0.001,
        health_check_interval=3600,
        memory_warning_threshold=99.9,
        memory_critical_threshold=100,
        processing_strategy="fixed",
        priority_aging=None,
    )
    assert config.processing_strategy is BatchProcessingStrategy.FIXED
    assert config.max_batch_memory_bytes == int(0.001 * 1024 * 1024)


def test_unset_initial_size_follows_the_bounds() -> None:
    assert BatchProcessorConfig(max_batch_size=8).initial_batch_size == 8
    assert BatchProcessorConfig(min_batch_size=64).initial_batch_size == 64
    assert BatchProcessorConfig().initial_batch_size == 32


def test_unset_queue_thresholds_follow_the_queue_size() -> None:
    config = BatchProcessorConfig(max_queue_size=100)
    assert (config.queue_warning_threshold, config.queue_critical_threshold) == (50, 90)
    explicit = BatchProcessorConfig(
        max_queue_size=100, queue_warning_threshold=10, queue_critical_threshold=20
    )
    assert (explicit.queue_warning_threshold, explicit.queue_critical_threshold) == (10, 20)


def test_every_parameter_is_exercised_by_an_effect_test() -> None:
    """Each parameter appears as a keyword in some behaviour test (not only here)."""
    here = Path(__file__).parent
    sources = "\n".join(
        path.read_text()
        for path in here.glob("test_*.py")
        if path.name not in {"test_config.py", "test_public_api.py"}
    )
    missing = [
        name
        for name in BatchProcessorConfig.model_fields
        if f"{name}=" not in sources and f'"{name}":' not in sources
    ]
    assert missing == []
