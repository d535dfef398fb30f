"""The Prometheus and Grafana artefacts in deploy/ are valid and agree with `batchserve.metrics`.

promtool checks the scrape config and alert rules and runs the rule unit tests; the dashboard
and rules are parsed to prove every PromQL expression names a series `Metrics` exposes.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from batchserve.metrics import Metrics
from tests.e2e.tools import require_tool

ROOT = Path(__file__).resolve().parents[1]
PROMETHEUS = ROOT / "deploy" / "prometheus"
GRAFANA = ROOT / "deploy" / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "batchserve.json"

REQUIRED_ALERTS = {
    "BatchserveTargetDown",
    "BatchserveHighErrorRate",
    "BatchserveQueueSaturated",
    "BatchserveHighLatencyP99",
    "BatchserveNotReady",
    "BatchserveStuckBatch",
}
# Series Prometheus itself attaches to every target.
SYNTHETIC_SERIES = {"up", "scrape_duration_seconds", "scrape_samples_scraped"}
PROMQL_KEYWORDS = {"and", "or", "unless", "bool", "offset", "inf", "nan"}
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_IDENTIFIER = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")


def run_promtool(*args: str) -> None:
    """Run ``promtool <args>`` from the repository root and fail with its output on error."""
    promtool = require_tool("promtool", "prometheus")
    result = subprocess.run(
        [promtool, *args], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def metric_names(expr: str) -> set[str]:
    """Metric names a PromQL expression selects (not functions, labels or keywords)."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    expr = re.sub(r"\{[^}]*\}", " ", expr)
    expr = re.sub(r"\[[^\]]*\]", " ", expr)
    expr = _GROUPING.sub(" ", expr)
    names = set()
    for match in _IDENTIFIER.finditer(expr):
        before = expr[match.start() - 1] if match.start() else " "
        after = expr[match.end() :].lstrip()
        if before.isdigit() or before in ".$" or after.startswith("("):
            continue
        if match.group().lower() not in PROMQL_KEYWORDS:
            names.add(match.group())
    return names


def exposed_names() -> set[str]:
    """Every sample name `Metrics` renders once each labelled series has a sample."""
    metrics = Metrics(CollectorRegistry())
    metrics.observe_request("/v1/predict", 200, 0.01)
    metrics.on_enqueue("normal", 1)
    metrics.on_batch(4, 8, 0.01, [0.001] * 4)
    metrics.set_model_loaded("iris", "sklearn", 0.1)
    text = metrics.render()[0].decode()
    return {s.name for f in text_string_to_metric_families(text) for s in f.samples}


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def alert_rules() -> list[dict[str, Any]]:
    groups = load_yaml(PROMETHEUS / "alerts.yml")["groups"]
    return [rule for group in groups for rule in group["rules"]]


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def panels(board: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in board["panels"]:
        yield panel
        yield from panel.get("panels", [])


def dashboard_exprs() -> list[str]:
    return [t["expr"] for p in panels(dashboard()) for t in p.get("targets", [])]


# -- the name parser itself ------------------------------------------------------------------


def test_metric_names_picks_selectors_out_of_promql() -> None:
    expr = (
        'histogram_quantile(0.99, sum by (le, route) (rate(a_bucket{job="$job", x=~"b|c"}'
        "[$__rate_interval]))) / on (instance) group_left (version) b_info > 1e3 offset 5m"
        ' or up == 0 and label_replace(c_total, "d", "$1", "e", "(.*)")'
    )
    assert metric_names(expr) == {"a_bucket", "b_info", "up", "c_total"}


# -- Prometheus ------------------------------------------------------------------------------


def test_prometheus_config_passes_promtool_check_config() -> None:
    run_promtool("check", "config", "deploy/prometheus/prometheus.yml")


def test_alert_rules_pass_promtool_check_rules() -> None:
    run_promtool("check", "rules", "deploy/prometheus/alerts.yml")


def test_alert_rule_unit_tests_pass() -> None:
    run_promtool("test", "rules", "deploy/prometheus/alerts_test.yml")


def test_prometheus_scrapes_the_batchserve_metrics_endpoint() -> None:
    config = load_yaml(PROMETHEUS / "prometheus.yml")
    (job,) = [j for j in config["scrape_configs"] if j["job_name"] == "batchserve"]
    assert job["metrics_path"] == "/metrics"
    assert ["batchserve:8000"] in [s["targets"] for s in job["static_configs"]]
    assert config["rule_files"] == ["alerts.yml"]


def test_every_required_alert_is_defined() -> None:
    assert {rule["alert"] for rule in alert_rules()} == REQUIRED_ALERTS


def test_every_alert_is_unit_tested_firing_and_some_not_firing() -> None:
    cases = [
        case
        for test in load_yaml(PROMETHEUS / "alerts_test.yml")["tests"]
        for case in test["alert_rule_test"]
    ]
    fired = {case["alertname"] for case in cases if case["exp_alerts"]}
    silent = {case["alertname"] for case in cases if not case["exp_alerts"]}
    assert fired == REQUIRED_ALERTS
    assert silent


def test_alert_rules_reference_only_exposed_metrics() -> None:
    known = exposed_names() | SYNTHETIC_SERIES
    for rule in alert_rules():
        names = metric_names(rule["expr"])
        assert names, rule["alert"]
        assert names <= known, f"{rule['alert']}: unknown {names - known}"


# -- Grafana ---------------------------------------------------------------------------------


def test_dashboard_has_a_prometheus_datasource_variable_used_by_every_panel() -> None:
    board = dashboard()
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for panel in panels(board):
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}", panel["title"]


def test_dashboard_covers_the_required_views() -> None:
    exprs = "\n".join(dashboard_exprs())
    for needle in (
        "sum by (outcome) (rate(batchserve_requests_total",
        "histogram_quantile(0.5, sum by (le) (rate(batchserve_request_duration_seconds_bucket",
        "histogram_quantile(0.95, sum by (le) (rate(batchserve_request_duration_seconds_bucket",
        "histogram_quantile(0.99, sum by (le) (rate(batchserve_request_duration_seconds_bucket",
        "sum by (le) (increase(batchserve_batch_size_bucket",
        "batchserve_batch_size_sum",
        "batchserve_batch_fill_ratio",
        "sum by (priority) (batchserve_queue_depth",
        "histogram_quantile(0.99, sum by (le) (rate(batchserve_queue_wait_seconds_bucket",
        "sum by (reason) (rate(batchserve_rejected_total",
        "batchserve_model_errors_total",
        "batchserve_inflight_requests",
        "batchserve_target_batch_size",
        "batchserve_paused",
        "batchserve_ready",
    ):
        assert needle in exprs, needle


def test_dashboard_queries_reference_only_exposed_metrics() -> None:
    known = exposed_names()
    variable_queries = [
        v["query"]["query"] for v in dashboard()["templating"]["list"] if v["type"] == "query"
    ]
    label_values = [re.sub(r"^label_values\((.*),\s*\w+\)$", r"\1", q) for q in variable_queries]
    for expr in dashboard_exprs() + label_values:
        names = metric_names(expr)
        assert names, expr
        assert names <= known, f"{expr}: unknown {names - known}"


def test_quantiles_aggregate_buckets_by_le_across_replicas() -> None:
    exprs = dashboard_exprs() + [rule["expr"] for rule in alert_rules()]
    quantile_exprs = [e for e in exprs if "histogram_quantile" in e]
    assert quantile_exprs
    for expr in quantile_exprs:
        assert re.search(r"sum by \((?:[\w ,]*\b)?le\b", expr), expr
        assert "_bucket{" in expr, expr


def test_grafana_provisioning_points_at_prometheus_and_the_dashboards_dir() -> None:
    datasources = load_yaml(GRAFANA / "provisioning" / "datasources" / "prometheus.yml")
    (prometheus,) = datasources["datasources"]
    assert prometheus["type"] == "prometheus"
    assert prometheus["url"] == "http://prometheus:9090"
    providers = load_yaml(GRAFANA / "provisioning" / "dashboards" / "dashboards.yml")
    (provider,) = providers["providers"]
    assert provider["type"] == "file"
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards"
