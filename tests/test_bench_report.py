"""The benchmark report puts each result next to what the model alone allows."""

from __future__ import annotations

from bench.model_ceiling import pipeline_sizes
from bench.report import Row, pipeline_bounds


def row(contender: str, concurrency: int, rps: float) -> Row:
    return Row("sleep", contender, concurrency, rps, 1.0, 1.0, 1.0, 0, 0, None, 100.0, 50.0)


def test_the_model_is_measured_at_half_of_every_concurrency_level() -> None:
    assert pipeline_sizes([1, 8, 64, 256]) == [1, 4, 8, 32, 64, 128]


def test_the_bound_at_c_is_the_models_rate_at_half_of_c() -> None:
    rows = [row("batchserve", 64, 9_000.0), row("ceiling", 64, 20_000.0), row("ceiling", 1, 1.0)]
    rates = {"1": 400.0, "32": 10_000.0, "64": 18_000.0}

    (line, _) = pipeline_bounds(rows, "sleep", rates)

    assert "c=64: 10,000 = 0.50 x ceiling (batchserve at 0.90 of it)" in line


def test_no_bound_is_shown_without_the_measurements_it_needs() -> None:
    assert pipeline_bounds([row("batchserve", 64, 9_000.0)], "sleep", {"32": 1.0}) == []
    rows = [row("batchserve", 1, 400.0), row("ceiling", 1, 9_000.0)]
    assert pipeline_bounds(rows, "sleep", {"1": 450.0}) == []
