"""Running one group of items through the model: stacking, the output contract, retries and
failure isolation by bisection. Every entry handed to `GroupRunner.run` is settled exactly once.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import InvalidStateError
from typing import Any

import numpy as np

from ..errors import ModelError, OutputMismatch
from .collate import Collator
from .config import PrioritizedItem
from .futures import ItemFuture, settle_later
from .observer import notify

logger = logging.getLogger("batchserve.batching")

ProcessFunc = Callable[[Any], Any]


def settle_result(future: ItemFuture | None, value: Any) -> bool:
    """Set a result unless the future is already settled; True when this call settled it."""
    if future is None:
        return False
    try:
        future.set_result(value)
    except InvalidStateError:
        return False
    return True


def settle_error(future: ItemFuture | None, error: BaseException) -> bool:
    """Set an exception unless the future is already settled; True when this call settled it."""
    if future is None:
        return False
    try:
        future.set_exception(error)
    except InvalidStateError:
        return False
    return True


def settle_rows(futures: Sequence[ItemFuture | None], rows: Sequence[Any]) -> None:
    """Settle each future with its row (in one hand-off to their loop when they allow it)."""
    if not settle_later(futures, rows):
        for future, row in zip(futures, rows, strict=True):
            settle_result(future, row)


def copy_error(error: BaseException) -> BaseException:
    """A fresh instance per caller: one exception object raised in many threads would share
    (and keep growing) one traceback."""
    try:
        fresh = type(error)(*error.args)
    except Exception:  # a constructor that does not take its own args back
        return error
    fresh.__cause__ = error.__cause__
    return fresh


def group_key(item: Any) -> Hashable | None:
    """Items with equal keys stack into one batch; None means "not batchable"."""
    if isinstance(item, np.ndarray):
        return (item.shape, item.dtype)
    if isinstance(item, dict) and item and all(isinstance(v, np.ndarray) for v in item.values()):
        # The keys themselves, not their str(): {1: a} and {"1": a} cannot stack together.
        return frozenset((k, v.shape, v.dtype) for k, v in item.items())
    return None


def item_nbytes(item: Any) -> int:
    """Bytes an item adds to a batch (numpy buffers; 0 for other objects)."""
    if isinstance(item, np.ndarray):
        return int(item.nbytes)
    if isinstance(item, dict):
        return sum(int(v.nbytes) for v in item.values() if isinstance(v, np.ndarray))
    return 0


def stack(items: Sequence[Any]) -> Any:
    """Stack same-key items into one new `(B, ...)` array, or a dict of them for mapping items.

    The batch never shares memory with an item: it is writable, whatever the items were (a
    request's rows may be read-only views of its body), and a model that writes into it
    changes nobody's data.
    """
    first = items[0]
    if isinstance(first, np.ndarray):
        if len(items) == 1:
            return np.array(first[np.newaxis])
        if type(first) is np.ndarray and first.ndim:
            # Same shape and dtype (one group): joining along axis 0 and reshaping is exact
            # and a third of np.stack's per-item cost.
            return np.concatenate(items).reshape((len(items), *first.shape))
        return np.stack(items)
    return {k: np.stack([item[k] for item in items]) for k in first}


def split_rows(output: Any, expected: int) -> Sequence[Any]:
    """Row i of the model's output for i in range(expected); raises `OutputMismatch`."""
    if isinstance(output, np.ndarray):
        if output.ndim == 0 or output.shape[0] != expected:
            raise OutputMismatch(_mismatch(expected, output.shape[0] if output.ndim else 0))
        return output  # type: ignore[return-value]
    if isinstance(output, dict):
        arrays = {k: np.asarray(v) for k, v in output.items()}
        for name, arr in arrays.items():
            if arr.ndim == 0 or arr.shape[0] != expected:
                got = arr.shape[0] if arr.ndim else 0
                raise OutputMismatch(_mismatch(expected, got, f" for output '{name}'"))
        return [{k: v[i] for k, v in arrays.items()} for i in range(expected)]
    if isinstance(output, list | tuple):
        if len(output) != expected:
            raise OutputMismatch(_mismatch(expected, len(output)))
        return output
    raise OutputMismatch(
        f"model returned {type(output).__name__}; expected an array with one row per input"
    )


def model_error(exc: BaseException) -> ModelError:
    """What a caller gets when the model raised `exc` (any exception, `BaseException`s too:
    a model running asyncio code may raise `CancelledError`, a library `SystemExit`)."""
    detail = str(exc)
    if not isinstance(exc, Exception):  # the bare class says more than an empty message
        detail = f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__
    return ModelError(f"model failed: {detail}")


def _mismatch(expected: int, got: int, where: str = "") -> str:
    return f"model returned {got} rows for a batch of {expected}{where}"


class GroupRunner:
    """Runs same-key groups through `process_func` with retries and bisecting isolation."""

    def __init__(
        self,
        process_func: ProcessFunc,
        *,
        max_retries: int,
        retry_delay: float,
        isolate_failures: bool,
        collector: Any,
        stop_event: threading.Event,
        defer: Callable[[Callable[[], None]], None] | None = None,
        collator: Collator | None = None,
    ) -> None:
        self._process = process_func
        self._max_retries = max_retries
        self._retry_delay = retry_delay
        self._isolate = isolate_failures
        self._collector = collector
        self._stop = stop_event
        self._defer = defer
        self._collator = collator

    def replace(self, process_func: ProcessFunc) -> None:
        """Run later groups through `process_func`; a group already running finishes, its
        retries and bisection included, with the function it started with."""
        self._process = process_func

    def run(self, entries: list[PrioritizedItem]) -> int:
        """Run a batchable group; returns how many entries failed."""
        return self._run(entries, self._max_retries, self._process)

    def run_single(self, entry: PrioritizedItem) -> int:
        """Run one non-batchable item by itself; returns 1 if it failed, else 0."""
        process = self._process
        for attempt in range(self._max_retries + 1):
            try:
                result = process(entry.item)
            except BaseException as exc:  # any model failure is this item's
                if attempt < self._max_retries and self._pause_before_retry():
                    continue
                return self._fail([entry], exc)
            settle_result(entry.future, result)
            return 0
        return 0  # pragma: no cover - the loop always returns

    def _run(self, entries: list[PrioritizedItem], retries: int, process: ProcessFunc) -> int:
        collator = self._collator
        items = [e.item for e in entries]
        if collator is None:
            batch, layout = stack(items), None
        else:
            batch, layout = collator.collate(items)
        for attempt in range(retries + 1):
            try:
                output = process(batch)
                if collator is None:
                    rows = split_rows(output, len(entries))
                else:
                    rows = collator.uncollate(output, layout, len(entries))
            except OutputMismatch as exc:
                return self._fail(entries, exc)
            except BaseException as exc:  # SystemExit, CancelledError... too
                if attempt < retries and self._pause_before_retry():
                    continue
                return self._isolate_or_fail(entries, exc, process)
            settle = functools.partial(settle_rows, [e.future for e in entries], rows)
            if self._defer is not None:
                self._defer(settle)
            else:
                settle()
            return 0
        return 0  # pragma: no cover - the loop always returns

    def _isolate_or_fail(
        self, entries: list[PrioritizedItem], exc: BaseException, process: ProcessFunc
    ) -> int:
        if not self._isolate or len(entries) == 1 or self._stop.is_set():
            return self._fail(entries, exc)
        notify(self._collector, "on_isolation")
        middle = len(entries) // 2
        return self._run(entries[:middle], 0, process) + self._run(entries[middle:], 0, process)

    def _pause_before_retry(self) -> bool:
        """Wait `retry_delay` before a retry; False when shutdown interrupted the wait."""
        notify(self._collector, "on_retry")
        if self._retry_delay > 0:
            return not self._stop.wait(self._retry_delay)
        return not self._stop.is_set()

    def _fail(self, entries: list[PrioritizedItem], exc: BaseException) -> int:
        error: BaseException = exc if isinstance(exc, ModelError) else model_error(exc)
        if error is not exc:
            error.__cause__ = exc
        for entry in entries:
            settle_error(entry.future, copy_error(error))
        logger.warning("model failed for %d item(s): %s", len(entries), exc)
        notify(self._collector, "on_model_error", len(entries))
        return len(entries)
