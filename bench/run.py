"""Load benchmark: batchserve against the server a user writes first and the HTTP ceiling.

``python -m bench.run`` (or ``batchserve bench`` from a source checkout) starts each contender
(see `bench.servers`) as a real process on a free loopback port, drives every one with the
same closed-loop load at each concurrency (warm-up first, then a fixed window), and writes a
markdown table, a JSON file and PNG plots into ``--out`` (default
``bench/results/<timestamp>/``); a full run also refreshes ``bench/latest/``.

With two or more cores the servers run on core 0 and the load generator (and this process)
on core 1, so each server gets exactly one core. ``--quick`` is the CI smoke run: the sleep
workload, concurrency 1 and 8, about 20 s.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench import plots, report
from bench.loadgen import pick_loadgen, run_load
from bench.model_ceiling import pipeline_sizes
from bench.report import Row
from bench.servers import CONTENDERS, ROOT, Sampler, Server, running
from bench.workloads import BLAS_ENV, WORKLOADS, Workload

BENCH_DIR = Path(__file__).resolve().parent
LATEST_DIR = BENCH_DIR / "latest"
RESULTS_DIR = BENCH_DIR / "results"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.run",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--workloads", default="sleep,mlp,digits", help="comma-separated")
    parser.add_argument("--contenders", default=",".join(CONTENDERS), help="comma-separated")
    parser.add_argument("--concurrency", default="1,8,64,256", help="closed-loop clients")
    parser.add_argument("--duration", type=float, default=8.0, help="seconds per level")
    parser.add_argument("--warmup", type=float, default=1.0, help="warm-up seconds per level")
    parser.add_argument("--loadgen", choices=("auto", "wrk", "python"), default="auto")
    parser.add_argument("--out", type=Path, default=None, help="results directory")
    parser.add_argument("--no-pin", action="store_true", help="do not pin to cores")
    parser.add_argument("--no-latest", action="store_true", help="leave bench/latest/ alone")
    parser.add_argument("--quick", action="store_true", help="CI smoke run (~20 s)")
    parser.add_argument(
        "--no-engine", action="store_true", help="skip the engine micro-benchmark (~30 s)"
    )
    parser.add_argument(
        "--no-execution", action="store_true", help="skip the execution benchmark (~30 s)"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.workloads, args.concurrency = "sleep", "1,8"
        args.duration, args.warmup, args.no_latest = 1.0, 0.0, True
    for flag, known in (("workloads", WORKLOADS), ("contenders", CONTENDERS)):
        unknown = set(getattr(args, flag).split(",")) - set(known)
        if unknown:
            parser.error(
                f"--{flag}: unknown {', '.join(sorted(unknown))}; known: {', '.join(known)}"
            )
    if not all(c.isdigit() and int(c) > 0 for c in args.concurrency.split(",")):
        parser.error("--concurrency: comma-separated positive integers")
    return args


def pinning(disabled: bool) -> tuple[list[str], list[str]]:
    """taskset prefixes for the server (core 0) and the load generator (core 1)."""
    if disabled or (os.cpu_count() or 1) < 2 or shutil.which("taskset") is None:
        return [], []
    os.sched_setaffinity(0, {1})  # this process samples and orchestrates: off the server core
    return ["taskset", "-c", "0"], ["taskset", "-c", "1"]


def machine_note(tool: str, pinned: bool, args: argparse.Namespace) -> dict[str, Any]:
    """What the numbers depend on."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    blas = "unknown"
    try:
        from threadpoolctl import threadpool_info  # type: ignore[import-untyped, unused-ignore]

        info = [i for i in threadpool_info() if i.get("user_api") == "blas"]
        if info:
            blas = f"{info[0].get('internal_api')} {info[0].get('version')} "
            blas += f"({info[0].get('architecture')}), 1 thread in servers"
    except ImportError:
        pass
    import numpy

    coretype = {
        k: os.environ[k] for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE") if k in os.environ
    }
    return {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{cpu}, {os.cpu_count()} cores, Linux {platform.release()}",
        "python": f"{platform.python_version()}, numpy {numpy.__version__}, BLAS {blas}",
        "openblas_env": coretype or "unset",
        "pinning": "server on core 0, load generator on core 1" if pinned else "none",
        "load generator": f"{tool} (1 thread, closed loop, keep-alive)",
        "levels": f"concurrency {args.concurrency}; {args.warmup:g} s warm-up then "
        f"{args.duration:g} s measured per level",
        "body": "one instance per request (256 float32; digits: 64 values in 0..16)",
        "load average at start": " ".join(f"{x:.2f}" for x in os.getloadavg()),
    }


def measure_model(
    workload: Workload, pin: list[str], seconds: float, levels: Sequence[int]
) -> dict[str, float]:
    """The model's in-process items/s at batch 1, 8, 64 and half of each concurrency level,
    on the server's core."""
    env = {**os.environ, **BLAS_ENV, "PYTHONPATH": str(ROOT)}
    command = [*pin, sys.executable, "-m", "bench.model_ceiling", "--workload", workload.name]
    sizes = ",".join(map(str, pipeline_sizes(levels)))
    done = subprocess.run(
        [*command, "--seconds", str(seconds), "--sizes", sizes], env=env, cwd=ROOT,
        capture_output=True, text=True, check=True, timeout=120,
    )  # fmt: skip
    rates: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return rates


def measure_execution(pin: list[str], quick: bool) -> dict[str, Any]:
    """The execution benchmark (`bench/execution_bench.py`) on the server's core."""
    size = ["--seconds", "0.5"] if quick else []
    done = subprocess.run(
        [*pin, sys.executable, str(BENCH_DIR / "execution_bench.py"), "--json", *size],
        cwd=ROOT, capture_output=True, text=True, check=True, timeout=600,
    )  # fmt: skip
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def measure_engine(pin: list[str], quick: bool) -> dict[str, Any]:
    """The engine micro-benchmark (`bench/engine_bench.py`) on the server's core."""
    size = ["--items", "4096", "--repeats", "1"] if quick else []
    done = subprocess.run(
        [*pin, sys.executable, str(BENCH_DIR / "engine_bench.py"), "--json", *size],
        cwd=ROOT, capture_output=True, text=True, check=True, timeout=600,
    )  # fmt: skip
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def measure_level(
    server: Server, tool: str, body_file: Path, concurrency: int, args: argparse.Namespace,
    load_pin: list[str],
) -> Row:  # fmt: skip
    """Warm up, then one measured window at ``concurrency``."""
    if args.warmup > 0:
        run_load(tool, server.url, body_file, concurrency, args.warmup, load_pin, ROOT)
    before = server.batch_totals()
    with Sampler(server.process.pid) as sampler:
        load = run_load(tool, server.url, body_file, concurrency, args.duration, load_pin, ROOT)
    after = server.batch_totals()
    mean_batch = None
    if before is not None and after is not None and after[1] > before[1]:
        mean_batch = (after[0] - before[0]) / (after[1] - before[1])
    return Row(
        workload=body_file.stem, contender=server.contender.name, concurrency=concurrency,
        rps=load.rps, p50_ms=load.p50_ms, p90_ms=load.p90_ms, p99_ms=load.p99_ms,
        non_2xx=load.non_2xx, socket_errors=load.socket_errors, mean_batch=mean_batch,
        cpu_percent=sampler.cpu_percent, rss_mib=sampler.peak_rss / 2**20,
        loop_us=_per_request(sampler.loop_cpu_s, load.rps * args.duration),
    )  # fmt: skip


def _per_request(cpu_s: float, requests: float) -> float | None:
    """Microseconds of CPU per request, or None when nothing was served."""
    return cpu_s / requests * 1e6 if requests > 0 else None


class Progress:
    """A tqdm bar when tqdm is installed, else one line per step."""

    def __init__(self, total: int) -> None:
        try:
            from tqdm import tqdm
        except ImportError:
            self._bar: Any = None
        else:
            self._bar = tqdm(total=total, unit="level", dynamic_ncols=True)

    def describe(self, text: str) -> None:
        if self._bar is None:
            print(f"bench: {text}", file=sys.stderr)
        else:
            self._bar.set_description(text)

    def step(self, text: str) -> None:
        if self._bar is None:
            print(f"bench:   {text}", file=sys.stderr)
        else:
            self._bar.set_postfix_str(text)
            self._bar.update(1)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def run(args: argparse.Namespace) -> int:
    """The whole benchmark; the exit status (1 when a contender failed)."""
    workloads = [WORKLOADS[w] for w in args.workloads.split(",")]
    contenders = [CONTENDERS[c] for c in args.contenders.split(",")]
    levels = [int(c) for c in args.concurrency.split(",")]
    tool = pick_loadgen(args.loadgen)
    server_pin, load_pin = pinning(args.no_pin)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    out: Path = args.out or RESULTS_DIR / stamp
    out.mkdir(parents=True, exist_ok=True)
    meta = machine_note(tool, bool(server_pin), args)
    rows: list[Row] = []
    ceilings: dict[str, dict[str, float]] = {}
    failures: list[str] = []
    progress = Progress(len(workloads) * len(contenders) * len(levels))
    engine: dict[str, Any] | None = None
    if not args.no_engine:
        progress.describe("engine micro-benchmark")
        try:
            engine = measure_engine(server_pin, args.quick)
        except (OSError, subprocess.SubprocessError, ValueError) as exc:
            failures.append(f"engine micro-benchmark: {exc}")
    if not args.no_execution:
        progress.describe("execution benchmark")
        try:
            engine = {**(engine or {}), "execution": measure_execution(server_pin, args.quick)}
        except (OSError, subprocess.SubprocessError, ValueError) as exc:
            failures.append(f"execution benchmark: {exc}")
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        for workload in workloads:
            progress.describe(f"{workload.name}: model in-process")
            ceilings[workload.name] = measure_model(
                workload, server_pin, 0.1 if args.quick else 0.5, levels
            )
            body_file = Path(tmp) / f"{workload.name}.json"
            body_file.write_bytes(workload.body())
            for contender in contenders:
                progress.describe(f"{workload.name}/{contender.name}")
                try:
                    with running(contender, workload, server_pin) as server:
                        server.wait_ready(workload.body())
                        for level in levels:
                            row = measure_level(server, tool, body_file, level, args, load_pin)
                            rows.append(row)
                            progress.step(f"c={level} {row.rps:,.0f} req/s")
                except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
                    failures.append(f"{workload.name}/{contender.name}: {exc}")
                    progress.step(f"{contender.name} FAILED")
    progress.close()
    meta["load average at end"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    described = {c.name: c.description for c in contenders}
    off_core = {w.name for w in workloads if not w.on_core}
    text = report.markdown(rows, ceilings, meta, described, off_core, engine)
    (out / "results.md").write_text(text)
    report.write_json(out / "results.json", rows, ceilings, meta, described, engine)
    images = plots.plot(rows, out) if rows else []
    if not args.no_latest and not failures:
        LATEST_DIR.mkdir(exist_ok=True)
        for path in [out / "results.md", *images]:
            shutil.copy2(path, LATEST_DIR / path.name)
    print(text)
    print(f"bench: results in {out}")
    for failure in failures:
        print(f"bench: FAILED {failure}", file=sys.stderr)
    return 1 if failures else 0


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of ``python -m bench.run`` and ``batchserve bench``."""
    raise SystemExit(run(parse_args(argv)))


if __name__ == "__main__":
    main()
