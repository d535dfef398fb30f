"""Before and after: two versions of batchserve served side by side, measured in pairs.

``python -m bench.compare --before REV [--after REV]`` checks each revision out into a
temporary git worktree (``--after`` defaults to the working tree), starts both servers at
once on the server core with default settings, and alternates short load runs between them
(A B, B A, ...) on the load core. Each pair's ratio (after over before) is taken from two
runs a few seconds apart, so a machine whose speed drifts over minutes moves both sides of
a pair alike; the verdict reads the median ratio's bootstrap 95% interval:

- c >= 64: throughput within ``--rps-tolerance`` (3%) of before;
- c = 1: median latency within ``--p50-tolerance`` (5%) of before.

"within" means the whole interval is inside the tolerance, "outside" that the whole
interval is beyond it, "undecided" that more pairs are needed. Rows print as markdown;
``--json`` writes them too. Both revisions run on this checkout's interpreter and libraries.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from bench.loadgen import LoadResult, pick_loadgen, run_load
from bench.run import pinning
from bench.servers import CONTENDERS, ROOT, Server, running
from bench.workloads import Workload, get_workload

BOOTSTRAP_DRAWS = 2000
# Runs a source tree's service whatever its layout: the package in app/ imported as
# `batchserve` (relative imports inside), or, before the rename, as `app`.
_LAUNCH = """\
import importlib.util, runpy, sys
tree = sys.argv.pop(1)
if sys.argv.pop(1) == "app":
    sys.path.insert(0, tree)
    runpy.run_module("app", run_name="__main__", alter_sys=True)
else:
    spec = importlib.util.spec_from_file_location(
        "batchserve", f"{tree}/app/__init__.py", submodule_search_locations=[f"{tree}/app"])
    module = importlib.util.module_from_spec(spec)
    sys.modules["batchserve"] = module
    spec.loader.exec_module(module)
    runpy.run_module("batchserve", run_name="__main__", alter_sys=True)
"""


def package_name(tree: Path) -> str:
    """The import name a source tree's app/ package is installed under."""
    project = tomllib.loads((tree / "pyproject.toml").read_text())
    package_dir = project.get("tool", {}).get("setuptools", {}).get("package-dir", {})
    return "batchserve" if package_dir.get("batchserve") == "app" else "app"


def server_command(tree: Path) -> list[str]:
    """``batchserve serve`` from `tree`, on this interpreter."""
    return [sys.executable, "-c", _LAUNCH, str(tree), package_name(tree), "serve"]


@contextlib.contextmanager
def checkout(rev: str) -> Iterator[Path]:
    """The source tree of `rev`: the working tree for ".", else a temporary worktree."""
    if rev == ".":
        yield ROOT
        return
    with tempfile.TemporaryDirectory(prefix="bench-compare-") as tmp:
        tree = Path(tmp) / "tree"
        git = ["git", "-C", str(ROOT)]
        subprocess.run([*git, "worktree", "add", "-q", "--detach", str(tree), rev], check=True)
        try:
            yield tree
        finally:
            subprocess.run([*git, "worktree", "remove", "--force", str(tree)], check=False)


@contextlib.contextmanager
def serving(tree: Path, workload: Workload, pin: list[str]) -> Iterator[Server]:
    """`tree`'s service on `workload`'s model, default settings, ready until the block ends."""
    with running(
        CONTENDERS["batchserve"], workload, pin, command=server_command(tree), cwd=tree
    ) as server:
        server.wait_ready(workload.body())
        yield server


@dataclass(frozen=True, slots=True)
class Cell:
    """One workload at one concurrency: the pairs' ratios and the verdict."""

    workload: str
    concurrency: int
    pairs: int
    before_rps: float  # medians
    after_rps: float
    rps_ratio: float  # median of after/before over the pairs
    rps_interval: tuple[float, float]
    before_p50_ms: float
    after_p50_ms: float
    p50_ratio: float
    p50_interval: tuple[float, float]
    goal: str
    verdict: str


def median_interval(values: Sequence[float], seed: int = 0) -> tuple[float, float]:
    """A bootstrap 95% interval of the median of `values`."""
    rng = random.Random(seed)
    medians = sorted(
        statistics.median(rng.choices(values, k=len(values))) for _ in range(BOOTSTRAP_DRAWS)
    )
    return medians[int(0.025 * BOOTSTRAP_DRAWS)], medians[int(0.975 * BOOTSTRAP_DRAWS) - 1]


def verdict(interval: tuple[float, float], bound: float, higher_is_better: bool) -> str:
    """Whether an interval of after/before ratios is within a tolerance `bound` of 1."""
    low, high = interval
    if higher_is_better:
        return "within" if low >= bound else "outside" if high < bound else "undecided"
    return "within" if high <= bound else "outside" if low > bound else "undecided"


def summarise(
    workload: str,
    concurrency: int,
    pairs: Sequence[tuple[LoadResult, LoadResult]],
    rps_tolerance: float,
    p50_tolerance: float,
) -> Cell:
    """The cell of `pairs` (before, after) and its verdict against the goal for its level."""
    rps = [after.rps / before.rps for before, after in pairs]
    p50 = [after.p50_ms / before.p50_ms for before, after in pairs]
    rps_interval, p50_interval = median_interval(rps), median_interval(p50)
    if concurrency == 1:
        goal = f"p50 <= {1 + p50_tolerance:.2f} x before"
        decided = verdict(p50_interval, 1 + p50_tolerance, higher_is_better=False)
    else:
        goal = f"req/s >= {1 - rps_tolerance:.2f} x before"
        decided = verdict(rps_interval, 1 - rps_tolerance, higher_is_better=True)
    return Cell(
        workload,
        concurrency,
        len(pairs),
        statistics.median(b.rps for b, _ in pairs),
        statistics.median(a.rps for _, a in pairs),
        statistics.median(rps),
        rps_interval,
        statistics.median(b.p50_ms for b, _ in pairs),
        statistics.median(a.p50_ms for _, a in pairs),
        statistics.median(p50),
        p50_interval,
        goal,
        decided,
    )


def table(cells: Sequence[Cell], before: str, after: str) -> str:
    """The cells as a markdown table."""
    lines = [
        f"before = {before}, after = {after}; median of paired ratios after/before "
        "[bootstrap 95% interval]",
        "",
        "| workload | c | pairs | req/s before | req/s after | req/s ratio | p50 ratio | goal "
        "| verdict |",
        "|---|--:|--:|--:|--:|---|---|---|---|",
    ]
    for c in cells:
        lines.append(
            f"| {c.workload} | {c.concurrency} | {c.pairs} | {c.before_rps:,.0f} "
            f"| {c.after_rps:,.0f} | {c.rps_ratio:.3f} [{c.rps_interval[0]:.3f}, "
            f"{c.rps_interval[1]:.3f}] | {c.p50_ratio:.3f} [{c.p50_interval[0]:.3f}, "
            f"{c.p50_interval[1]:.3f}] | {c.goal} | {c.verdict} |"
        )
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.compare",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--before", required=True, help="git revision (or . for this tree)")
    parser.add_argument("--after", default=".", help="git revision, or . (default)")
    parser.add_argument("--workloads", default="sleep,mlp")
    parser.add_argument("--concurrency", default="1,64")
    parser.add_argument("--pairs", type=int, default=40, help="paired runs per cell")
    parser.add_argument("--seconds", type=float, default=2.0, help="length of one run")
    parser.add_argument("--rps-tolerance", type=float, default=0.03)
    parser.add_argument("--p50-tolerance", type=float, default=0.05)
    parser.add_argument("--loadgen", choices=("auto", "wrk", "python"), default="auto")
    parser.add_argument("--no-pin", action="store_true", help="do not pin to cores")
    parser.add_argument("--json", type=Path, help="also write the cells here")
    args = parser.parse_args(argv)
    if args.pairs < 1:
        parser.error("--pairs must be at least 1")
    return args


def compare(args: argparse.Namespace) -> list[Cell]:
    """Every cell of the comparison `args` asks for."""
    server_pin, load_pin = pinning(args.no_pin)
    tool = pick_loadgen(args.loadgen)
    levels = [int(c) for c in args.concurrency.split(",")]
    cells: list[Cell] = []
    with checkout(args.before) as before_tree, checkout(args.after) as after_tree:
        for name in args.workloads.split(","):
            workload = get_workload(name)
            with (
                tempfile.NamedTemporaryFile(suffix=".json") as body,
                serving(before_tree, workload, server_pin) as before,
                serving(after_tree, workload, server_pin) as after,
            ):
                body.write(workload.body())
                body.flush()
                for level in levels:
                    run = Runs(tool, Path(body.name), level, load_pin)
                    pairs = run.pairs(before, after, args.pairs, args.seconds)
                    cell = summarise(name, level, pairs, args.rps_tolerance, args.p50_tolerance)
                    print(f"{name} c={level}: {cell.verdict}", file=sys.stderr, flush=True)
                    cells.append(cell)
    return cells


@dataclass(frozen=True, slots=True)
class Runs:
    """Load runs of one level against either server."""

    tool: str
    body_file: Path
    connections: int
    pin: list[str]

    def one(self, server: Server, seconds: float) -> LoadResult:
        """One run; `RuntimeError` if any request failed."""
        result = run_load(
            self.tool, server.url, self.body_file, self.connections, seconds, self.pin, ROOT
        )
        if result.errors:
            raise RuntimeError(f"{server.url} c={self.connections}: {result}")
        return result

    def pairs(
        self, before: Server, after: Server, count: int, seconds: float
    ) -> list[tuple[LoadResult, LoadResult]]:
        """`count` (before, after) pairs, alternating which side runs first."""
        self.one(before, 1.0)  # warm-up, both
        self.one(after, 1.0)
        pairs = []
        for i in range(count):
            if i % 2 == 0:
                b = self.one(before, seconds)
                a = self.one(after, seconds)
            else:
                a = self.one(after, seconds)
                b = self.one(before, seconds)
            pairs.append((b, a))
        return pairs


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    started = time.monotonic()
    cells = compare(args)
    print(table(cells, args.before, args.after))
    print(f"\n({time.monotonic() - started:.0f} s)")
    if args.json is not None:
        args.json.write_text(json.dumps([asdict(c) for c in cells], indent=2) + "\n")


if __name__ == "__main__":
    main()
