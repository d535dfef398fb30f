"""What the routes share: settings, the model, the engine, metrics and the service's state."""

from __future__ import annotations

import enum
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from ..batching import BatchProcessor
from ..config import Settings
from ..errors import NotReady, ShuttingDown
from ..metrics import Metrics
from ..models import LoadedModel


class Phase(enum.StrEnum):
    """Where the service is in its life."""

    STARTING = "starting"
    READY = "ready"
    DRAINING = "draining"
    STOPPED = "stopped"


@dataclass
class ServiceState:
    """Mutable state of one running service, owned by the app's lifespan."""

    settings: Settings
    metrics: Metrics
    model: LoadedModel | None = None
    processor: BatchProcessor[Any, Any] | None = None
    phase: Phase = Phase.STARTING
    started_at: float = field(default_factory=time.monotonic)
    counters: Counter[str] = field(default_factory=Counter)
    model_load_s: float = 0.0  # when the model was loaded before the app (batchserve serve)
    #: Shutting down past the grace window: no new connections, every answer closes its own.
    closing: bool = False

    @property
    def ready(self) -> bool:
        """Model loaded and warmed, engine running, not draining; and not paused, unless
        `ready_when_paused` says a paused service still takes traffic."""
        if self.phase is not Phase.READY:
            return False
        processor = self.processor
        paused = processor is not None and processor.is_paused
        return not paused or self.settings.ready_when_paused

    def serving(self) -> tuple[LoadedModel, BatchProcessor[Any, Any]]:
        """The model and engine, or the error that says why requests cannot be served.

        While draining, requests are still accepted until the engine stops admitting (the
        grace window after SIGTERM keeps serving while readiness already reports 503).
        """
        if self.model is None or self.processor is None or self.phase is Phase.STARTING:
            raise NotReady("the model is still loading")
        if self.phase is Phase.STOPPED:
            raise ShuttingDown("the server is shutting down")
        return self.model, self.processor

    def set_phase(self, phase: Phase) -> None:
        """Move to `phase` and publish readiness."""
        self.phase = phase
        self.metrics.set_ready(phase is Phase.READY)
