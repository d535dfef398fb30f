"""Work that follows a batch, run off the worker's critical path.

Between two model calls the worker is the only thing keeping the model idle. Settling a
batch's results and booking it (statistics, metrics, the adaptive target) need not happen
there: the worker posts them here and goes straight on to its next batch, and this thread
does them while the model runs the next one. Tasks run one at a time, in posting order.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable

logger = logging.getLogger("batchserve.batching")

Task = Callable[[], None]


class FollowUp:
    """A thread running posted tasks in order; `flush` waits until all posted so far ran."""

    def __init__(self, name: str) -> None:
        self._tasks: queue.SimpleQueue[Task | threading.Event | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._closed = False
        self._lock = threading.Lock()  # a task is queued before close's sentinel, or run here
        self._thread.start()

    def post(self, task: Task) -> None:
        """Run `task` soon on the follow-up thread (at once, here, once it is closed)."""
        with self._lock:
            if not self._closed:
                self._tasks.put(task)
                return
        _run_task(task)

    def flush(self, timeout: float | None = 5.0) -> bool:
        """Wait until every task posted before this call has run; False on timeout."""
        if threading.current_thread() is self._thread:
            return True
        done = threading.Event()
        with self._lock:
            if self._closed:
                return True
            self._tasks.put(done)
        return done.wait(timeout)

    def close(self, timeout: float | None = 5.0) -> None:
        """Run what is posted, then stop the thread; later tasks run in their poster."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._tasks.put(None)
        self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            task = self._tasks.get()
            if task is None:
                return
            if isinstance(task, threading.Event):
                task.set()
            else:
                _run_task(task)


def _run_task(task: Task) -> None:
    try:
        task()
    except BaseException:  # one failed task must not stop the ones behind it
        logger.exception("a batch follow-up task failed")
