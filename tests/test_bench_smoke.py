"""The load benchmark's smoke run (`python -m bench.run --quick`) works end to end: it starts
every contender as a real server, drives it, runs the engine micro-benchmark, and writes its
table, JSON and plots."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.e2e
@pytest.mark.slow
@pytest.mark.timeout(300)
def test_quick_benchmark_writes_table_json_and_plots(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib", reason="the bench extra draws the plots")
    out = tmp_path / "results"
    done = subprocess.run(
        [sys.executable, "-m", "bench.run", "--quick", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    table = (out / "results.md").read_text()
    assert "| contender |" in table
    assert "## Engine micro-benchmark" in table
    assert "## Execution" in table
    document = json.loads((out / "results.json").read_text())
    assert document["results"]
    assert document["engine_micro_benchmark"]["rows"]
    scenarios = {row["scenario"] for row in document["engine_micro_benchmark"]["execution"]["rows"]}
    assert scenarios == {"two devices, c=128", "variable length, c=64", "fixed batch of 8, c=64"}
    for name in ("throughput.png", "latency.png"):
        assert (out / name).read_bytes().startswith(b"\x89PNG")
