"""Fakes for the engine's tests: models that record every call and can be held busy, a metrics
collector that records what the engine reports, and a bounded wait for conditions that only
time can bring about (a health verdict, an aged item)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from batchserve.batching import BatchProcessor, MetricsCollector

WAIT_S = 5.0

# The `make_processor` fixture (tests/conftest.py): (model, **config) -> started engine.
ProcessorFactory = Callable[..., BatchProcessor[Any, Any]]


def row(ident: int, width: int = 2) -> np.ndarray:
    """An input row whose every value is `ident`, so a result can be traced to its caller."""
    return np.full(width, float(ident))


def double(batch: Any) -> Any:
    return batch * 2


def wait_until(predicate: Callable[[], bool], timeout: float = WAIT_S, tick: float = 0.005) -> None:
    """Re-check `predicate` every `tick` seconds for at most `timeout`; fail if it stays false."""
    ticker = threading.Event()
    end = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > end:
            raise AssertionError(f"condition still false after {timeout}s")
        ticker.wait(tick)


class RecordingModel:
    """A fake model: records a copy of each batch it is called with, returns ``fn(batch)``."""

    def __init__(self, fn: Callable[[Any], Any] = double) -> None:
        self.fn = fn
        self.calls: list[Any] = []
        self._changed = threading.Condition()

    def __call__(self, batch: Any) -> Any:
        with self._changed:
            self.calls.append(batch.copy() if hasattr(batch, "copy") else batch)
            self._changed.notify_all()
        return self.fn(batch)

    def wait_calls(self, count: int, timeout: float = WAIT_S) -> None:
        """Block until the model has been entered `count` times."""
        with self._changed:
            if not self._changed.wait_for(lambda: len(self.calls) >= count, timeout):
                raise AssertionError(f"model entered {len(self.calls)} times, expected {count}")

    @property
    def batch_sizes(self) -> list[int]:
        return [len(call) for call in self.calls]

    @property
    def seen(self) -> list[Any]:
        """Every item the model received, in order: the ident of numpy rows, else the item."""
        out: list[Any] = []
        for call in self.calls:
            if isinstance(call, np.ndarray):
                out.extend(int(r.flat[0]) for r in call)
            elif isinstance(call, dict):
                first = next(iter(call.values()))
                out.extend(int(r.flat[0]) for r in first)
            else:
                out.append(call)
        return out


class GatedModel(RecordingModel):
    """A `RecordingModel` whose calls block until `open()`: it holds the worker busy while a
    test queues more work, lets deadlines pass, or stops the engine."""

    def __init__(self, fn: Callable[[Any], Any] = double) -> None:
        super().__init__(fn)
        self.gate = threading.Event()

    def __call__(self, batch: Any) -> Any:
        result = super().__call__(batch)
        if not self.gate.wait(30.0):
            raise TimeoutError("the test never opened the model's gate")
        return result

    def open(self) -> None:
        self.gate.set()


class Recorder(MetricsCollector):
    """A metrics collector that keeps what the engine reports to it."""

    def __init__(self) -> None:
        self.batches: list[tuple[int, int]] = []  # (batch_size, target_size) per model call
        self.waits: list[float] = []
        self.rejected: dict[str, int] = {}
        self.retries = 0
        self.isolations = 0
        self.targets: list[int] = []
        self.finished = 0  # batches completely done (no longer active)
        self.padding_rows = 0
        self.padding_values = 0
        self._changed = threading.Condition()

    def on_batch(
        self,
        batch_size: int,
        target_size: int,
        processing_time_s: float,
        queue_waits_s: Sequence[float],
    ) -> None:
        with self._changed:
            self.batches.append((batch_size, target_size))
            self.waits.extend(queue_waits_s)
            self._changed.notify_all()

    def on_rejected(self, reason: str, count: int = 1) -> None:
        with self._changed:
            self.rejected[reason] = self.rejected.get(reason, 0) + count
            self._changed.notify_all()

    def on_padding(self, rows: int, values: int) -> None:
        self.padding_rows += rows
        self.padding_values += values

    def on_retry(self) -> None:
        self.retries += 1

    def on_isolation(self) -> None:
        self.isolations += 1

    def on_target_size(self, size: int) -> None:
        self.targets.append(size)

    def on_queue_depth(self, depths: dict[str, int]) -> None:
        # Called once per batch, after everything else the engine does for it.
        with self._changed:
            self.finished += 1
            self._changed.notify_all()

    def wait_finished(self, count: int, timeout: float = WAIT_S) -> None:
        """Block until `count` batches are completely done: stats, target size, gc and logging
        all happen before this hook, which is the last thing the engine does per batch."""
        with self._changed:
            if not self._changed.wait_for(lambda: self.finished >= count, timeout):
                raise AssertionError(f"{self.finished} batches finished, expected {count}")
