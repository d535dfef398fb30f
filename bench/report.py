"""Results of a run: one row per (workload, contender, concurrency), ratios, goals, and the
markdown and JSON files written from them."""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench.execution_bench import table as execution_table

BASELINE = "naive"
CEILING = "ceiling"
BATCHSERVE = "batchserve"
GOAL_SLEEP_C64 = 0.5  # sleep c=64: batchserve req/s over the ceiling's
ENGINE_TARGET_US = 10.0  # the engine's CPU overhead per item at batch 64


@dataclass(frozen=True, slots=True)
class Row:
    """One measured level. Latencies in ms, RSS in MiB, ``mean_batch`` None for servers
    that do not batch."""

    workload: str
    contender: str
    concurrency: int
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    non_2xx: int
    socket_errors: int
    mean_batch: float | None
    cpu_percent: float
    rss_mib: float
    loop_us: float | None = None  # CPU of the server's event-loop thread per request (us)


@dataclass(frozen=True, slots=True)
class Goal:
    """One target of the benchmark and whether this run met it."""

    text: str
    value: float | None
    met: bool | None  # None: not measured in this run

    def verdict(self) -> str:
        """``met``, ``MISSED`` or ``not measured``."""
        return "not measured" if self.met is None else ("met" if self.met else "MISSED")


def find(rows: Sequence[Row], workload: str, contender: str, concurrency: int) -> Row | None:
    """The row of that level, if it was measured."""
    for row in rows:
        if (row.workload, row.contender, row.concurrency) == (workload, contender, concurrency):
            return row
    return None


def ratio(rows: Sequence[Row], row: Row, other: str) -> float | None:
    """``row``'s req/s over ``other``'s at the same workload and concurrency."""
    base = find(rows, row.workload, other, row.concurrency)
    if base is None or base.rps <= 0:
        return None
    return row.rps / base.rps


def _goal(
    rows: Sequence[Row], text: str, level: tuple[str, int], other: str,
    value_of: Callable[[Row, Row], float], test: Callable[[float], bool],
) -> Goal:  # fmt: skip
    mine = find(rows, level[0], BATCHSERVE, level[1])
    theirs = find(rows, level[0], other, level[1])
    if mine is None or theirs is None:
        return Goal(text, None, None)
    value = value_of(mine, theirs)
    return Goal(text, value, test(value))


def goals(rows: Sequence[Row], engine: dict[str, Any] | None = None) -> list[Goal]:
    """The issue's targets, evaluated on this run's rows (and engine micro-benchmark)."""
    return [
        _goal(rows, "sleep c=64: batchserve req/s >= 0.5 x ceiling", ("sleep", 64), CEILING,
              lambda a, b: a.rps / b.rps if b.rps else 0.0, lambda v: v >= GOAL_SLEEP_C64),
        _goal(rows, "mlp c=64: batchserve req/s >= 3 x naive", ("mlp", 64), BASELINE,
              lambda a, b: a.rps / b.rps if b.rps else 0.0, lambda v: v >= 3.0),
        _goal(rows, "sleep c=1: batchserve p50 <= naive p50 (value: ratio of p50s)",
              ("sleep", 1), BASELINE,
              lambda a, b: a.p50_ms / b.p50_ms if b.p50_ms else 0.0, lambda v: v <= 1.0),
        engine_goal(engine),
    ]  # fmt: skip


def engine_goal(engine: dict[str, Any] | None) -> Goal:
    """The engine micro-benchmark's target, evaluated on its result (if it ran)."""
    text = f"engine overhead at batch 64 < {ENGINE_TARGET_US:g} us/item of CPU"
    at_64 = None if engine is None else engine_overhead_at_64(engine)
    if at_64 is None:
        return Goal(text, None, None)
    return Goal(text, at_64, at_64 < ENGINE_TARGET_US)


def engine_overhead_at_64(engine: dict[str, Any]) -> float | None:
    """The micro-benchmark's CPU overhead per item at batch 64 (bounded load)."""
    for row in engine.get("rows", []):
        if row.get("batch") == 64:
            return float(row["overhead_us_cpu"])
    return None


def execution_goals(engine: dict[str, Any] | None) -> list[Goal]:
    """The execution benchmark's goals (instances, padding, fixed batch), if it ran."""
    execution = None if engine is None else engine.get("execution")
    if execution is None:
        return []
    return [
        Goal(
            f"{row['scenario']}: {row['this']} vs {row['against']} {row['goal']}",
            row["ratio"],
            row["met"],
        )
        for row in execution["rows"]
    ]


def engine_table(engine: dict[str, Any]) -> list[str]:
    """The micro-benchmark as a markdown section."""
    out = [
        "## Engine micro-benchmark",
        "",
        f"`bench/engine_bench.py`: {engine['items']} items of 16 float32 through the engine with"
        f" a no-op model, {engine['producers']} producer threads, best of {engine['repeats']},"
        " against calling the model directly on pre-stacked arrays.",
        "",
        "| batch | mean batch | engine items/s | direct items/s | overhead us/item, wall"
        " | overhead us/item, CPU | overhead us/item, CPU, all in flight |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in engine["rows"]:
        out.append(
            f"| {row['batch']} | {row['mean_batch']:.1f} | {row['engine_items_per_s']:,.0f}"
            f" | {row['direct_items_per_s']:,.0f} | {row['overhead_us_wall']:.2f}"
            f" | {row['overhead_us_cpu']:.2f} | {row['overhead_us_cpu_all_in_flight']:.2f} |"
        )
    return out


def pipeline_bounds(
    rows: Sequence[Row], workload: str, rates: dict[str, float], on_core: bool
) -> list[str]:
    """What the model allows at each level, next to batchserve's figure.

    A model that waits on something else (``on_core`` False, an accelerator) runs while the
    next batch gathers, so ``c`` closed-loop clients split into two alternating batches of
    about ``c / 2``: the model's own items/s at ``B = c / 2`` bounds any server that keeps
    it busy (only one batch of all ``c`` with no idle time in between could do better). A
    model computing on the server's core leaves no such overlap: batches of up to ``c``, and
    the core is shared with the HTTP work, at best the ceiling's cost per request, so the
    bound is ``1 / (1 / best model rate at B <= c + 1 / ceiling)``.
    """
    cells = []
    for mine in sorted(
        (r for r in rows if r.workload == workload and r.contender == BATCHSERVE),
        key=lambda r: r.concurrency,
    ):
        if on_core:  # its best rate at any measured batch it could form (rates may dip)
            fits = [r for size, r in rates.items() if int(size) <= mine.concurrency]
            rate = max(fits) if str(mine.concurrency) in rates else None
        else:
            rate = rates.get(str(mine.concurrency // 2))
        http = find(rows, workload, CEILING, mine.concurrency)
        if rate is None or mine.concurrency < 2 or http is None or http.rps <= 0:
            continue
        bound = 1 / (1 / rate + 1 / http.rps) if on_core else rate
        cells.append(
            f"c={mine.concurrency}: {bound:,.0f} = {bound / http.rps:.2f} x ceiling"
            f" (batchserve at {mine.rps / bound:.2f} of it)"
        )
    if not cells:
        return []
    how = "batches of up to c, model and the ceiling's HTTP work on one core" if on_core else (
        "two alternating batches of c/2, the model alone"
    )  # fmt: skip
    return [f"Model bound ({how}; items/s): {'; '.join(cells)}", ""]


def _num(value: float | None, digits: int = 1, suffix: str = "") -> str:
    return "-" if value is None else f"{value:,.{digits}f}{suffix}"


def table(rows: Sequence[Row], workload: str) -> list[str]:
    """The markdown table of one workload."""
    lines = [
        "| contender | conc. | req/s | x naive | x ceiling | p50 ms | p90 ms | p99 ms "
        "| errors | mean batch | server CPU% | loop CPU us/req | RSS MiB |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    mine = sorted((r for r in rows if r.workload == workload), key=lambda r: r.concurrency)
    for row in mine:
        lines.append(
            f"| {row.contender} | {row.concurrency} | {row.rps:,.0f} "
            f"| {_num(ratio(rows, row, BASELINE), 2)} | {_num(ratio(rows, row, CEILING), 2)} "
            f"| {row.p50_ms:.2f} | {row.p90_ms:.2f} | {row.p99_ms:.2f} "
            f"| {row.non_2xx + row.socket_errors} | {_num(row.mean_batch, 1)} "
            f"| {row.cpu_percent:.0f} | {_num(row.loop_us, 0)} | {row.rss_mib:.0f} |"
        )
    return lines


def markdown(
    rows: Sequence[Row],
    model_ceiling: dict[str, dict[str, float]],
    meta: dict[str, Any],
    contenders: dict[str, str],
    off_core: Collection[str] = (),
    engine: dict[str, Any] | None = None,
) -> str:
    """The whole report: machine note, contenders, one table per workload, goals.
    ``off_core`` names the workloads whose model does not compute on the server's core."""
    out = ["# batchserve load benchmark", ""]
    out += [f"- {key}: {value}" for key, value in meta.items()]
    out += ["", "Contenders:", ""]
    out += [f"- `{name}`: {text}" for name, text in contenders.items()]
    for workload in dict.fromkeys(r.workload for r in rows):
        out += ["", f"## {workload}", ""]
        rates = model_ceiling.get(workload, {})
        if rates:
            cells = ", ".join(f"B={size}: {rate:,.0f}" for size, rate in rates.items())
            out += [f"Model called in-process (items/s, one core): {cells}", ""]
        out += pipeline_bounds(rows, workload, rates, on_core=workload not in off_core)
        out += table(rows, workload)
    if engine is not None and "rows" in engine:
        out += ["", *engine_table(engine)]
    if engine is not None and "execution" in engine:
        out += ["", *execution_table(engine["execution"])]
    out += ["", "## Goals", ""]
    for goal in [*goals(rows, engine), *execution_goals(engine)]:
        out.append(f"- {goal.text}: {_num(goal.value, 2)} -> **{goal.verdict()}**")
    out += reachability(rows, model_ceiling.get("sleep", {}), GOAL_SLEEP_C64)
    return "\n".join(out) + "\n"


def reachability(rows: Sequence[Row], rates: dict[str, float], target: float) -> list[str]:
    """Whether the sleep c=64 target is within the model's own bound on this machine.

    At c=64 the sleep model runs two alternating batches of about 32 (see `pipeline_bounds`),
    so no server exceeds the model's in-process rate at B=32. When the ceiling is faster than
    ``rate / target`` the target is out of reach for any server; the report says so.
    """
    http = find(rows, "sleep", CEILING, 64)
    rate = rates.get("32")
    if http is None or rate is None or http.rps <= 0:
        return []
    bound = rate / http.rps
    if bound >= target:
        return []
    return [
        "",
        f"Note: with this machine's ceiling ({http.rps:,.0f} req/s) the sleep model alone allows"
        f" at most {rate:,.0f} req/s at c=64 ({bound:.2f} x ceiling): the {target} x ceiling"
        " target is above what any server can reach here.",
    ]


def write_json(
    path: Path,
    rows: Sequence[Row],
    model_ceiling: dict[str, dict[str, float]],
    meta: dict[str, Any],
    contenders: dict[str, str],
    engine: dict[str, Any] | None = None,
) -> None:
    """Everything measured, machine-readable."""
    document = {
        "meta": meta,
        "contenders": contenders,
        "model_ceiling_items_per_s": model_ceiling,
        "results": [
            {**asdict(r), "x_naive": ratio(rows, r, BASELINE), "x_ceiling": ratio(rows, r, CEILING)}
            for r in rows
        ],
        "engine_micro_benchmark": engine,
        "goals": [
            {**asdict(g), "verdict": g.verdict()}
            for g in [*goals(rows, engine), *execution_goals(engine)]
        ],
    }
    path.write_text(json.dumps(document, indent=2) + "\n")
