"""Health checks of the engine: stuck batches, memory use and queue growth."""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import psutil

from .config import BatchProcessorConfig


class HealthState(enum.StrEnum):
    """Overall health: HEALTHY serves normally, DEGRADED serves with a warning,
    UNHEALTHY means the engine cannot be trusted to answer (dead worker, stuck batch)."""

    HEALTHY = "healthy"
    DEGRADED = "degraded"
    UNHEALTHY = "unhealthy"


@dataclass(frozen=True, slots=True)
class HealthReport:
    """One health verdict with the reasons behind it and the raw readings."""

    state: HealthState
    reasons: tuple[str, ...] = ()
    memory_critical: bool = False
    stuck_batches: int = 0
    details: dict[str, float | int | bool] = field(default_factory=dict)

    @property
    def live(self) -> bool:
        """False when the engine cannot make progress (dead worker or a stuck batch)."""
        return self.state is not HealthState.UNHEALTHY

    def as_dict(self) -> dict[str, object]:
        """A JSON-ready view."""
        return {"state": self.state.value, "reasons": list(self.reasons), **self.details}


def system_memory_percent() -> float:
    """System memory in use, in percent (psutil)."""
    return float(psutil.virtual_memory().percent)


@dataclass(frozen=True, slots=True)
class EngineSnapshot:
    """The engine readings a health check needs. Times in seconds."""

    worker_alive: bool
    batches: Iterable[tuple[str, float]]  # running batches: (slot name, age in seconds)
    queue_size: int
    running: bool = True
    failure: str | None = None  # why the engine failed closed, once it has


class HealthChecker:
    """Turns an `EngineSnapshot` plus a memory reading into a `HealthReport`."""

    def __init__(
        self,
        config: BatchProcessorConfig,
        memory_probe: Callable[[], float] = system_memory_percent,
    ) -> None:
        self._config = config
        self._memory_probe = memory_probe

    def check(self, snap: EngineSnapshot) -> HealthReport:
        """Evaluate every check; the worst one decides the state."""
        cfg = self._config
        unhealthy: list[str] = []
        degraded: list[str] = []
        if snap.failure is not None:
            unhealthy.append(f"engine failed: {snap.failure}")
        elif snap.running and not snap.worker_alive:
            unhealthy.append("batch worker thread is not running")
        stuck_in = sorted(name for name, age in snap.batches if age > cfg.stuck_batch_timeout)
        stuck = len(stuck_in)
        if stuck:
            unhealthy.append(
                f"{stuck} batch(es) running longer than stuck_batch_timeout="
                f"{cfg.stuck_batch_timeout:g}s ({', '.join(stuck_in)})"
            )
        memory = self._memory_probe()
        critical = memory >= cfg.memory_critical_threshold
        if critical:
            degraded.append(
                f"memory {memory:.1f}% >= memory_critical_threshold "
                f"{cfg.memory_critical_threshold:g}%"
            )
        elif memory >= cfg.memory_warning_threshold:
            degraded.append(
                f"memory {memory:.1f}% >= memory_warning_threshold "
                f"{cfg.memory_warning_threshold:g}%"
            )
        degraded.extend(_queue_reasons(cfg, snap.queue_size))
        state = HealthState.HEALTHY
        if degraded:
            state = HealthState.DEGRADED
        if unhealthy:
            state = HealthState.UNHEALTHY
        return HealthReport(
            state=state,
            reasons=tuple(unhealthy + degraded),
            memory_critical=critical,
            stuck_batches=stuck,
            details={
                "worker_alive": snap.worker_alive,
                "stuck_batches": stuck,
                "memory_percent": memory,
                "queue_size": snap.queue_size,
            },
        )


def _queue_reasons(cfg: BatchProcessorConfig, size: int) -> list[str]:
    if size >= cfg.queue_critical_threshold:
        return [f"queue {size} >= queue_critical_threshold {cfg.queue_critical_threshold}"]
    if size >= cfg.queue_warning_threshold:
        return [f"queue {size} >= queue_warning_threshold {cfg.queue_warning_threshold}"]
    return []
