"""The test model of the reliability scenarios, loaded as `tests.reliability.models:recorder`.

A row is ``[id, -id / 4, kind, 3]`` (float32): every client sends distinct ids, so a caller
handed someone else's row is detected, and ``kind`` asks for a fault. The answer is the row
doubled (by `tripler`, tripled: the model a reload switches to). Settings come from the
environment when the service loads the model:

- ``RELIABILITY_CALL_LOG``: a file that gets one line per model call, written before the model
  works: ``<time.monotonic()> <id> <id> ...`` (the clock is system-wide, so tests compare it
  with their own);
- ``RELIABILITY_DELAY_S``: seconds each call takes (simulated work);
- ``RELIABILITY_FAULTS``: ``0`` turns the fault kinds off (for arbitrary inputs).
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from pathlib import Path

import numpy as np

NORMAL = 0.0
POISON = 1.0  # the model raises for any batch that holds such a row
HANG = 2.0  # the model blocks forever on any batch that holds such a row
# The model raises these BaseExceptions for any batch that holds a row of their kind.
BASE_EXCEPTIONS = {3.0: SystemExit, 4.0: KeyboardInterrupt, 5.0: asyncio.CancelledError}
KILL_WORKER = 6.0  # breaks the engine's logging, then fails: the worker thread dies
WIDTH = 4


def make_row(ident: int, kind: float = NORMAL) -> list[float]:
    """The input row of request `ident` (ids start at 1; 0 is the service's warm-up row)."""
    return [float(ident), -ident / 4, kind, 3.0]


def expected_answer(ident: int, kind: float = NORMAL, factor: float = 2.0) -> list[float]:
    """What the model answers for `make_row(ident, kind)` (`tripler`: factor 3)."""
    return [factor * v for v in make_row(ident, kind)]


class Recorder:
    """Doubles each row; logs every call; fails on POISON rows and never returns on HANG."""

    input_shape = (WIDTH,)
    input_dtype = "float32"

    def __init__(
        self, call_log: Path | None, delay_s: float, faults: bool = True, factor: float = 2.0
    ) -> None:
        self._call_log = call_log
        self._factor = np.float32(factor)
        self._delay_s = delay_s
        self._faults = faults
        self._lock = threading.Lock()
        self._never = threading.Event()

    def predict(self, batch: np.ndarray) -> np.ndarray:
        self._record(batch)
        kinds = batch[:, 2] if self._faults else np.zeros(0)
        if np.any(kinds == HANG):
            self._never.wait()
        if self._delay_s > 0:
            time.sleep(self._delay_s)
        if np.any(kinds == POISON):
            raise ValueError("poison row in the batch")
        for kind, error in BASE_EXCEPTIONS.items():
            if np.any(kinds == kind):
                raise error(f"{error.__name__} from the model")
        if np.any(kinds == KILL_WORKER):
            logging.getLogger("batchserve.batching").addFilter(_BrokenOnTheWorker())
            raise ValueError("the model failed, and so does reporting it")
        return batch * self._factor

    def _record(self, batch: np.ndarray) -> None:
        if self._call_log is None:
            return
        ids = " ".join(str(int(v)) for v in batch[:, 0])
        line = f"{time.monotonic():.6f} {ids}\n"
        with self._lock, self._call_log.open("a") as log:
            log.write(line)


class _BrokenOnTheWorker(logging.Filter):
    """Logging that raises on the batch worker's warnings: its report of a model failure,
    and then of its own crash, fail, so the worker thread ends (the engine fails closed)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if threading.current_thread().name == "batchserve-worker" and record.levelno >= 30:
            raise SystemExit("logging broke")
        return True


def recorder() -> Recorder:
    """The factory the service calls once at start-up."""
    return _from_environment(2.0)


def tripler() -> Recorder:
    """`recorder`, answering each row tripled: the model a reload switches to."""
    return _from_environment(3.0)


def _from_environment(factor: float) -> Recorder:
    path = os.environ.get("RELIABILITY_CALL_LOG")
    delay = float(os.environ.get("RELIABILITY_DELAY_S", "0"))
    faults = os.environ.get("RELIABILITY_FAULTS", "1") != "0"
    return Recorder(Path(path) if path else None, delay, faults, factor)


def unloadable() -> Recorder:
    """A factory that fails: a model that cannot be loaded."""
    raise RuntimeError("the weights are missing")


class Failing(Recorder):
    """Loads, then fails every call: a model that fails its warm-up."""

    def predict(self, batch: np.ndarray) -> np.ndarray:
        raise RuntimeError("this model never answers")


def failing() -> Failing:
    """The factory of `Failing`."""
    return Failing(None, 0.0)


class Anything:
    """Takes rows of any shape (no declared inputs) and answers each row's sum: the model
    the worst-case bodies are sent to, so that only their decoding is measured."""

    def predict(self, batch: np.ndarray) -> np.ndarray:
        return batch.reshape(len(batch), -1).sum(axis=1)


def anything() -> Anything:
    """The factory of `Anything`."""
    return Anything()
