"""A real Prometheus scrapes a real batchserve: the request and batch series arrive, the PromQL
the dashboard and alerts rely on evaluates to numbers, and `deploy/prometheus/alerts.yml` loads.

Needs the `prometheus` server binary (Debian package `prometheus`); skips without it unless
BATCHSERVE_TEST_REQUIRE_TOOLS=1.
"""

from __future__ import annotations

import math
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import yaml

from batchserve.client import Client
from tests.e2e.support import ROOT, free_port, running_server
from tests.e2e.tools import poll_until, require_tool, stop_process

pytestmark = pytest.mark.e2e

ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
REQUESTS_SENT = 50
SCRAPE_DEADLINE_S = 30.0

REQUESTS_OK = 'sum(batchserve_requests_total{job="batchserve",route="/predict",code="200"})'
BATCHES = 'sum(batchserve_batch_size_count{job="batchserve"})'
BATCHED_ITEMS = 'sum(batchserve_batch_size_sum{job="batchserve"})'
P99 = (
    "histogram_quantile(0.99, sum by (le) "
    '(rate(batchserve_request_duration_seconds_bucket{job="batchserve",route="/predict"}[1m])))'
)


@contextmanager
def running_prometheus(binary: str, tmp_path: Path, target: str) -> Iterator[str]:
    """A Prometheus on a free loopback port scraping ``target`` (host:port) every second and
    evaluating the project's alert rules; yields its base URL and stops it on exit."""
    config = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(ALERTS)],
        "scrape_configs": [
            {
                "job_name": "batchserve",
                "metrics_path": "/metrics",
                "static_configs": [{"targets": [target]}],
            }
        ],
    }
    config_path = tmp_path / "prometheus.yml"
    config_path.write_text(yaml.safe_dump(config))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = tmp_path / "prometheus.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                binary,
                f"--config.file={config_path}",
                f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:

        def ready() -> bool | None:
            if process.poll() is not None:
                pytest.fail(f"prometheus exited with {process.returncode}:\n{log_path.read_text()}")
            try:
                return httpx.get(f"{url}/-/ready", timeout=1.0).status_code == 200 or None
            except httpx.TransportError:
                return None

        poll_until(ready, SCRAPE_DEADLINE_S, "Prometheus to be ready")
        yield url
    finally:
        stop_process(process)


def instant(prometheus: str, promql: str) -> float | None:
    """The value of a query returning at most one sample (None when it returns none)."""
    response = httpx.get(f"{prometheus}/api/v1/query", params={"query": promql}, timeout=5.0)
    body = response.json()
    assert response.status_code == 200, body
    assert body["status"] == "success", body
    result: list[dict[str, Any]] = body["data"]["result"]
    assert len(result) <= 1, result
    return float(result[0]["value"][1]) if result else None


def evaluated_alerts(prometheus: str) -> set[str] | None:
    """The names of the alerting rules Prometheus loaded, once each has been evaluated
    (None before that); fails at once on a rule whose evaluation errs."""
    body = httpx.get(f"{prometheus}/api/v1/rules", timeout=5.0).json()
    assert body["status"] == "success", body
    rules = [
        rule
        for group in body["data"]["groups"]
        for rule in group["rules"]
        if rule["type"] == "alerting"
    ]
    broken = {r["name"]: r.get("lastError") for r in rules if r["health"] == "err"}
    assert not broken, broken
    if not rules or any(r["health"] != "ok" for r in rules):
        return None
    return {r["name"] for r in rules}


def declared_alerts() -> set[str]:
    document = yaml.safe_load(ALERTS.read_text())
    return {rule["alert"] for group in document["groups"] for rule in group["rules"]}


def test_prometheus_scrapes_request_and_batch_series_and_loads_the_alert_rules(
    tmp_path: Path,
) -> None:
    binary = require_tool("prometheus", "prometheus")
    rows = np.random.default_rng(7).uniform(0, 16, size=(REQUESTS_SENT, 64)).astype(np.float32)
    env = {"BATCHSERVE_ACCESS_LOG": "false"}
    with running_server(tmp_path, env) as server, Client(server.url) as client:
        # The first request creates the /predict series. Prometheus must scrape it before the
        # rest arrive: rate() sees an increase only between two samples of an existing series.
        (first,) = client.predict(rows[:1])
        assert 0 <= first["label"] <= 9
        target = server.url.removeprefix("http://")
        with running_prometheus(binary, tmp_path, target) as prometheus:
            poll_until(
                lambda: instant(prometheus, REQUESTS_OK) == 1 or None,
                SCRAPE_DEADLINE_S,
                "the first /predict request to be scraped",
            )
            for row in rows[1:]:
                (prediction,) = client.predict(row[None, :])
                assert 0 <= prediction["label"] <= 9

            seen: dict[str, float | None] = {}

            def traffic_scraped() -> bool | None:
                for name, promql in [
                    ("requests", REQUESTS_OK),
                    ("batches", BATCHES),
                    ("batched_items", BATCHED_ITEMS),
                    ("p99", P99),
                ]:
                    seen[name] = instant(prometheus, promql)
                p99 = seen["p99"]
                done = (
                    seen["requests"] == REQUESTS_SENT
                    and (seen["batches"] or 0) >= 1
                    and (seen["batched_items"] or 0) >= REQUESTS_SENT
                    and p99 is not None
                    and math.isfinite(p99)
                )
                return done or None

            poll_until(
                traffic_scraped, SCRAPE_DEADLINE_S, lambda: f"the traffic in Prometheus: {seen}"
            )
            assert seen["requests"] == REQUESTS_SENT, seen
            assert 0 < (seen["p99"] or 0) <= 10.0, seen

            expected = declared_alerts()
            assert expected, "alerts.yml declares no alert"
            # Every rule evaluates without error against the live series.
            loaded = poll_until(
                lambda: evaluated_alerts(prometheus),
                SCRAPE_DEADLINE_S,
                "every alert rule to be evaluated",
            )
            assert loaded == expected
