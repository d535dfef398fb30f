"""The dynamic batching engine. Standard library, numpy and psutil only: no HTTP here."""

from app.batching.config import (
    BatchPriority,
    BatchProcessingStrategy,
    BatchProcessorConfig,
    PrioritizedItem,
)
from app.batching.health import HealthReport, HealthState
from app.batching.observer import MetricsCollector
from app.batching.processor import BatchProcessor
from app.batching.sizing import AdaptiveSizer, Observation
from app.batching.stats import BatchStats

__all__ = [
    "AdaptiveSizer",
    "BatchPriority",
    "BatchProcessingStrategy",
    "BatchProcessor",
    "BatchProcessorConfig",
    "BatchStats",
    "HealthReport",
    "HealthState",
    "MetricsCollector",
    "Observation",
    "PrioritizedItem",
]
