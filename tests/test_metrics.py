"""Specification of `batchserve.metrics.Metrics`: every hook and helper moves the right series."""

from __future__ import annotations

import os
import re
import subprocess

import pytest
from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from batchserve.batching.observer import MetricsCollector, notify
from batchserve.metrics import (
    BATCH_SIZE_BUCKETS,
    OUTCOMES,
    PENDING_BATCHES,
    PRIORITIES,
    REJECT_REASONS,
    Metrics,
    outcome_for,
)
from tests.e2e.tools import require_tool

HOOKS = (
    "on_enqueue",
    "on_batch",
    "on_rejected",
    "on_model_error",
    "on_retry",
    "on_isolation",
    "on_target_size",
    "on_queue_depth",
    "on_instance_batch",
    "on_padding",
)
SNAKE_CASE = re.compile(r"^[a-z_][a-z0-9_]*$")


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def metrics(registry: CollectorRegistry) -> Metrics:
    return Metrics(registry, model_name="toy", process_metrics=False)


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


def value(registry: CollectorRegistry, name: str, **labels: str) -> float:
    """The sample's value; fails the test when the series does not exist."""
    found = sample(registry, name, **labels)
    assert found is not None, f"no sample {name}{labels}"
    return found


# -- construction ----------------------------------------------------------------------------


def test_metrics_implements_every_engine_hook() -> None:
    assert issubclass(Metrics, MetricsCollector)
    for hook in HOOKS:
        assert getattr(Metrics, hook) is not getattr(MetricsCollector, hook), hook


def test_without_registry_a_fresh_one_is_used_and_the_global_one_is_untouched() -> None:
    first = Metrics(process_metrics=False)
    second = Metrics(process_metrics=False)
    assert first.registry is not second.registry
    assert REGISTRY.get_sample_value("batchserve_ready") is None


def test_a_registry_holds_only_one_metrics(registry: CollectorRegistry) -> None:
    Metrics(registry, process_metrics=False)
    with pytest.raises(ValueError, match="Duplicated timeseries"):
        Metrics(registry, process_metrics=False)


def test_process_metrics_are_registered_only_when_asked() -> None:
    with_process = CollectorRegistry()
    Metrics(with_process)
    without_process = CollectorRegistry()
    Metrics(without_process, process_metrics=False)
    assert sample(with_process, "python_info", **_python_info_labels(with_process)) == 1
    assert sample(with_process, "python_gc_collections_total", generation="0") is not None
    assert not any(f.name.startswith(("process_", "python_")) for f in without_process.collect())


def test_process_collector_reports_resident_memory_on_linux() -> None:
    if not os.path.exists("/proc/self/stat"):
        pytest.skip("ProcessCollector reads /proc, which only Linux has")
    registry = CollectorRegistry()
    Metrics(registry)
    assert value(registry, "process_resident_memory_bytes") > 0


def _python_info_labels(registry: CollectorRegistry) -> dict[str, str]:
    for family in registry.collect():
        if family.name == "python_info":
            return dict(family.samples[0].labels)
    raise AssertionError("python_info missing")


# -- pre-initialised series ------------------------------------------------------------------


def test_every_reject_reason_exists_at_zero_before_any_reject(
    registry: CollectorRegistry, metrics: Metrics
) -> None:
    assert set(REJECT_REASONS) == {
        "queue_full",
        "deadline",
        "cancelled",
        "invalid",
        "shutting_down",
        "too_large",
    }
    for reason in REJECT_REASONS:
        assert value(registry, "batchserve_rejected_total", reason=reason) == 0


def test_every_priority_exists_at_zero_before_any_enqueue(
    registry: CollectorRegistry, metrics: Metrics
) -> None:
    assert PRIORITIES == ("high", "normal", "low")
    for priority in PRIORITIES:
        assert value(registry, "batchserve_queue_depth", priority=priority) == 0
        assert value(registry, "batchserve_enqueued_total", priority=priority) == 0


def test_unlabelled_state_series_start_at_zero(
    registry: CollectorRegistry, metrics: Metrics
) -> None:
    for name in (
        "batchserve_inflight_requests",
        "batchserve_paused",
        "batchserve_ready",
        "batchserve_stuck_batches",
        "batchserve_target_batch_size",
        "batchserve_queue_capacity",
        "batchserve_model_load_seconds",
        "batchserve_batches_total",
        "batchserve_items_processed_total",
        "batchserve_model_errors_total",
        "batchserve_batch_retries_total",
        "batchserve_batch_isolations_total",
        "batchserve_batch_size_count",
        "batchserve_queue_wait_seconds_count",
    ):
        assert value(registry, name) == 0, name


def test_model_info_is_seeded_with_the_model_name(
    registry: CollectorRegistry, metrics: Metrics
) -> None:
    assert value(registry, "batchserve_model_info", model="toy", platform="unknown") == 1


def test_build_info_carries_a_version(registry: CollectorRegistry, metrics: Metrics) -> None:
    families = {f.name: f for f in registry.collect()}
    (build,) = families["batchserve_build_info"].samples
    assert build.value == 1
    assert build.labels["version"]


# -- engine hooks ----------------------------------------------------------------------------


def test_on_enqueue_counts_the_item_and_raises_its_priority_depth(
    registry: CollectorRegistry, metrics: Metrics
) -> None:
    metrics.on_enqueue("high", 1)
    metrics.on_enqueue("high", 2)
    metrics.on_enqueue("LOW", 3)
    assert value(registry, "batchserve_enqueued_total", priority="high") == 2
    assert value(registry, "batchserve_queue_depth", priority="high") == 2
    assert value(registry, "batchserve_queue_depth", priority="low") == 1
    assert value(registry, "batchserve_queue_depth", priority="normal") == 0


def test_on_queue_depth_sets_the_exact_depth_of_each_priority(
    registry: CollectorRegistry, metrics: Metrics
) -> None:
    for _ in range(5):
        metrics.on_enqueue("normal", 0)
    metrics.on_queue_depth({"high": 0, "normal": 3, "low": 7})
    assert value(registry, "batchserve_queue_depth", priority="high") == 0
    assert value(registry, "batchserve_queue_depth", priority="normal") == 3
    assert value(registry, "batchserve_queue_depth", priority="low") == 7


def test_on_batch_records_size_fill_ratio_execution_time_and_every_wait(
    registry: CollectorRegistry, metrics: Metrics
) -> None:
    metrics.on_batch(3, 4, 0.2, [0.001, 0.02, 0.3])

    assert value(registry, "batchserve_batches_total") == 1
    assert value(registry, "batchserve_items_processed_total") == 3
    assert value(registry, "batchserve_batch_size_sum") == 3
    assert value(registry, "batchserve_batch_size_bucket", le="2.0") == 0
    assert value(registry, "batchserve_batch_size_bucket", le="4.0") == 1
    assert value(registry, "batchserve_batch_fill_ratio_sum") == pytest.approx(0.75)
    assert value(registry, "batchserve_batch_fill_ratio_bucket", le="0.7") == 0
    assert value(registry, "batchserve_batch_fill_ratio_bucket", le="0.8") == 1
    assert value(registry, "batchserve_batch_execution_seconds_count") == 1
    assert value(registry, "batchserve_batch_execution_seconds_sum") == pytest.approx(0.2)
    assert value(registry, "batchserve_queue_wait_seconds_count") == 3
    assert value(registry, "batchserve_queue_wait_seconds_sum") == pytest.approx(0.321)
    assert value(registry, "batchserve_queue_wait_seconds_bucket", le="0.001") == 1
    assert value(registry, "batchserve_queue_wait_seconds_bucket", le="0.025") == 2


def test_batches_reported_between_scrapes_all_reach_the_next_scrape(
    registry: CollectorRegistry, metrics: Metrics
) -> None:
    reported = PENDING_BATCHES + 44  # past the point where they are applied without a scrape
    for _ in range(reported):
        metrics.on_batch(2, 4, 0.01, [0.001, 0.002])

    assert value(registry, "batchserve_batches_total") == reported
    assert value(registry, "batchserve_queue_wait_seconds_count") == 2 * reported
    metrics.on_batch(1, 4, 0.01, [0.5])
    assert value(registry, "batchserve_items_processed_total") == 2 * reported + 1


def test_each_answered_request_applies_one_queued_batch(
    registry: CollectorRegistry, metrics: Metrics
) -> None:
    metrics.on_batch(2, 4, 0.01, [0.001, 0.002])
    metrics.on_batch(3, 4, 0.01, [0.001, 0.002, 0.003])
    metrics.observe_request("/predict", 200, 0.004)
    assert len(metrics._batches_pending) == 1  # the HTTP side, not the engine, did the work
    assert value(registry, "batchserve_items_processed_total") == 5


def test_on_batch_with_no_target_skips_the_fill_ratio(
    registry: CollectorRegistry, metrics: Metrics
) -> None:
    metrics.on_batch(2, 0, 0.01, [0.0, 0.0])
    assert value(registry, "batchserve_batch_fill_ratio_count") == 0
    assert value(registry, "batchserve_batch_size_count") == 1


def test_batch_size_buckets_cover_powers_of_two_up_to_1024(
    registry: CollectorRegistry, metrics: Metrics
) -> None:
    assert BATCH_SIZE_BUCKETS == (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
    metrics.on_batch(1024, 1024, 1.0, [])
    assert value(registry, "batchserve_batch_size_bucket", le="512.0") == 0
    assert value(registry, "batchserve_batch_size_bucket", le="1024.0") == 1


def test_on_rejected_and_reject_count_on_the_same_series(
    registry: CollectorRegistry, metrics: Metrics
) -> None:
    metrics.on_rejected("queue_full")
    metrics.on_rejected("deadline", 4)
    metrics.reject("invalid")
    metrics.reject("queue_full", 2)
    assert value(registry, "batchserve_rejected_total", reason="queue_full") == 3
    assert value(registry, "batchserve_rejected_total", reason="deadline") == 4
    assert value(registry, "batchserve_rejected_total", reason="invalid") == 1
    assert value(registry, "batchserve_rejected_total", reason="cancelled") == 0


def test_failure_hooks_count_model_errors_retries_and_isolations(
    registry: CollectorRegistry, metrics: Metrics
) -> None:
    metrics.on_model_error()
    metrics.on_model_error(5)
    metrics.on_retry()
    metrics.on_isolation()
    metrics.on_isolation()
    assert value(registry, "batchserve_model_errors_total") == 6
    assert value(registry, "batchserve_batch_retries_total") == 1
    assert value(registry, "batchserve_batch_isolations_total") == 2


def test_on_target_size_publishes_the_latest_target(
    registry: CollectorRegistry, metrics: Metrics
) -> None:
    metrics.on_target_size(32)
    metrics.on_target_size(16)
    assert value(registry, "batchserve_target_batch_size") == 16


def test_hooks_work_through_the_engines_notify(
    registry: CollectorRegistry, metrics: Metrics
) -> None:
    notify(metrics, "on_batch", 8, 8, 0.05, [0.01] * 8)
    notify(metrics, "on_rejected", "cancelled", 2)
    assert value(registry, "batchserve_items_processed_total") == 8
    assert value(registry, "batchserve_rejected_total", reason="cancelled") == 2


# -- helpers for the HTTP layer --------------------------------------------------------------


@pytest.mark.parametrize(
    ("status_code", "outcome"),
    [
        (200, "success"),
        (204, "success"),
        (400, "client_error"),
        (404, "client_error"),
        (413, "client_error"),
        (422, "client_error"),
        (429, "rejected"),
        (503, "rejected"),
        (500, "server_error"),
        (504, "server_error"),
    ],
)
def test_outcome_is_derived_from_the_status_code(status_code: int, outcome: str) -> None:
    assert outcome_for(status_code) == outcome
    assert outcome in OUTCOMES


def test_observe_request_counts_by_route_code_outcome_and_times_by_route(
    registry: CollectorRegistry, metrics: Metrics
) -> None:
    metrics.observe_request("/v1/predict", 200, 0.004)
    metrics.observe_request("/v1/predict", 200, 0.006)
    metrics.observe_request("/v1/predict", 503, 0.001)
    route = "/v1/predict"
    requests, duration = "batchserve_requests_total", "batchserve_request_duration_seconds"
    assert value(registry, requests, route=route, code="200", outcome="success") == 2
    assert value(registry, requests, route=route, code="503", outcome="rejected") == 1
    assert value(registry, f"{duration}_count", route=route) == 3
    assert value(registry, f"{duration}_sum", route=route) == pytest.approx(0.011)
    assert value(registry, f"{duration}_bucket", route=route, le="0.005") == 2


def test_track_inflight_counts_while_entered_and_releases_on_error(
    registry: CollectorRegistry, metrics: Metrics
) -> None:
    with metrics.track_inflight(), metrics.track_inflight():
        assert value(registry, "batchserve_inflight_requests") == 2
    with pytest.raises(RuntimeError), metrics.track_inflight():
        raise RuntimeError("handler failed")
    assert value(registry, "batchserve_inflight_requests") == 0


def test_ready_and_paused_are_published_as_one_or_zero(
    registry: CollectorRegistry, metrics: Metrics
) -> None:
    metrics.set_ready(True)
    metrics.set_paused(True)
    assert value(registry, "batchserve_ready") == 1
    assert value(registry, "batchserve_paused") == 1
    metrics.set_ready(False)
    metrics.set_paused(False)
    assert value(registry, "batchserve_ready") == 0
    assert value(registry, "batchserve_paused") == 0


def test_stuck_batches_and_queue_capacity_are_published(
    registry: CollectorRegistry, metrics: Metrics
) -> None:
    metrics.set_stuck_batches(2)
    metrics.set_queue_capacity(10_000)
    assert value(registry, "batchserve_stuck_batches") == 2
    assert value(registry, "batchserve_queue_capacity") == 10_000


def test_set_model_loaded_replaces_the_model_info_and_records_load_time(
    registry: CollectorRegistry, metrics: Metrics
) -> None:
    metrics.set_model_loaded("iris", "sklearn", 1.5)
    metrics.set_model_loaded("resnet", "onnx", 2.5)
    assert value(registry, "batchserve_model_info", model="resnet", platform="onnx") == 1
    assert sample(registry, "batchserve_model_info", model="iris", platform="sklearn") is None
    assert sample(registry, "batchserve_model_info", model="toy", platform="unknown") is None
    assert value(registry, "batchserve_model_load_seconds") == 2.5


# -- exposition and naming -------------------------------------------------------------------


def _exercise(metrics: Metrics) -> None:
    """Touch every series so labelled ones have samples in the exposition."""
    metrics.observe_request("/v1/predict", 200, 0.01)
    with metrics.track_inflight():
        metrics.on_enqueue("normal", 1)
    metrics.on_batch(4, 8, 0.01, [0.001] * 4)
    metrics.set_model_loaded("iris", "sklearn", 0.1)


def test_render_returns_the_text_exposition_and_its_content_type(metrics: Metrics) -> None:
    _exercise(metrics)
    body, content_type = metrics.render()
    assert content_type.startswith("text/plain")
    names = {f.name for f in text_string_to_metric_families(body.decode())}
    assert {"batchserve_requests", "batchserve_queue_wait_seconds", "batchserve_ready"} <= names


def test_series_names_follow_prometheus_conventions(registry: CollectorRegistry) -> None:
    _exercise(Metrics(registry))
    for family in registry.collect():
        assert SNAKE_CASE.match(family.name), family.name
        assert family.type != "summary", f"{family.name}: use a histogram"
        if family.type == "counter":
            assert any(s.name.endswith("_total") for s in family.samples), family.name
        if family.name.startswith(("process_", "python_")):
            continue
        assert family.name.startswith("batchserve_"), family.name
        assert not re.search(r"_(ms|milliseconds|kb|mb|bytes_mb|percent)(_|$)", family.name)
        if family.type == "histogram" and "size" not in family.name:
            assert family.name.endswith(("_seconds", "_ratio")), family.name


def test_render_passes_promtool_check_metrics(metrics: Metrics) -> None:
    promtool = require_tool("promtool", "prometheus")
    _exercise(metrics)
    body, _ = metrics.render()
    result = subprocess.run(
        [promtool, "check", "metrics"], input=body, capture_output=True, timeout=60, check=False
    )
    report = (result.stdout + result.stderr).decode()
    assert result.returncode == 0, report
    assert report.strip() == "", report
