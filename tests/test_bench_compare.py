"""`python -m bench.compare`: two revisions served side by side, judged by paired ratios."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.compare import median_interval, package_name, summarise, verdict
from bench.loadgen import LoadResult

ROOT = Path(__file__).resolve().parents[1]


def result(rps: float, p50_ms: float) -> LoadResult:
    return LoadResult(int(rps), 1.0, rps, p50_ms, p50_ms, p50_ms, 0, 0)


def test_an_interval_wholly_inside_the_tolerance_is_within_and_wholly_beyond_is_outside() -> None:
    assert verdict((0.975, 1.02), 0.97, higher_is_better=True) == "within"
    assert verdict((0.90, 0.96), 0.97, higher_is_better=True) == "outside"
    assert verdict((0.95, 0.99), 0.97, higher_is_better=True) == "undecided"
    assert verdict((1.01, 1.04), 1.05, higher_is_better=False) == "within"
    assert verdict((1.06, 1.10), 1.05, higher_is_better=False) == "outside"
    assert verdict((1.03, 1.07), 1.05, higher_is_better=False) == "undecided"


def test_the_interval_brackets_the_median_and_narrows_with_agreeing_pairs() -> None:
    spread = [0.8, 0.9, 1.0, 1.1, 1.2] * 4
    low, high = median_interval(spread)
    assert low <= 1.0 <= high
    assert median_interval([1.0] * 20) == (1.0, 1.0)


def test_throughput_is_judged_under_load_and_latency_with_one_client() -> None:
    slower = [(result(1000, 10.0), result(900, 11.0))] * 8
    loaded = summarise("sleep", 64, slower, 0.03, 0.05)
    assert (loaded.rps_ratio, loaded.verdict) == (0.9, "outside")
    assert loaded.goal.startswith("req/s")
    alone = summarise("sleep", 1, [(result(300, 3.0), result(300, 3.06))] * 8, 0.03, 0.05)
    assert alone.goal.startswith("p50")
    assert alone.verdict == "within"


def test_a_tree_is_launched_under_the_import_name_its_project_installs(tmp_path: Path) -> None:
    renamed = '[tool.setuptools]\npackage-dir = { "batchserve" = "app" }\n'
    (tmp_path / "pyproject.toml").write_text(renamed)
    assert package_name(tmp_path) == "batchserve"
    (tmp_path / "pyproject.toml").write_text('[tool.setuptools]\npackages = ["app"]\n')
    assert package_name(tmp_path) == "app"
    assert package_name(ROOT) == "batchserve"


@pytest.mark.e2e
@pytest.mark.slow
@pytest.mark.timeout(240)
def test_a_revision_and_the_working_tree_are_served_and_compared(tmp_path: Path) -> None:
    out = tmp_path / "cells.json"
    done = subprocess.run(
        [sys.executable, "-m", "bench.compare", "--before", "HEAD", "--workloads", "sleep",
         "--concurrency", "2", "--pairs", "2", "--seconds", "1", "--loadgen", "python",
         "--no-pin", "--json", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=220, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "| sleep | 2 | 2 |" in done.stdout
    (cell,) = json.loads(out.read_text())
    assert cell["pairs"] == 2
    assert cell["before_rps"] > 0
    assert cell["after_rps"] > 0
    assert cell["verdict"] in {"within", "outside", "undecided"}
    listed = subprocess.run(["git", "-C", str(ROOT), "worktree", "list"], capture_output=True,
                            text=True, check=True).stdout  # fmt: skip
    assert "bench-compare-" not in listed  # the revision's worktree is gone again
