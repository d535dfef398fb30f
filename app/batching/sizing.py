"""The adaptive batch-size controller.

The engine never waits for a batch to fill (except under ``FIXED``): when the model is free it
takes what is queued, up to a *target* size. The target therefore matters only under load, and
this controller steers it from what each batch shows, in the spirit of AIMD:

- **Grow** when demand outran the target: the items available at dispatch (the batch plus what
  stayed queued) exceeded it. The target is multiplied by ``grow_factor`` (capped at
  ``max_size``), so under a rising load batches reach ``max_size`` in a few batches — unless the
  last batch already took longer than the latency budget, in which case a bigger batch would
  only add latency.
- **Shrink** when the load fell: after ``patience`` consecutive batches whose demand stayed
  under half the target while the model was mostly idle (busy fraction under ``idle_load``),
  the target moves down by ``shrink_factor``, never below the observed demand or ``min_size``.
  A batch slower than the latency budget also shrinks it at once.
- **Back off** on failure or memory pressure: the target halves (multiplicative decrease).

The controller is pure: it holds only its target and a streak counter, and is fed
`Observation`s, so it is tested as a function of observation sequences.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Observation:
    """What one dispatched batch showed. Times in seconds; load is a 0..1 busy fraction."""

    batch_size: int
    queue_depth: int
    processing_time_s: float = 0.0
    system_load: float = 0.0


class AdaptiveSizer:
    """Steers the target batch size between `min_size` and `max_size` (see module docstring)."""

    def __init__(
        self,
        min_size: int,
        max_size: int,
        initial: int,
        *,
        latency_budget_s: float | None = None,
        grow_factor: float = 2.0,
        shrink_factor: float = 0.75,
        patience: int = 8,
        idle_load: float = 0.5,
    ) -> None:
        if not 1 <= min_size <= initial <= max_size:
            raise ValueError("need 1 <= min_size <= initial <= max_size")
        self.min_size = min_size
        self.max_size = max_size
        self.latency_budget_s = latency_budget_s
        self.grow_factor = grow_factor
        self.shrink_factor = shrink_factor
        self.patience = patience
        self.idle_load = idle_load
        self._target = initial
        self._low_streak = 0

    @property
    def target(self) -> int:
        """The current target batch size."""
        return self._target

    def set_target(self, size: int) -> int:
        """Force the target (clamped to the bounds); returns the new target."""
        self._target = self._clamp(size)
        self._low_streak = 0
        return self._target

    def observe(self, obs: Observation) -> int:
        """Fold in one batch's observation; returns the new target."""
        demand = obs.batch_size + obs.queue_depth
        too_slow = (
            self.latency_budget_s is not None and obs.processing_time_s > self.latency_budget_s
        )
        if too_slow:
            return self._shrink(floor=self.min_size)
        if demand > self._target:
            self._low_streak = 0
            self._target = self._clamp(math.ceil(self._target * self.grow_factor))
            return self._target
        if demand * 2 < self._target and obs.system_load < self.idle_load:
            self._low_streak += 1
            if self._low_streak >= self.patience:
                return self._shrink(floor=demand)
        else:
            self._low_streak = 0
        return self._target

    def back_off(self) -> int:
        """Halve the target after a failure or under memory pressure; returns the new target."""
        self._low_streak = 0
        self._target = self._clamp(self._target // 2)
        return self._target

    def _shrink(self, floor: int) -> int:
        self._low_streak = 0
        shrunk = math.floor(self._target * self.shrink_factor)
        self._target = self._clamp(max(shrunk, floor))
        return self._target

    def _clamp(self, size: int) -> int:
        return max(self.min_size, min(self.max_size, size))
