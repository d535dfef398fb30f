"""Execution slots: `instances` batches run at once, each slot on its own worker thread with
its own model instance (or a shared one), forming its next batch only once it is free."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from .config import PrioritizedItem
from .execution import GroupRunner


@dataclass(eq=False)
class Slot:
    """One execution slot: its runner (model instance), thread, and the batch in hand."""

    index: int
    runner: GroupRunner
    thread: threading.Thread | None = None
    inflight: list[PrioritizedItem] = field(default_factory=list)
    running_since: float | None = None  # time.monotonic() when its batch began, if busy
    batches: int = 0
    busy_s: float = 0.0

    @property
    def name(self) -> str:
        """How health, stats and metrics name it."""
        return f"instance {self.index}"

    @property
    def thread_name(self) -> str:
        """Its worker thread's name (the first keeps the single-slot engine's name)."""
        return "batchserve-worker" if self.index == 0 else f"batchserve-worker-{self.index}"

    def as_dict(self, now: float) -> dict[str, object]:
        """A JSON-ready view for `get_stats`."""
        since = self.running_since
        return {
            "name": self.name,
            "batches": self.batches,
            "busy_s": round(self.busy_s, 6),
            "running_for_s": None if since is None else round(now - since, 6),
            "alive": self.thread is not None and self.thread.is_alive(),
        }
