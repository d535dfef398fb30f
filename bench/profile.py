"""Profile one contender under load with py-spy and print where its CPU goes.

``python -m bench.profile --workload mlp --contender batchserve --concurrency 64`` starts the
server on core 0, drives it with the benchmark's load generator on core 1, samples it with
``py-spy record --nonblocking`` (which must be on PATH; ``--gil`` keeps only the samples of
the thread holding the GIL, which hides threads merely waiting for it) and prints the busiest
functions by self and by inclusive share of samples, per file, and per thread. The raw stacks
are kept in ``--out`` (for a flamegraph tool; or run ``py-spy record -o profile.svg`` by hand).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from bench.loadgen import load_command, pick_loadgen
from bench.servers import CONTENDERS, ROOT, running
from bench.workloads import WORKLOADS

Stacks = list[tuple[list[str], int]]


def read_raw(path: Path) -> Stacks:
    """py-spy's raw format: ``frame;frame;... count`` per line, root first."""
    stacks: Stacks = []
    for line in path.read_text().splitlines():
        frames, _, count = line.rpartition(" ")
        if frames and count.isdigit():
            stacks.append((frames.split(";"), int(count)))
    return stacks


def _function(frame: str) -> str:
    return frame.rsplit(":", 1)[0] + ")" if frame.endswith(")") and ":" in frame else frame


def _file(frame: str) -> str:
    inside = frame.rpartition(" (")[2].rstrip(")")
    return inside.rsplit(":", 1)[0] if inside else frame


def summarize(stacks: Stacks, top: int) -> str:
    """Tables of the heaviest functions (self and inclusive), files and threads."""
    total = sum(count for _, count in stacks) or 1
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    files: Counter[str] = Counter()
    threads: Counter[str] = Counter()
    for frames, count in stacks:
        threads[frames[0]] += count
        leaf = frames[-1]
        own[_function(leaf)] += count
        files[_file(leaf)] += count
        for name in {_function(f) for f in frames[1:]}:
            inclusive[name] += count
    lines = [f"{total} samples"]
    for title, counter in (
        ("threads", threads),
        ("self, by file", files),
        ("self, by function", own),
        ("inclusive, by function", inclusive),
    ):
        lines += ["", f"## {title}", ""]
        lines += [f"{100 * n / total:6.1f}%  {name}" for name, n in counter.most_common(top)]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    """Command line: run, sample, summarize."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workload", default="mlp", choices=list(WORKLOADS))
    parser.add_argument("--contender", default="batchserve", choices=list(CONTENDERS))
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=10.0, help="sampling window")
    parser.add_argument("--rate", type=int, default=250, help="samples per second")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--gil", action="store_true", help="only samples holding the GIL")
    parser.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()))
    args = parser.parse_args(argv)
    if shutil.which("py-spy") is None:
        raise SystemExit("bench.profile: py-spy is not on PATH (pip install py-spy)")
    workload = WORKLOADS[args.workload]
    pinned = shutil.which("taskset") is not None
    server_pin = ["taskset", "-c", "0"] if pinned else []
    load_pin = ["taskset", "-c", "1"] if pinned else []
    args.out.mkdir(parents=True, exist_ok=True)
    raw = args.out / f"profile-{args.workload}-{args.contender}-c{args.concurrency}.txt"
    body_file = args.out / f"body-{args.workload}.json"
    body_file.write_bytes(workload.body())
    with running(CONTENDERS[args.contender], workload, server_pin) as server:
        server.wait_ready(workload.body())
        tool = pick_loadgen("auto")
        command = load_command(
            tool, server.url, body_file, args.concurrency, args.seconds + 4
        )  # warm-up 2 s, sample, 2 s spare
        load = subprocess.Popen([*load_pin, *command], stdout=subprocess.PIPE, text=True, cwd=ROOT)
        time.sleep(2)
        spy = [
            "py-spy", "record", "--pid", str(server.process.pid), "--duration",
            str(int(args.seconds)), "--rate", str(args.rate), "--format", "raw", "--output",
            str(raw), "--nonblocking", "--threads", "--function",
        ]  # fmt: skip
        if args.gil:
            spy.append("--gil")
        subprocess.run([*load_pin, *spy], check=True, capture_output=True)
        output, _ = load.communicate()
        totals = server.batch_totals()
    print(summarize(read_raw(raw), args.top))
    print(f"\nload: {output.strip().splitlines()[-1]}")
    if totals is not None and totals[1]:
        print(f"mean batch since start: {totals[0] / totals[1]:.1f}")
    print(f"raw stacks: {raw}", file=sys.stderr)


if __name__ == "__main__":
    main()
