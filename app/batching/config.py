"""Configuration and the small value types of the batching engine."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from .futures import ItemFuture


class BatchPriority(enum.IntEnum):
    """Priority of an item; a lower value is served first."""

    HIGH = 0
    NORMAL = 1
    LOW = 2


class BatchProcessingStrategy(enum.StrEnum):
    """How the worker forms a batch once the model is free.

    - ``GREEDY``: take what is queued, up to the current target size, and dispatch at once.
      Nothing ever waits for company: under load batches form while the model is busy.
    - ``ADAPTIVE`` (default): as ``GREEDY``, but the target size is steered by the adaptive
      controller (``batchserve.batching.sizing``) from observed queue depth, latency and load.
    - ``FIXED``: wait for the target size, but at most ``batch_timeout`` seconds after the
      first item is taken (Triton's queue delay). A lone item pays the timeout; choose it only
      when full batches matter more than latency.
    """

    GREEDY = "greedy"
    ADAPTIVE = "adaptive"
    FIXED = "fixed"


class BatchProcessorConfig(BaseModel):
    """Every knob of the engine, validated once at construction.

    Times are seconds, sizes are items unless the name says otherwise. A bad value raises
    pydantic's ``ValidationError`` (a ``ValueError``) naming the parameter.
    """

    # No inf/nan: an infinite time overflows thread waits, an infinite cap has no byte size.
    model_config = ConfigDict(
        frozen=True, extra="forbid", validate_default=True, allow_inf_nan=False
    )

    initial_batch_size: int = Field(32, ge=1, description="Starting target batch size (items).")
    min_batch_size: int = Field(1, ge=1, description="Lower bound of adaptive sizing (items).")
    max_batch_size: int = Field(128, ge=1, description="Upper bound of any batch (items).")
    max_queue_size: int = Field(10_000, ge=1, description="Items queued before enqueue blocks.")
    batch_timeout: float = Field(
        0.01, ge=0, le=60, description="Longest wait to fill a FIXED batch (s)."
    )
    item_timeout: float | None = Field(
        None, gt=0, description="Default deadline from enqueue to model start (s); None = none."
    )
    enable_priority_queue: bool = Field(True, description="Serve HIGH before NORMAL before LOW.")
    max_workers: int = Field(4, ge=1, le=256, description="Threads for non-numpy items.")
    enable_monitoring: bool = Field(True, description="Collect BatchStats.")
    monitoring_window: int = Field(1000, ge=1, description="Batches kept in the stats window.")
    max_retries: int = Field(0, ge=0, le=10, description="Whole-batch retries after a failure.")
    retry_delay: float = Field(0.0, ge=0, le=60, description="Pause before each retry (s).")
    enable_adaptive_batching: bool = Field(True, description="Let ADAPTIVE steer the size.")
    processing_strategy: BatchProcessingStrategy = Field(
        BatchProcessingStrategy.ADAPTIVE, description="How a batch is formed."
    )
    min_batch_interval: float = Field(
        0.0, ge=0, le=60, description="Least time between two batch starts (s)."
    )
    max_batch_memory_mb: float | None = Field(
        None, gt=0, description="Cap on the input bytes of one batch (MiB); None = no cap."
    )
    enable_memory_optimization: bool = Field(True, description="Run gc after big batches.")
    gc_batch_threshold: int = Field(
        256, ge=1, description="Batch size at or above which gc runs (items)."
    )
    debug_mode: bool = Field(False, description="Log every batch at DEBUG level.")
    enable_health_monitoring: bool = Field(True, description="Run the health monitor thread.")
    health_check_interval: float = Field(
        5.0, gt=0, le=3600, description="Period of the health monitor (s)."
    )
    memory_warning_threshold: float = Field(
        85.0, gt=0, le=100, description="System memory use that degrades health (%)."
    )
    memory_critical_threshold: float = Field(
        95.0, gt=0, le=100, description="System memory use that is critical (%)."
    )
    queue_warning_threshold: int = Field(
        5_000, ge=1, description="Queue length that degrades health (items)."
    )
    queue_critical_threshold: int = Field(
        9_000, ge=1, description="Queue length that is critical (items)."
    )
    reduce_batch_on_failure: bool = Field(True, description="Halve the target after a failure.")

    # Beyond the spec's 26: knobs that production use needs.
    isolate_failures: bool = Field(
        True, description="Bisect a failed batch so only the poison items fail."
    )
    priority_aging: float | None = Field(
        1.0, gt=0, description="Wait after which a lower-priority item is served first (s)."
    )
    stuck_batch_timeout: float = Field(
        60.0, gt=0, description="A batch running longer than this is reported stuck (s)."
    )
    instances: int = Field(
        1,
        ge=1,
        le=64,
        description="Execution slots: batches run at once, each on its own thread and model"
        " instance.",
    )

    @model_validator(mode="before")
    @classmethod
    def _derive_defaults(cls, data: Any) -> Any:
        """Unset sizes follow the ones that are set: the initial batch size is clamped into
        [min, max], and the queue thresholds default to 50% and 90% of the queue."""
        if not isinstance(data, dict):
            return data
        data = dict(data)
        if data.get("initial_batch_size") is None:
            low = _as_int(data.get("min_batch_size"), 1)
            high = _as_int(data.get("max_batch_size"), 128)
            data["initial_batch_size"] = max(low, min(32, high))
        queue = _as_int(data.get("max_queue_size"), 10_000)
        if data.get("queue_warning_threshold") is None:
            data["queue_warning_threshold"] = max(1, queue // 2)
        if data.get("queue_critical_threshold") is None:
            data["queue_critical_threshold"] = max(2, queue * 9 // 10)
        return data

    @model_validator(mode="after")
    def _check_cross_field(self) -> Self:
        if not self.min_batch_size <= self.initial_batch_size <= self.max_batch_size:
            raise ValueError(
                "batch sizes must satisfy min_batch_size <= initial_batch_size <= max_batch_size"
                f" (got min_batch_size={self.min_batch_size},"
                f" initial_batch_size={self.initial_batch_size},"
                f" max_batch_size={self.max_batch_size})"
            )
        if self.memory_warning_threshold >= self.memory_critical_threshold:
            raise ValueError(
                "memory_warning_threshold must be below memory_critical_threshold"
                f" (got {self.memory_warning_threshold} >= {self.memory_critical_threshold})"
            )
        if self.queue_warning_threshold >= self.queue_critical_threshold:
            raise ValueError(
                "queue_warning_threshold must be below queue_critical_threshold"
                f" (got {self.queue_warning_threshold} >= {self.queue_critical_threshold})"
            )
        return self

    @property
    def max_batch_memory_bytes(self) -> int | None:
        """The batch memory cap in bytes, or None."""
        if self.max_batch_memory_mb is None:
            return None
        return int(self.max_batch_memory_mb * 1024 * 1024)


def _as_int(value: Any, default: int) -> int:
    """Best-effort int for deriving defaults; a bad value is left for field validation."""
    try:
        return int(value) if value is not None else default
    except (TypeError, ValueError):
        return default


@dataclass(order=True, slots=True)
class PrioritizedItem:
    """One queued item. Orders by priority, then arrival (FIFO within a level)."""

    priority: int
    sequence: int
    item: Any = field(compare=False)
    future: ItemFuture | None = field(compare=False, default=None)
    enqueue_time: float = field(compare=False, default=0.0)
    deadline: float | None = field(compare=False, default=None)
    removed: bool = field(compare=False, default=False)
