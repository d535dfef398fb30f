"""`BatchProcessor`: coalesces concurrently submitted items into batches for one model.

Threads: one worker forms and runs batches; a follow-up thread settles each batch's results
and books it while the worker runs the next (`batchserve.batching.followup`); one reaper
fails queued items whose deadline has passed (even while the worker is busy or paused); an
optional health monitor; and a pool of `max_workers` threads for items that cannot be
stacked. How a batch is formed is described on `BatchProcessingStrategy`; the target size
comes from `batchserve.batching.sizing`.

Every accepted item's future settles exactly once: with the model's row, or with a typed error
from `batchserve.errors` (`DeadlineExceeded`, `ModelError`, `OutputMismatch`, `ShuttingDown`,
`EngineFailed`), or it is cancelled by its caller and never reaches the model. Whatever the
model raises (`BaseException`s included) is a model failure of its batch; should the worker
thread still end, the engine fails closed: everything queued and everything submitted later
fails with `EngineFailed`, and liveness reports why.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import itertools
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Generic, TypeVar

from ..errors import DeadlineExceeded, EngineFailed, ItemTooLarge, QueueFull, ShuttingDown
from .collate import Collator
from .config import (
    BatchPriority,
    BatchProcessingStrategy,
    BatchProcessorConfig,
    PrioritizedItem,
)
from .execution import (
    GroupRunner,
    item_nbytes,
    settle_error,
)
from .followup import FollowUp
from .formation import collect_batch, group_entries
from .futures import Gathering, ItemFuture, LoopNotifier, Settled, notifier_for
from .health import EngineSnapshot, HealthChecker, HealthReport, HealthState
from .observer import (
    REJECT_CANCELLED,
    REJECT_DEADLINE,
    REJECT_QUEUE_FULL,
    REJECT_SHUTTING_DOWN,
    REJECT_TOO_LARGE,
    notify,
)
from .queue import ItemQueue
from .sizing import AdaptiveSizer, Observation
from .slots import Slot
from .stats import BatchStats

T = TypeVar("T")
U = TypeVar("U")

_LOAD_EMA = 0.2
_PRIORITY_NAMES = {level: level.name.lower() for level in BatchPriority}


class BatchProcessor(Generic[T, U]):
    """Dynamic batcher: `enqueue_predict` items from any thread (or `await submit(...)` from
    asyncio); a worker thread runs them through `process_func` in batches; each caller gets
    its own row back through a `concurrent.futures.Future`."""

    def __init__(
        self,
        config: BatchProcessorConfig | None = None,
        metrics_collector: Any | None = None,
        *,
        memory_probe: Callable[[], float] | None = None,
    ) -> None:
        self.config = config if config is not None else BatchProcessorConfig()
        cfg = self.config
        self.metrics = metrics_collector
        self.logger = logging.getLogger("batchserve.batching")
        self.queue = ItemQueue(
            cfg.max_queue_size,
            prioritized=cfg.enable_priority_queue,
            aging_s=cfg.priority_aging,
        )
        self.stop_event = threading.Event()
        self.paused_event = threading.Event()
        self.shutdown_event = threading.Event()
        self.batch_ready_event = threading.Event()
        self.worker_thread: threading.Thread | None = None
        self.worker_lock = threading.RLock()
        self.executor: ThreadPoolExecutor | None = None
        self.stats = BatchStats(cfg.monitoring_window) if cfg.enable_monitoring else None
        self._sizer = AdaptiveSizer(
            cfg.min_batch_size,
            cfg.max_batch_size,
            cfg.initial_batch_size,
            latency_budget_s=cfg.item_timeout / 2 if cfg.item_timeout else None,
        )
        self._batch_size_lock = threading.RLock()
        self._max_batch_memory = cfg.max_batch_memory_bytes
        self._wake_pending = False  # a worker wake-up is scheduled on a loop
        self._system_load = 0.0
        self._last_batch_start: float | None = None
        self._active_batches: dict[int, tuple[str, float]] = {}  # id -> (slot name, start)
        self._slots: list[Slot] = []
        self._collator: Collator | None = None
        self._notifier: LoopNotifier | None = None  # of the loop submissions last came from
        self._sequence = itertools.count()
        self._batch_ids = itertools.count(1)
        self._rejected: Counter[str] = Counter()
        self._abort_event = threading.Event()
        self._reaper_wake = threading.Event()
        self._threads: list[threading.Thread] = []
        self._followup: FollowUp | None = None
        kwargs = {"memory_probe": memory_probe} if memory_probe is not None else {}
        self._health = HealthChecker(cfg, **kwargs)
        self._failure: str | None = None  # why the worker ended for good, once it has
        self._stopped = False  # stop() has run (abort() refuses work but leaves the joins to it)
        self._last_health: HealthReport | None = None

    # -- lifecycle -------------------------------------------------------------------------

    def start(
        self,
        process_func: Callable[[Any], Any] | Sequence[Callable[[Any], Any]],
        *,
        collator: Collator | None = None,
    ) -> None:
        """Start the workers (and reaper, and health monitor) running `process_func`.

        With ``config.instances`` slots, `process_func` is one function shared by every slot,
        or a sequence of one per slot (each slot's own model instance). `collator` turns a
        group of items into the model's batch and its output back into rows (default: stack
        same-shape arrays; see `batchserve.batching.collate`). Raises `RuntimeError` if
        already started or stopped, `ValueError` for a sequence of the wrong length.
        """
        count = self.config.instances
        funcs = list(process_func) if isinstance(process_func, Sequence) else [process_func]
        if len(funcs) == 1:
            funcs *= count
        if len(funcs) != count:
            raise ValueError(f"{len(funcs)} model functions for instances={count}")
        with self.worker_lock:
            if self.worker_thread is not None or self.stop_event.is_set():
                raise RuntimeError("BatchProcessor can be started only once")
            self.executor = ThreadPoolExecutor(
                self.config.max_workers, thread_name_prefix="batchserve-item"
            )
            self._followup = FollowUp("batchserve-followup")
            self._collator = collator
            for index, func in enumerate(funcs):
                runner = GroupRunner(
                    func,
                    max_retries=self.config.max_retries,
                    retry_delay=self.config.retry_delay,
                    isolate_failures=self.config.isolate_failures,
                    collector=self.metrics,
                    stop_event=self._abort_event,
                    defer=self._followup.post,
                    collator=collator,
                )
                self._slots.append(Slot(index, runner))
            for slot in self._slots:
                slot.thread = self._spawn(slot.thread_name, self._wrapped_worker_loop, slot)
            self.worker_thread = self._slots[0].thread
            self._spawn("batchserve-deadlines", self._deadline_loop)
            if self.config.enable_health_monitoring:
                self._spawn("batchserve-health", self._health_check_loop)

    def _spawn(self, name: str, target: Callable[..., None], *args: Any) -> threading.Thread:
        thread = threading.Thread(target=target, args=args, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)
        return thread

    def stop(self, timeout: float | None = 5.0) -> None:
        """Refuse new items, process what is queued for up to `timeout` seconds, then fail
        whatever is left (queued or still running) with `ShuttingDown`. Idempotent."""
        with self.worker_lock:
            if self._stopped:
                return
            self._stopped = True
            self.stop_event.set()
        self.queue.close()
        self.paused_event.clear()
        workers = [slot.thread for slot in self._slots if slot.thread is not None]
        until = None if timeout is None else time.monotonic() + timeout
        for worker in workers:
            worker.join(None if until is None else max(0.0, until - time.monotonic()))
        stuck = any(worker.is_alive() for worker in workers)
        # Whatever state the worker is in (done, stuck in the model, dead), nothing is left
        # without an answer: a worker that drained normally leaves nothing to fail here.
        self._abort("the batch processor stopped before this item was processed")
        if self._followup is not None:
            self._followup.close()
        self.shutdown_event.set()
        self._reaper_wake.set()
        for thread in self._threads:
            if thread not in workers:
                thread.join(1.0)
        if self.executor is not None:
            # Once the worker has exited the pool is idle, so joining it is quick and leaves no
            # thread behind; a worker stuck in the model may be waiting on pool threads.
            self.executor.shutdown(wait=not stuck, cancel_futures=True)
        self.logger.info("batch processor stopped")

    def _abort(self, reason: str, error: type[Exception] = ShuttingDown) -> None:
        left = self.queue.abort()
        self._fail(left, error(reason), REJECT_SHUTTING_DOWN)
        running = [entry for slot in self._slots for entry in slot.inflight]
        if running and any(not e.future.done() for e in running if e.future is not None):
            self.logger.warning("%d item(s) still running at the drain deadline", len(running))
            self._fail(running, error("the engine stopped while the model ran this item"))
        # Set last: a worker it wakes (retry delay, batch interval) finds its callers answered.
        self._abort_event.set()

    def abort(self, reason: str = "the server is exiting") -> None:
        """Stop now: refuse new items and fail everything queued or running with
        `ShuttingDown(reason)` at once (a running model call is not interrupted; its result is
        dropped). For a second shutdown signal; `stop()` afterwards only joins the threads."""
        self.stop_event.set()
        self.paused_event.clear()
        self._abort(reason)

    def swap_model(
        self, process_func: Callable[[Any], Any] | Sequence[Callable[[Any], Any]]
    ) -> None:
        """Run every batch formed from now on through `process_func` (one shared function, or
        one per slot). A batch already running finishes with the function it started with:
        no batch is answered by a mix of the two. Raises `RuntimeError` before `start`."""
        if not self._slots:
            raise RuntimeError("the batch processor has not been started")
        funcs = list(process_func) if isinstance(process_func, Sequence) else [process_func]
        if len(funcs) == 1:
            funcs *= len(self._slots)
        if len(funcs) != len(self._slots):
            raise ValueError(f"{len(funcs)} model functions for {len(self._slots)} instances")
        for slot, func in zip(self._slots, funcs, strict=True):
            slot.runner.replace(func)

    def pause(self) -> None:
        """Dispatch nothing new; queued items stay queued (their deadlines still apply)."""
        if self.stop_event.is_set():
            return
        self.paused_event.set()
        self.queue.set_paused(True)

    def resume(self) -> None:
        """Resume dispatching after `pause`."""
        self.paused_event.clear()
        if not self.stop_event.is_set():
            self.queue.set_paused(False)

    # -- submission -------------------------------------------------------------------------

    def enqueue(
        self,
        item: T,
        timeout: float | None = None,
        priority: BatchPriority = BatchPriority.NORMAL,
        *,
        item_timeout: float | None = None,
    ) -> None:
        """Queue `item` for processing without a result for the caller (errors are logged)."""
        future = self.enqueue_predict(item, timeout, priority, item_timeout=item_timeout)
        future.add_done_callback(self._log_fire_and_forget)

    def _log_fire_and_forget(self, future: Future[Any]) -> None:
        if not future.cancelled() and future.exception() is not None:
            self.logger.warning("enqueued item failed: %s", future.exception())

    def enqueue_predict(
        self,
        item: T,
        timeout: float | None = None,
        priority: BatchPriority = BatchPriority.NORMAL,
        *,
        item_timeout: float | None = None,
    ) -> Future[U]:
        """Queue `item` and return a future for its result row.

        `timeout`: seconds to wait for room when the queue is full (None = wait as long as it
        takes, 0 = not at all). `item_timeout`: this item's deadline in seconds from now
        (default `config.item_timeout`). Raises `QueueFull` or `ShuttingDown` (both
        `RuntimeError`s) and `ItemTooLarge` (a `ValueError`).
        """
        return self.enqueue_many([item], timeout, priority, item_timeout=item_timeout)[0]

    def enqueue_many(
        self,
        items: Sequence[T],
        timeout: float | None = None,
        priority: BatchPriority = BatchPriority.NORMAL,
        *,
        item_timeout: float | None = None,
    ) -> list[Future[U]]:
        """Queue several items atomically (all or none); one future per item, in order."""
        futures: list[Future[U]] = [Future() for _ in items]
        self._enqueue(items, futures, timeout, priority, item_timeout)
        return futures

    def enqueue_async(
        self,
        items: Sequence[T],
        *,
        priority: BatchPriority = BatchPriority.NORMAL,
        item_timeout: float | None = None,
        on_settled: Settled | None = None,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> Gathering:
        """Queue several items atomically from a running event loop, never blocking it (a
        full queue raises `QueueFull` at once). The returned `Gathering`'s `waiter` resolves
        on the loop with every result in order, or the first error; with `on_settled` that
        callback is called on the loop instead (see `Gathering`). `cancel()` drops the items
        still queued. Completions wake the loop once per batch, not once per item, and the
        worker is woken once per loop iteration, not once per submission. `loop`, when the
        caller has it, must be the running loop (it saves looking it up)."""
        if loop is None:
            loop = asyncio.get_running_loop()
        notifier = self._notifier
        if notifier is None or notifier.loop is not loop:
            notifier = self._notifier = notifier_for(loop)
        gathering = Gathering(len(items), on_settled, loop, notifier)
        self._enqueue(items, gathering.futures, 0, priority, item_timeout, wake=False)
        if not self._wake_pending:
            self._wake_pending = True
            loop.call_soon(self._wake_worker)
        return gathering

    def _wake_worker(self) -> None:
        # Submissions that arrive together (one poll of the sockets) are queued before the
        # worker looks: woken per submission, it would take them one by one, each small
        # batch costing a thread switch and a model call, all on the cores the loop needs.
        self._wake_pending = False
        self.queue.wake()

    def _enqueue(
        self,
        items: Sequence[T],
        futures: Sequence[ItemFuture],
        timeout: float | None,
        priority: BatchPriority,
        item_timeout: float | None,
        *,
        wake: bool = True,
    ) -> None:
        if self._failure is not None:
            self._count_reject(REJECT_SHUTTING_DOWN, len(items))
            raise EngineFailed(self._failure)
        if self.stop_event.is_set():
            self._count_reject(REJECT_SHUTTING_DOWN, len(items))
            raise ShuttingDown("the batch processor is shutting down")
        self._check_sizes(items)
        limit = self.config.item_timeout if item_timeout is None else item_timeout
        if limit is not None and limit <= 0:
            raise ValueError(f"item_timeout must be > 0 seconds, got {limit}")
        now = time.monotonic()
        deadline = None if limit is None else now + limit
        level = priority if type(priority) is BatchPriority else BatchPriority(priority)
        seq = self._sequence
        entries = [
            PrioritizedItem(level, next(seq), item, future, now, deadline)
            for item, future in zip(items, futures, strict=True)
        ]
        try:
            if self.queue.put_many(entries, timeout, wake=wake):
                self._reaper_wake.set()
        except QueueFull:
            self._count_reject(REJECT_QUEUE_FULL, len(items))
            raise
        except ShuttingDown:
            self._count_reject(REJECT_SHUTTING_DOWN, len(items))
            raise
        notify(self.metrics, "on_enqueue", _PRIORITY_NAMES[level], len(self.queue))

    def _check_sizes(self, items: Sequence[T]) -> None:
        cap = self._max_batch_memory
        if cap is None:
            return
        for item in items:
            size = item_nbytes(item)
            if size > cap:
                self._count_reject(REJECT_TOO_LARGE)
                raise ItemTooLarge(
                    f"item of {size} bytes exceeds max_batch_memory_mb="
                    f"{self.config.max_batch_memory_mb:g} ({cap} bytes)"
                )

    async def submit(
        self,
        item: T,
        *,
        priority: BatchPriority = BatchPriority.NORMAL,
        item_timeout: float | None = None,
    ) -> U:
        """Awaitable `enqueue_predict` that never blocks the event loop: a full queue raises
        `QueueFull` at once. Cancelling the awaiting task cancels the queued item."""
        (result,) = await self.submit_many([item], priority=priority, item_timeout=item_timeout)
        return result

    async def submit_many(
        self,
        items: Sequence[T],
        *,
        priority: BatchPriority = BatchPriority.NORMAL,
        item_timeout: float | None = None,
    ) -> list[U]:
        """Submit several items atomically and await all results, in order. If one fails,
        the others still queued are cancelled and the first error is raised."""
        gathering = self.enqueue_async(items, priority=priority, item_timeout=item_timeout)
        assert gathering.waiter is not None
        try:
            return await gathering.waiter
        except BaseException:
            gathering.cancel()
            raise

    # -- the worker -------------------------------------------------------------------------

    def _wrapped_worker_loop(self, slot: Slot) -> None:
        """Keep the worker alive: a crash fails the batch in hand and the loop restarts. If
        the thread ends anyway before `stop()`, the engine fails closed (`_fail_closed`)."""
        reason = "the batch worker thread exited unexpectedly"
        try:
            while True:
                try:
                    self._worker_loop(slot)
                    return
                except BaseException:
                    failed, slot.inflight = slot.inflight, []
                    self._fail(failed, ShuttingDown("internal error in the batch worker"))
                    self.logger.exception("batch worker crashed; failing its batch and restarting")
        except BaseException as exc:  # the recovery itself failed: the thread ends here
            reason = f"the batch worker thread died: {type(exc).__name__}: {exc}"
        finally:
            if not self.stop_event.is_set():
                self._fail_closed(reason)

    def _fail_closed(self, reason: str) -> None:
        """The worker is gone for good: fail everything queued and everything submitted from
        now on with `EngineFailed`, and report it through health (liveness false)."""
        self._failure = reason
        self._abort(reason, EngineFailed)
        with contextlib.suppress(BaseException):  # logging may be what broke the worker
            self.logger.error("engine failed closed: %s", reason)

    def _worker_loop(self, slot: Slot) -> None:
        while True:
            self._respect_min_interval()
            entries = self._collect_batch()
            if not entries:
                return
            self._process_batch(entries, slot)

    def _respect_min_interval(self) -> None:
        interval = self.config.min_batch_interval
        if interval <= 0 or self._last_batch_start is None:
            return
        wait = self._last_batch_start + interval - time.monotonic()
        if wait > 0:
            self._abort_event.wait(wait)

    def _collect_batch(self) -> list[PrioritizedItem]:
        """Take the next batch according to the strategy (see `BatchProcessingStrategy`)."""
        cfg = self.config
        fixed_wait = (
            cfg.batch_timeout if cfg.processing_strategy is BatchProcessingStrategy.FIXED else None
        )
        return collect_batch(self.queue, self._target_size, self._max_batch_memory, fixed_wait)

    def _process_batch(self, entries: list[PrioritizedItem], slot: Slot) -> None:
        batch_id = next(self._batch_ids)
        start = time.monotonic()
        self._update_system_load(start)
        self._active_batches[batch_id] = (slot.name, start)
        slot.inflight, slot.running_since = entries, start
        self.batch_ready_event.set()
        try:
            live = self._admit(entries, start)
            key_of = self._collator.key if self._collator is not None else None
            for key, group in group_entries(live, key_of).items():
                if self._abort_event.is_set():
                    # Past stop()'s deadline: answer instead of running the model again.
                    self._fail(group, ShuttingDown("the batch processor stopped"))
                    continue
                self._run_group(key, group, slot)
        except BaseException:
            # No caller may be left waiting because the engine itself broke (an item that
            # cannot be stacked, a MemoryError while stacking): fail what is not settled yet,
            # before anything else that could raise.
            self._fail(entries, ShuttingDown("internal error in the batch worker"))
            self.logger.exception("internal error in batch %d; failing its items", batch_id)
        finally:
            slot.inflight, slot.running_since = [], None
            slot.batches += 1
            slot.busy_s += time.monotonic() - start
            del self._active_batches[batch_id]
            if not self._active_batches:
                self.batch_ready_event.clear()

    def _admit(self, entries: list[PrioritizedItem], now: float) -> list[PrioritizedItem]:
        """Drop cancelled and expired entries; mark the rest running (no longer cancellable)."""
        live: list[PrioritizedItem] = []
        for entry in entries:
            future = entry.future
            try:
                running = future is None or future.set_running_or_notify_cancel()
            except RuntimeError:  # settled by someone else while queued
                running = False
            if not running:
                self._count_dropped(entry, now)
            elif entry.deadline is not None and entry.deadline <= now:
                self._expire(entry, now)
            else:
                live.append(entry)
        return live

    def _run_group(self, key: Hashable | None, group: list[PrioritizedItem], slot: Slot) -> None:
        runner = slot.runner
        start = time.monotonic()
        if key is None:
            assert self.executor is not None
            failed = sum(self.executor.map(runner.run_single, group))
        else:
            failed = runner.run(group)
        end = time.monotonic()
        target, depth = self.current_batch_size, len(self.queue)
        self._adapt_target(len(group), failed, end - start, depth)
        assert self._followup is not None  # made by start(), before the worker
        self._followup.post(
            functools.partial(self._book_group, group, start, end, failed, depth, target, slot.name)
        )

    def _adapt_target(self, size: int, failed: int, elapsed: float, depth: int) -> None:
        """Move the target after a group, here in the worker: its next take uses it."""
        if failed and self.config.reduce_batch_on_failure:
            self._resize(self._sizer.back_off)
        elif self._adaptive:
            observation = Observation(size, depth, elapsed, self._system_load)
            self._resize(functools.partial(self._sizer.observe, observation))

    def _book_group(
        self,
        group: list[PrioritizedItem],
        start: float,
        end: float,
        failed: int,
        depth: int,
        target: int,
        instance: str,
    ) -> None:
        """Book a group the model ran (on the follow-up thread, while the next one runs)."""
        size = len(group)
        elapsed = end - start
        if self.stats is not None:
            enqueued = sum(e.enqueue_time for e in group) / size
            self.stats.update(elapsed, size - failed, start - enqueued, end - enqueued, depth)
            if failed:
                self.stats.record_error(failed)
        if self.metrics is not None:
            waits = [start - e.enqueue_time for e in group]
            notify(self.metrics, "on_batch", size, target, elapsed, waits)
            notify(self.metrics, "on_instance_batch", instance, elapsed)
        cfg = self.config
        if cfg.enable_memory_optimization and size >= cfg.gc_batch_threshold:
            gc.collect(1)
        if cfg.debug_mode:
            self.logger.debug(
                "batch of %d (target %d, %d failed) in %.3f ms", size, target, failed, elapsed * 1e3
            )
        if self.metrics is not None:
            notify(self.metrics, "on_queue_depth", self.queue.depth_by_priority())

    @property
    def _adaptive(self) -> bool:
        cfg = self.config
        return (
            cfg.enable_adaptive_batching
            and cfg.processing_strategy is BatchProcessingStrategy.ADAPTIVE
        )

    def _update_system_load(self, start: float) -> None:
        """EMA of the worker's busy fraction between two batch starts (0 idle .. 1 saturated)."""
        last = self._last_batch_start
        self._last_batch_start = start
        if last is None or self.stats is None or not self.stats.processing_times:
            return
        interval = start - last
        if interval > 0:
            busy = min(1.0, self.stats.processing_times[-1] / interval)
            self._system_load += _LOAD_EMA * (busy - self._system_load)

    # -- deadlines and health ---------------------------------------------------------------

    def _deadline_loop(self) -> None:
        while not self.shutdown_event.is_set():
            try:
                self._expire_due()
            except BaseException:
                # Deadlines must keep being enforced whatever one pass ran into.
                self.logger.exception("deadline reaper pass failed")
                self._reaper_wake.wait(0.1)

    def _expire_due(self) -> None:
        """Fail the queued items whose deadline has passed, then sleep until the next one."""
        self._reaper_wake.clear()
        now = time.monotonic()
        expired = self.queue.expire(now)
        for entry in expired:
            self._expire(entry, now)
        upcoming = self.queue.next_deadline()
        wait = None
        if upcoming is not None:
            # A far deadline (item_timeout=inf) must not overflow the wait and kill the reaper.
            wait = min(max(0.0, upcoming - time.monotonic()), threading.TIMEOUT_MAX)
        self._reaper_wake.wait(wait)

    def _health_check_loop(self) -> None:
        while not self.shutdown_event.wait(self.config.health_check_interval):
            try:
                self.check_health()
            except Exception:
                # One failed reading (psutil, an injected probe) must not end monitoring.
                self.logger.exception("health check failed")

    def check_health(self) -> HealthReport:
        """Run every health check now; on critical memory, shrink batches and collect garbage."""
        now = time.monotonic()
        threads = [slot.thread for slot in self._slots]
        alive = bool(threads) and all(t is not None and t.is_alive() for t in threads)
        worker = self.worker_thread
        snapshot = EngineSnapshot(
            worker_alive=alive and self._failure is None,
            failure=self._failure,
            batches=[(name, now - t) for name, t in list(self._active_batches.values())],
            queue_size=len(self.queue),
            running=worker is not None and not self.stop_event.is_set(),
        )
        report = self._health.check(snapshot)
        if report.memory_critical:
            self._resize(self._sizer.back_off)
            gc.collect()
        previous = self._last_health
        if previous is None or previous.state is not report.state:
            log = self.logger.info if report.state is HealthState.HEALTHY else self.logger.warning
            log("engine health %s: %s", report.state.value, "; ".join(report.reasons) or "ok")
        self._last_health = report
        return report

    def health(self) -> HealthReport:
        """A fresh health report (same as `check_health`)."""
        return self.check_health()

    # -- sizing and stats -------------------------------------------------------------------

    @property
    def current_batch_size(self) -> int:
        """The current target batch size."""
        return self._sizer.target

    def _target_size(self) -> int:
        collator = self._collator
        if collator is not None and collator.max_rows is not None:
            return min(self._sizer.target, collator.max_rows)
        return self._sizer.target

    def update_batch_size(self, new_size: int) -> None:
        """Set the target batch size; raises `ValueError` outside [min, max]_batch_size."""
        cfg = self.config
        if not cfg.min_batch_size <= new_size <= cfg.max_batch_size:
            raise ValueError(
                f"batch size must be within min_batch_size={cfg.min_batch_size} and "
                f"max_batch_size={cfg.max_batch_size}, got {new_size}"
            )
        self._resize(functools.partial(self._sizer.set_target, new_size))

    def _resize(self, change: Callable[[], int]) -> None:
        """Apply one change to the adaptive sizer and report the new target. The worker, the
        health monitor and users each make changes: one at a time, under the lock."""
        with self._batch_size_lock:
            notify(self.metrics, "on_target_size", change())

    def get_stats(self) -> dict[str, Any]:
        """Window statistics plus engine state; an empty dict when monitoring is disabled."""
        if self.stats is None:
            return {}
        if self._followup is not None:
            self._followup.flush(timeout=1.0)  # the books of every batch answered so far
        stats: dict[str, Any] = dict(self.stats.get_stats())
        stats.update(
            current_batch_size=self.current_batch_size,
            queue_size=len(self.queue),
            queue_by_priority=self.queue.depth_by_priority(),
            active_batches=len(self._active_batches),
            instances=[slot.as_dict(time.monotonic()) for slot in self._slots],
            is_paused=self.is_paused,
            is_running=self.is_running,
            system_load=self._system_load,
            rejected=dict(self._rejected),
            strategy=self.config.processing_strategy.value,
        )
        return stats

    @property
    def is_running(self) -> bool:
        """Started and not stopped."""
        return (
            self.worker_thread is not None
            and not self.stop_event.is_set()
            and self._failure is None
        )

    @property
    def is_paused(self) -> bool:
        """Paused by `pause()`."""
        return self.paused_event.is_set()

    def __len__(self) -> int:
        return len(self.queue)

    # -- helpers ----------------------------------------------------------------------------

    def _count_reject(self, reason: str, count: int = 1) -> None:
        self._rejected[reason] += count
        notify(self.metrics, "on_rejected", reason, count)

    def _fail(
        self, entries: list[PrioritizedItem], error: Exception, reason: str | None = None
    ) -> None:
        failed = sum(settle_error(e.future, type(error)(*error.args)) for e in entries)
        if reason is not None and failed:
            self._count_reject(reason, failed)

    def _expire(self, entry: PrioritizedItem, now: float) -> None:
        future = entry.future
        if settle_error(future, DeadlineExceeded(_deadline_message(entry, now))):
            self._count_reject(REJECT_DEADLINE)
        elif future is not None and future.cancelled():
            self._count_dropped(entry, now)

    def _count_dropped(self, entry: PrioritizedItem, now: float) -> None:
        """Count a queued entry its caller cancelled, once. A caller waiting with the same
        deadline cancels at that deadline (its timer races with the reaper): past the
        deadline the drop counts as a deadline, before it as a cancel."""
        late = entry.deadline is not None and entry.deadline <= now
        self._count_reject(REJECT_DEADLINE if late else REJECT_CANCELLED)


def _deadline_message(entry: PrioritizedItem, now: float) -> str:
    waited = now - entry.enqueue_time
    return f"deadline passed after {waited:.3f}s in the queue, before the model ran"
