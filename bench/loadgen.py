"""Driving one level of load: ``wrk`` with ``bench/wrk/post.lua`` when installed, otherwise
the asyncio client of `bench.pyload`; both print the same JSON summary, parsed here."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

LUA_SCRIPT = Path(__file__).resolve().parent / "wrk" / "post.lua"
WRK_TIMEOUT_S = 10


@dataclass(frozen=True, slots=True)
class LoadResult:
    """One level's client-side figures. Latencies in milliseconds."""

    requests: int
    duration_s: float
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    non_2xx: int
    socket_errors: int

    @property
    def errors(self) -> int:
        """Non-2xx answers plus socket errors (connect, read, write, timeout)."""
        return self.non_2xx + self.socket_errors


def pick_loadgen(choice: str) -> str:
    """``wrk`` or ``python``: the asked one, or for ``auto`` wrk when it is on PATH."""
    if choice == "auto":
        return "wrk" if shutil.which("wrk") else "python"
    if choice == "wrk" and shutil.which("wrk") is None:
        raise SystemExit("bench: --loadgen wrk asked for, but wrk is not installed")
    return choice


def load_command(
    tool: str, url: str, body_file: Path, connections: int, duration_s: float
) -> list[str]:
    """The load generator's command line."""
    if tool == "wrk":
        seconds = max(1, math.ceil(duration_s))  # wrk takes whole seconds
        return [
            "wrk", "-t1", f"-c{connections}", f"-d{seconds}s", f"--timeout={WRK_TIMEOUT_S}s",
            "-s", str(LUA_SCRIPT), url, "--", str(body_file),
        ]  # fmt: skip
    return [
        sys.executable, "-m", "bench.pyload", "--url", url, "--body-file", str(body_file),
        "--connections", str(connections), "--duration", str(duration_s),
    ]  # fmt: skip


def parse_summary(output: str) -> LoadResult:
    """The result from the load generator's last JSON line; ``ValueError`` if there is none."""
    for line in reversed(output.strip().splitlines()):
        if line.startswith("{"):
            data = json.loads(line)
            break
    else:
        raise ValueError(f"no JSON summary in load generator output: {output[-500:]!r}")
    duration_s = data["duration_us"] / 1e6
    non_2xx = int(data["status_errors"])
    sockets = sum(int(data[k]) for k in ("connect_errors", "read_errors", "write_errors"))
    return LoadResult(
        requests=int(data["requests"]),
        duration_s=duration_s,
        rps=(int(data["requests"]) - non_2xx) / duration_s if duration_s > 0 else 0.0,
        p50_ms=data["p50_us"] / 1e3,
        p90_ms=data["p90_us"] / 1e3,
        p99_ms=data["p99_us"] / 1e3,
        non_2xx=non_2xx,
        socket_errors=sockets + int(data["timeouts"]),
    )


def run_load(
    tool: str,
    url: str,
    body_file: Path,
    connections: int,
    duration_s: float,
    pin: list[str],
    cwd: Path,
) -> LoadResult:
    """Drive ``url`` closed-loop with ``connections`` clients for ``duration_s`` seconds."""
    command = [*pin, *load_command(tool, url, body_file, connections, duration_s)]
    done = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=duration_s + WRK_TIMEOUT_S + 30,
        check=False,
        cwd=cwd,
    )
    if done.returncode != 0:
        raise RuntimeError(f"load generator failed ({done.returncode}): {done.stderr[-500:]}")
    return parse_summary(done.stdout)
