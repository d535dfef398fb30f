"""The dynamic batching engine. Standard library, numpy and psutil only: no HTTP here."""

from .config import (
    BatchPriority,
    BatchProcessingStrategy,
    BatchProcessorConfig,
    PrioritizedItem,
)
from .health import HealthReport, HealthState
from .observer import MetricsCollector
from .processor import BatchProcessor
from .sizing import AdaptiveSizer, Observation
from .stats import BatchStats

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
