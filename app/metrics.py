"""Every Prometheus series batchserve exposes, declared in one place on an injected registry.

`Metrics` is both the engine's metrics collector (it implements every hook of
`batchserve.batching.observer.MetricsCollector`) and the object the HTTP layer reports requests,
readiness and model state to. Series follow Prometheus conventions: a ``batchserve_`` prefix,
base units (seconds, bytes), ``_total`` on counters, and histograms rather than summaries so
quantiles can be aggregated across replicas.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from importlib.metadata import PackageNotFoundError, version

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from .batching.observer import (
    REJECT_CANCELLED,
    REJECT_DEADLINE,
    REJECT_QUEUE_FULL,
    REJECT_SHUTTING_DOWN,
    REJECT_TOO_LARGE,
    MetricsCollector,
)
from .histograms import BatchHistogram

NAMESPACE = "batchserve"

# Input refused by the HTTP layer before it reaches the engine.
REJECT_INVALID = "invalid"

REJECT_REASONS: tuple[str, ...] = (
    REJECT_QUEUE_FULL,
    REJECT_DEADLINE,
    REJECT_CANCELLED,
    REJECT_INVALID,
    REJECT_SHUTTING_DOWN,
    REJECT_TOO_LARGE,
)
PRIORITIES: tuple[str, ...] = ("high", "normal", "low")
_LOWER: dict[str, str] = {n: n for n in PRIORITIES} | {n.upper(): n for n in PRIORITIES}
OUTCOMES: tuple[str, ...] = ("success", "client_error", "server_error", "rejected")
RELOAD_OUTCOMES: tuple[str, ...] = ("success", "failure")

# 0.5 ms .. 30 s: from a tiny in-memory model to a request stuck behind a full queue.
DURATION_BUCKETS: tuple[float, ...] = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
)  # fmt: skip
BATCH_SIZE_BUCKETS: tuple[float, ...] = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
FILL_RATIO_BUCKETS: tuple[float, ...] = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)

# Status codes that mean "the service refused the work", not "the work failed".
_REJECTED_CODES = frozenset({429, 503})


def outcome_for(status_code: int) -> str:
    """Classify an HTTP status: 429/503 rejected, other 4xx client_error, 5xx server_error.

    Anything below 400 (2xx, and 1xx/3xx should they ever occur) counts as success.
    """
    if status_code in _REJECTED_CODES:
        return "rejected"
    if status_code >= 500:
        return "server_error"
    if status_code >= 400:
        return "client_error"
    return "success"


def _counter(
    registry: CollectorRegistry, name: str, doc: str, labels: Sequence[str] = ()
) -> Counter:
    return Counter(name, doc, labels, namespace=NAMESPACE, registry=registry)


def _gauge(registry: CollectorRegistry, name: str, doc: str, labels: Sequence[str] = ()) -> Gauge:
    return Gauge(name, doc, labels, namespace=NAMESPACE, registry=registry)


def _histogram(
    registry: CollectorRegistry,
    name: str,
    doc: str,
    buckets: Sequence[float],
    labels: Sequence[str] = (),
) -> Histogram:
    return Histogram(name, doc, labels, namespace=NAMESPACE, buckets=buckets, registry=registry)


def _package_version() -> str:
    try:
        return version("batchserve")
    except PackageNotFoundError:
        return "unknown"


PENDING_BATCHES = 256
#: Request observations queued before they are applied (and at every collection).
PENDING_REQUESTS = 64


class _BeforeCollect(Collector):
    """Runs a callback whenever its registry is collected, exporting nothing itself."""

    def __init__(self, callback: Callable[[], None]) -> None:
        self._callback = callback

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        self._callback()
        return iter(())


class _QueueTallies(Collector):
    """Items enqueued and queue depth by priority: plain integers added to under one lock on
    the hot path (a labelled prometheus_client update costs several Python calls and a lock
    each) and exported as ``enqueued_total`` and ``queue_depth`` when collected."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.enqueued = dict.fromkeys(PRIORITIES, 0)
        self.depth = dict.fromkeys(PRIORITIES, 0)  # exact after each batch, then + enqueues

    def collect(self) -> Iterator[Metric]:
        with self.lock:
            enqueued, depth = dict(self.enqueued), dict(self.depth)
        families: tuple[tuple[type[CounterMetricFamily | GaugeMetricFamily], str, str], ...] = (
            (CounterMetricFamily, "enqueued_total", "Items accepted into the engine's queue"),
            (GaugeMetricFamily, "queue_depth", "Items waiting in the engine's queue"),
        )
        for (kind, name, doc), values in zip(families, (enqueued, depth), strict=True):
            family = kind(f"{NAMESPACE}_{name}", f"{doc}, by priority.", labels=["priority"])
            for priority, value in values.items():
                family.add_metric([priority], value)
            yield family


class Metrics(MetricsCollector):
    """batchserve's Prometheus series, all registered on one `CollectorRegistry`.

    Construction registers every series on ``registry`` (a fresh one when None; the global
    default registry is never touched), so two instances never collide when each gets its own
    registry. Labelled series with a known, closed set of label values (reject reasons, queue
    priorities) are pre-initialised to 0 so they exist from the first scrape. Every method is
    thread-safe and cheap enough for the engine's hot path; none raises for valid arguments.

    ``model_name`` seeds ``batchserve_model_info`` (with platform ``unknown``) until
    `set_model_loaded` reports the real model. ``process_metrics`` adds the standard
    ``process_*``, ``python_info`` and ``python_gc_*`` series.
    """

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        *,
        model_name: str = "default",
        process_metrics: bool = True,
    ) -> None:
        self._registry = registry if registry is not None else CollectorRegistry()
        # Registered first, so every collection applies the pending batches before it reads.
        self._batches_pending: deque[tuple[int, int, float, Sequence[float]]] = deque()
        self._requests_pending: deque[tuple[str, int, float]] = deque()
        self._registry.register(_BeforeCollect(self._apply_pending))
        self._declare_http()
        self._declare_engine()
        self._declare_queue()
        self._declare_state()
        self._request_counters: dict[tuple[str, int], Counter] = {}
        self._model_info.labels(model=model_name, platform="unknown").set(1)
        self._build_info.labels(version=_package_version()).set(1)
        if process_metrics:
            ProcessCollector(registry=self._registry)
            PlatformCollector(registry=self._registry)
            GCCollector(registry=self._registry)

    @property
    def registry(self) -> CollectorRegistry:
        """The registry every series of this object is registered on."""
        return self._registry

    # -- declarations ------------------------------------------------------------------------

    def _declare_http(self) -> None:
        reg = self._registry
        self._requests = _counter(
            reg,
            "requests_total",
            "HTTP requests answered, by route template, status code and outcome.",
            ("route", "code", "outcome"),
        )
        self._request_duration = BatchHistogram(
            f"{NAMESPACE}_request_duration_seconds",
            "Time from request received to response sent, by route template.",
            DURATION_BUCKETS,
            reg,
            ("route",),
        )
        self._inflight = _gauge(reg, "inflight_requests", "HTTP requests being handled now.")
        # A plain counter read at scrape time: a locked gauge update per request costs more.
        self.inflight = 0
        self._inflight.set_function(lambda: self.inflight)

    def _declare_engine(self) -> None:
        reg = self._registry
        # Unlabelled histograms keep only their bound observe: the hot path needs nothing else.
        self._observe_queue_waits = BatchHistogram(
            f"{NAMESPACE}_queue_wait_seconds",
            "Time an item waited in the queue before its batch started; one per item.",
            DURATION_BUCKETS,
            reg,
        ).observe_many
        self._observe_execution = _histogram(
            reg,
            "batch_execution_seconds",
            "Wall time of one model call on a batch, successful or not.",
            DURATION_BUCKETS,
        ).observe
        self._observe_batch_size = _histogram(
            reg, "batch_size", "Items in each batch handed to the model.", BATCH_SIZE_BUCKETS
        ).observe
        self._observe_fill_ratio = _histogram(
            reg,
            "batch_fill_ratio",
            "Formed batch size divided by the target batch size at the time.",
            FILL_RATIO_BUCKETS,
        ).observe
        self._batches = _counter(reg, "batches_total", "Model calls made on a batch.")
        self._items = _counter(reg, "items_processed_total", "Items handed to the model.")
        self._model_errors = _counter(
            reg,
            "model_errors_total",
            "Items failed because the model raised or broke its contract.",
        )
        self._retries = _counter(reg, "batch_retries_total", "Failed batches retried whole.")
        self._instance_batches = _counter(
            reg, "instance_batches_total", "Model calls per execution slot.", ("instance",)
        )
        self._instance_busy = _counter(
            reg,
            "instance_busy_seconds_total",
            "Time each execution slot spent in the model (s).",
            ("instance",),
        )
        for series in (self._instance_batches, self._instance_busy):
            series.labels("instance 0")  # the one slot of a default engine, from the start
        self._padding_rows = _counter(
            reg,
            "batch_padding_rows_total",
            "Rows added to batches to reach a size the model takes.",
        )
        self._padding_values = _counter(
            reg,
            "batch_padding_values_total",
            "Values added to rows to reach the batch's common length (variable-length inputs).",
        )
        self._isolations = _counter(
            reg, "batch_isolations_total", "Failed batches split in two to isolate failing items."
        )
        self._rejected = _counter(
            reg,
            "rejected_total",
            "Items refused or dropped before reaching the model, by reason.",
            ("reason",),
        )
        for reason in REJECT_REASONS:
            self._rejected.labels(reason=reason)

    def _declare_queue(self) -> None:
        reg = self._registry
        self._target_size = _gauge(
            reg, "target_batch_size", "Current target batch size of the engine (items)."
        )
        self._queue_capacity = _gauge(
            reg, "queue_capacity", "Items the queue holds before enqueue blocks (max_queue_size)."
        )
        self._tallies = _QueueTallies()
        reg.register(self._tallies)

    def _declare_state(self) -> None:
        reg = self._registry
        self._paused = _gauge(reg, "paused", "1 while the engine is paused, else 0.")
        self._ready = _gauge(reg, "ready", "1 while the service reports ready, else 0.")
        self._stuck = _gauge(
            reg, "stuck_batches", "Batches running longer than stuck_batch_timeout."
        )
        self._model_load = _gauge(reg, "model_load_seconds", "Time the last model load took.")
        self._model_info = _gauge(
            reg, "model_info", "The loaded model; the value is always 1.", ("model", "platform")
        )
        self._build_info = _gauge(
            reg, "build_info", "The running batchserve build; the value is always 1.", ("version",)
        )
        self._model_version = _gauge(
            reg,
            "model_version_info",
            "The served model's version (1, then one more per load); the value is always 1.",
            ("model", "version"),
        )
        self._reloads = _counter(
            reg,
            "model_reloads_total",
            "Model loads asked of the running service (admin or repository routes), by outcome.",
            ("outcome",),
        )
        for outcome in RELOAD_OUTCOMES:
            self._reloads.labels(outcome=outcome)

    # -- engine hooks ------------------------------------------------------------------------

    def on_enqueue(self, priority: str, queue_depth: int) -> None:
        """Count an accepted item and raise its priority's depth by one until the next resync.

        ``queue_depth`` (the total) is not used: per-priority depths are set exactly by
        `on_queue_depth` after every batch; in between, enqueues keep the gauge moving so a
        queue that fills while the model is busy shows up before the batch finishes. Priority
        names are lower-cased.
        """
        key = _LOWER.get(priority) or priority.lower()
        tallies = self._tallies
        with tallies.lock:
            tallies.enqueued[key] = tallies.enqueued.get(key, 0) + 1
            tallies.depth[key] = tallies.depth.get(key, 0) + 1

    def on_batch(
        self,
        batch_size: int,
        target_size: int,
        processing_time_s: float,
        queue_waits_s: Sequence[float],
    ) -> None:
        """Record one model call: its size, fill ratio, execution time and each item's wait.

        The engine calls this between two model calls, so it only queues the figures. They
        are applied one per answered HTTP request (`observe_request`), all at once when the
        registry is collected (every scrape), and all at once in this call should
        `PENDING_BATCHES` pile up (an engine without HTTP traffic and without scrapes).
        """
        pending = self._batches_pending
        pending.append((batch_size, target_size, processing_time_s, queue_waits_s))
        if len(pending) >= PENDING_BATCHES:
            self._apply_batches()

    def _apply_pending(self) -> None:
        self._apply_requests()
        self._apply_batches()

    def _apply_batches(self) -> None:
        while self._apply_one_batch():
            pass

    def _apply_one_batch(self) -> bool:
        """Apply the oldest queued batch; False when none was left."""
        try:
            batch_size, target_size, processing_time_s, queue_waits_s = (
                self._batches_pending.popleft()
            )
        except IndexError:  # none, or another thread applied the last one
            return False
        self._batches.inc()
        self._items.inc(batch_size)
        self._observe_execution(processing_time_s)
        self._observe_batch_size(batch_size)
        if target_size > 0:
            self._observe_fill_ratio(batch_size / target_size)
        self._observe_queue_waits(queue_waits_s)
        return True

    def on_rejected(self, reason: str, count: int = 1) -> None:
        """Count ``count`` items refused or dropped for ``reason``."""
        self._rejected.labels(reason=reason).inc(count)

    def on_model_error(self, count: int = 1) -> None:
        """Count ``count`` items failed by the model."""
        self._model_errors.inc(count)

    def on_instance_batch(self, instance: str, processing_time_s: float) -> None:
        self._instance_batches.labels(instance).inc()
        self._instance_busy.labels(instance).inc(processing_time_s)

    def on_padding(self, rows: int, values: int) -> None:
        if rows:
            self._padding_rows.inc(rows)
        if values:
            self._padding_values.inc(values)

    def on_retry(self) -> None:
        """Count a whole-batch retry."""
        self._retries.inc()

    def on_isolation(self) -> None:
        """Count a split of a failed batch."""
        self._isolations.inc()

    def on_target_size(self, size: int) -> None:
        """Publish the engine's new target batch size."""
        self._target_size.set(size)

    def on_queue_depth(self, depths: dict[str, int]) -> None:
        """Set the queue depth of every priority named in ``depths``."""
        tallies = self._tallies
        with tallies.lock:
            for priority, depth in depths.items():
                tallies.depth[priority.lower()] = depth

    # -- helpers for the HTTP layer ----------------------------------------------------------

    def observe_request(self, route: str, status_code: int, duration_s: float) -> None:
        """Count one answered request and observe its duration.

        ``route`` must be the route template (``/v2/models/{name}/infer``), never the raw
        path, to keep the label's cardinality bounded. The outcome follows `outcome_for`.
        Observations are queued and applied `PENDING_REQUESTS` at a time, and all of them
        whenever the registry is collected, so a scrape never misses one.
        """
        pending = self._requests_pending
        pending.append((route, status_code, duration_s))
        if len(pending) >= PENDING_REQUESTS:
            self._apply_requests()
        if self._batches_pending:  # the HTTP side has time to spare; the engine's worker not
            self._apply_one_batch()

    def _apply_requests(self) -> None:
        """Apply the queued request observations: one locked increment per distinct
        (route, code) and one binning per route, instead of three locked updates each."""
        pending = self._requests_pending
        counts: dict[tuple[str, int], int] = {}
        durations: dict[str, list[float]] = {}
        while True:
            try:
                route, status_code, duration_s = pending.popleft()
            except IndexError:  # none left, or another thread took the last one
                break
            key = (route, status_code)
            counts[key] = counts.get(key, 0) + 1
            times = durations.get(route)
            if times is None:
                durations[route] = [duration_s]
            else:
                times.append(duration_s)
        for (route, status_code), count in counts.items():
            counter = self._request_counters.get((route, status_code))
            if counter is None:
                # labels() costs more than the increment itself: resolve each child once.
                counter = self._requests.labels(
                    route=route, code=str(status_code), outcome=outcome_for(status_code)
                )
                self._request_counters[(route, status_code)] = counter
            counter.inc(count)
        for route, times in durations.items():
            self._request_duration.observe_many(times, (route,))

    def track_inflight(self) -> AbstractContextManager[None]:
        """A context manager that counts the request as in flight while it is entered."""
        return self._inflight_context()

    @contextmanager
    def _inflight_context(self) -> Iterator[None]:
        self.inflight += 1
        try:
            yield
        finally:
            self.inflight -= 1

    def reject(self, reason: str, count: int = 1) -> None:
        """Count ``count`` items refused for ``reason``; the same series as `on_rejected`."""
        self._rejected.labels(reason=reason).inc(count)

    def set_ready(self, ready: bool) -> None:
        """Publish readiness as 1 or 0."""
        self._ready.set(1 if ready else 0)

    def set_paused(self, paused: bool) -> None:
        """Publish the engine's paused state as 1 or 0."""
        self._paused.set(1 if paused else 0)

    def set_stuck_batches(self, n: int) -> None:
        """Publish how many batches the health monitor currently reports stuck."""
        self._stuck.set(n)

    def set_queue_capacity(self, capacity: int) -> None:
        """Publish the queue's capacity in items, so alerts can compare depth against it."""
        self._queue_capacity.set(capacity)

    def set_model_loaded(self, model: str, platform: str, load_time_s: float) -> None:
        """Publish the loaded model (replacing any previous one) and how long loading took."""
        self._model_info.clear()
        self._model_info.labels(model=model, platform=platform).set(1)
        self._model_load.set(load_time_s)

    def set_model_version(self, model: str, version: int) -> None:
        """Publish the served model's version (replacing the previous one)."""
        self._model_version.clear()
        self._model_version.labels(model=model, version=str(version)).set(1)

    def count_reload(self, success: bool) -> None:
        """Count one model load asked of the running service."""
        self._reloads.labels(outcome=RELOAD_OUTCOMES[0 if success else 1]).inc()

    def render(self) -> tuple[bytes, str]:
        """The registry in the Prometheus text format, with the content type to serve it as."""
        return generate_latest(self._registry), CONTENT_TYPE_LATEST
