"""Per-version model statistics in the form of Triton's statistics extension.

Each served version has one `ModelStatistics`, fed from two sides:

- the engine, through `EngineCollector` (the engine's metrics collector, which also forwards
  every hook to `batchserve.metrics.Metrics`): after every model call, on the engine's
  follow-up thread, a handful of additions;
- the request path (`batchserve.server.recorder.Recorder`): every finished inference request,
  on the event loop, as a success or a failure with its duration.

What the figures mean (the engine batches rows, and one request's rows may run in different
model calls, so engine-side figures count rows):

- ``inference_count``: rows the model answered; ``execution_count``: model calls (a failed
  call included). Their ratio is the mean batch size. A version's figures include the one
  warm-up row it was started with.
- ``success`` / ``fail``: inference requests (``/predict`` and V2 infer) answered with a 2xx /
  with an error (a client that left counts as a failure; a request for another model or
  version does not count), with the time from receipt to answer; booked to the version
  served when the answer was sent.
- ``queue``: per row, the time from enqueue to the start of its model call.
- ``compute_infer``: per row, the duration of the model call it ran in (as Triton charges each
  request of a batch). ``compute_input`` and ``compute_output`` count the same rows with no
  time of their own: stacking a batch and splitting its output are timed with the call.
- ``batch_stats``: per batch size, the model calls and their total duration.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import Any, Final

from ..metrics import Metrics

_NS: Final = 1_000_000_000
#: Statuses of inference requests that are not this model's (another model or version).
_NOT_THIS_MODEL: Final = 404


def duration(count: int, seconds: float) -> dict[str, int]:
    """A ``$duration_stat``: a count and a total time in nanoseconds."""
    return {"count": count, "ns": round(seconds * _NS)}


class ModelStatistics:
    """The statistics of one served model version (see the module docstring).

    Engine-side figures have one writer, the engine's follow-up thread, except model errors,
    which worker threads report (under a lock); request-side figures are written on the event
    loop only. `as_dict` may read from any thread: a snapshot taken during a batch may show
    its rows before its call, never a torn number.
    """

    def __init__(self, name: str, version: str) -> None:
        self.name = name
        self.version = version
        self._rows = 0
        self._executions = 0
        self._queue_s = 0.0
        self._infer_row_s = 0.0  # each row charged the duration of its model call
        self._batches: dict[int, list[float]] = {}  # batch size -> [calls, total seconds]
        self._failed_rows = 0
        self._errors_lock = threading.Lock()
        self._success_n = 0
        self._success_s = 0.0
        self._fail_n = 0
        self._fail_s = 0.0
        self._last_ms = 0

    # -- the engine's side (follow-up thread) ----------------------------------------------

    def on_batch(
        self, batch_size: int, processing_time_s: float, queue_waits_s: Sequence[float]
    ) -> None:
        """One model call on `batch_size` rows took `processing_time_s`."""
        self._rows += batch_size
        self._executions += 1
        self._queue_s += sum(queue_waits_s)
        self._infer_row_s += processing_time_s * batch_size
        calls = self._batches.get(batch_size)
        if calls is None:
            self._batches[batch_size] = [1, processing_time_s]
        else:
            calls[0] += 1
            calls[1] += processing_time_s

    def on_model_error(self, count: int) -> None:
        """`count` rows failed in the model (they are not inferences)."""
        with self._errors_lock:
            self._failed_rows += count

    # -- the request path (event loop) -----------------------------------------------------

    def on_request(self, status: int, duration_s: float) -> None:
        """One inference request was answered with `status` after `duration_s`."""
        if status < 400:
            self._success_n += 1
            self._success_s += duration_s
            self._last_ms = time.time_ns() // 1_000_000
        elif status != _NOT_THIS_MODEL:
            self._fail_n += 1
            self._fail_s += duration_s

    # -- reading ---------------------------------------------------------------------------

    def as_dict(self) -> dict[str, Any]:
        """This version's ``$model_stat``."""
        rows = self._rows
        batches = sorted(dict(self._batches).items())  # one copy: the thread may add a size
        return {
            "name": self.name,
            "version": self.version,
            "last_inference": self._last_ms,
            "inference_count": max(0, rows - self._failed_rows),
            "execution_count": self._executions,
            "inference_stats": {
                "success": duration(self._success_n, self._success_s),
                "fail": duration(self._fail_n, self._fail_s),
                "queue": duration(rows, self._queue_s),
                "compute_input": duration(rows, 0.0),
                "compute_infer": duration(rows, self._infer_row_s),
                "compute_output": duration(rows, 0.0),
                "cache_hit": duration(0, 0.0),
                "cache_miss": duration(0, 0.0),
            },
            "batch_stats": [
                {
                    "batch_size": size,
                    "compute_input": duration(int(calls), 0.0),
                    "compute_infer": duration(int(calls), seconds),
                    "compute_output": duration(int(calls), 0.0),
                }
                for size, (calls, seconds) in batches
            ],
        }


class EngineCollector:
    """The metrics collector of one engine: books each model call in its version's
    `ModelStatistics` and forwards every hook of `batchserve.batching.observer` to `Metrics`
    (hooks it does not name are forwarded as they are).

    Once `retire`d (its engine handed over to the next version's), it stops forwarding the
    gauges the successor now owns (queue depth, target size); counters still add up.
    """

    def __init__(self, metrics: Metrics, statistics: ModelStatistics) -> None:
        self.metrics = metrics
        self.statistics = statistics
        self._retired = False

    def retire(self) -> None:
        """Leave the queue-depth and target-size gauges to the successor."""
        self._retired = True

    def on_batch(
        self,
        batch_size: int,
        target_size: int,
        processing_time_s: float,
        queue_waits_s: Sequence[float],
    ) -> None:
        """Book the call, then record it in the Prometheus series."""
        self.statistics.on_batch(batch_size, processing_time_s, queue_waits_s)
        self.metrics.on_batch(batch_size, target_size, processing_time_s, queue_waits_s)

    def on_model_error(self, count: int = 1) -> None:
        """Book and count `count` rows the model failed."""
        self.statistics.on_model_error(count)
        self.metrics.on_model_error(count)

    def on_queue_depth(self, depths: dict[str, int]) -> None:
        """Forward the queue depths, unless retired."""
        if not self._retired:
            self.metrics.on_queue_depth(depths)

    def on_target_size(self, size: int) -> None:
        """Forward the target batch size, unless retired."""
        if not self._retired:
            self.metrics.on_target_size(size)

    def __getattr__(self, hook: str) -> Any:
        # Only reached for names not defined here: every other hook goes to Metrics as is
        # (an AttributeError for one it lacks, which the engine's `notify` skips).
        if hook.startswith("_"):
            raise AttributeError(hook)
        method = getattr(self.metrics, hook)
        setattr(self, hook, method)  # found once: on_enqueue is looked up per request
        return method
