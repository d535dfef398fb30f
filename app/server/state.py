"""What the routes share: settings, the model, the engine, metrics and the service's state."""

from __future__ import annotations

import asyncio
import enum
import time
from collections import Counter
from dataclasses import dataclass, field

from ..config import Settings
from ..errors import ModelUnavailable, NotReady, ShuttingDown
from ..metrics import Metrics
from ..models import LoadedModel
from .engine import ServingEngine
from .statistics import ModelStatistics

#: The version the service starts serving; each load asked of it adds one.
FIRST_VERSION = 1


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
    processor: ServingEngine | None = None
    phase: Phase = Phase.STARTING
    #: The served version of `model` (1, 2, ...): one more after every successful load.
    version: int = FIRST_VERSION
    #: What a load without a reference loads again: BATCHSERVE_MODEL, then the last reference
    #: loaded ("" is the embedded default model).
    reference: str = ""
    #: The model was unloaded: nothing is served (503) until the next load.
    unloaded: bool = False
    #: One load or unload at a time.
    reload_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    #: Engines of earlier versions still draining what they hold.
    retiring: set[asyncio.Task[None]] = field(default_factory=set)
    started_at: float = field(default_factory=time.monotonic)
    counters: Counter[str] = field(default_factory=Counter)
    model_load_s: float = 0.0  # when the model was loaded before the app (batchserve serve)
    #: Shutting down past the grace window: no new connections, every answer closes its own.
    closing: bool = False
    #: Inference requests begun before `closing` whose rows are not in the engine yet (body
    #: still arriving, or being decoded): the drain lets them in before the engine stops.
    receiving: int = 0
    #: Set by the drain while it waits for `receiving` to reach 0, which sets it.
    all_received: asyncio.Event | None = None

    @property
    def ready(self) -> bool:
        """Model loaded and warmed, engine running, not draining; and not paused, unless
        `ready_when_paused` says a paused service still takes traffic."""
        if self.phase is not Phase.READY or self.unloaded:
            return False
        processor = self.processor
        paused = processor is not None and processor.is_paused
        return not paused or self.settings.ready_when_paused

    @property
    def statistics(self) -> ModelStatistics | None:
        """The served version's statistics (None before the engine starts)."""
        processor = self.processor
        return None if processor is None else processor.statistics

    def serving(self) -> tuple[LoadedModel, ServingEngine]:
        """The model and engine, or the error that says why requests cannot be served.

        While draining, requests are still accepted until the engine stops admitting (the
        grace window after SIGTERM keeps serving while readiness already reports 503).
        Raises `ModelUnavailable` once the model was unloaded.
        """
        if self.model is None or self.processor is None or self.phase is Phase.STARTING:
            raise NotReady("the model is still loading")
        if self.phase is Phase.STOPPED:
            raise ShuttingDown("the server is shutting down")
        if self.unloaded:
            raise ModelUnavailable(
                f"model {self.model.name!r} is unloaded; load it again to serve it"
            )
        return self.model, self.processor

    def set_phase(self, phase: Phase) -> None:
        """Move to `phase` and publish readiness."""
        self.phase = phase
        self._publish_ready()

    def set_unloaded(self, unloaded: bool) -> None:
        """Mark the model unloaded (or loaded again) and publish readiness."""
        self.unloaded = unloaded
        self._publish_ready()

    def _publish_ready(self) -> None:
        # A paused engine is published on its own (batchserve_paused).
        self.metrics.set_ready(self.phase is Phase.READY and not self.unloaded)
