"""The benchmark report puts each result next to what the model alone allows."""

from __future__ import annotations

from bench.model_ceiling import pipeline_sizes
from bench.report import Row, goals, markdown, pipeline_bounds, reachability


def row(contender: str, concurrency: int, rps: float) -> Row:
    return Row("sleep", contender, concurrency, rps, 1.0, 1.0, 1.0, 0, 0, None, 100.0, 50.0)


def test_the_model_is_measured_at_every_concurrency_level_and_half_of_it() -> None:
    assert pipeline_sizes([1, 8, 64, 256]) == [1, 4, 8, 32, 64, 128, 256]


def test_an_off_core_models_bound_at_c_is_its_rate_at_half_of_c() -> None:
    rows = [row("batchserve", 64, 9_000.0), row("ceiling", 64, 20_000.0), row("ceiling", 1, 1.0)]
    rates = {"1": 400.0, "32": 10_000.0, "64": 18_000.0}

    (line, _) = pipeline_bounds(rows, "sleep", rates, on_core=False)

    assert "c=64: 10,000 = 0.50 x ceiling (batchserve at 0.90 of it)" in line


def test_an_on_core_model_forms_one_batch_and_shares_the_core_with_http() -> None:
    rows = [row("batchserve", 64, 5_000.0), row("ceiling", 64, 20_000.0)]

    rates = {"1": 20_000.0, "32": 1.0, "64": 5.0, "128": 90_000.0}

    (line, _) = pipeline_bounds(rows, "sleep", rates, on_core=True)

    # The best rate at a batch it could form (B=1 here), sharing the core with HTTP.
    assert "c=64: 10,000 = 0.50 x ceiling (batchserve at 0.50 of it)" in line


def test_no_bound_is_shown_without_the_measurements_it_needs() -> None:
    lone = [row("batchserve", 64, 9_000.0)]
    assert pipeline_bounds(lone, "sleep", {"32": 1.0}, on_core=False) == []
    rows = [row("batchserve", 1, 400.0), row("ceiling", 1, 9_000.0)]
    assert pipeline_bounds(rows, "sleep", {"1": 450.0}, on_core=False) == []


def test_a_target_above_the_models_own_bound_is_called_out_of_reach() -> None:
    rows = [row("batchserve", 64, 11_300.0), row("ceiling", 64, 29_500.0)]
    (_, line) = reachability(rows, {"32": 11_700.0}, 0.5)
    assert "at most 11,700 req/s at c=64 (0.40 x ceiling)" in line
    assert "above what any server can reach" in line


def test_a_reachable_target_gets_no_note() -> None:
    rows = [row("batchserve", 64, 11_300.0), row("ceiling", 64, 22_000.0)]
    assert reachability(rows, {"32": 11_700.0}, 0.5) == []
    assert reachability(rows[:1], {"32": 11_700.0}, 0.5) == []


def engine_result(us_at_64: float) -> dict[str, object]:
    cells = [
        {"batch": size, "mean_batch": float(size), "engine_items_per_s": 1e5,
         "direct_items_per_s": 1e7, "overhead_us_wall": us, "overhead_us_cpu": us,
         "overhead_us_cpu_all_in_flight": us}
        for size, us in ((1, 17.0), (64, us_at_64))
    ]  # fmt: skip
    return {"items": 1024, "repeats": 1, "producers": 2, "in_flight": 2048, "rows": cells}


def test_the_engine_micro_benchmark_is_reported_beside_the_load_benchmark() -> None:
    rows = [row("batchserve", 64, 11_300.0), row("ceiling", 64, 29_500.0)]
    text = markdown(rows, {}, {}, {}, engine=engine_result(5.5))
    assert "## Engine micro-benchmark" in text
    assert "| 64 | 64.0 |" in text
    assert "engine overhead at batch 64 < 10 us/item of CPU: 5.50 -> **met**" in text


def test_the_engine_goal_is_missed_above_its_target_and_unmeasured_without_a_run() -> None:
    (engine_goal,) = [g for g in goals([], engine_result(12.0)) if g.text.startswith("engine")]
    assert engine_goal.verdict() == "MISSED"
    (engine_goal,) = [g for g in goals([]) if g.text.startswith("engine")]
    assert engine_goal.verdict() == "not measured"
