"""The contenders as real server processes: how each is started, when it is ready, what it
costs (CPU and RSS sampled with psutil), and what batches it formed (batchserve's /metrics)."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from bench.workloads import BLAS_ENV, Workload

ROOT = Path(__file__).resolve().parent.parent
READY_TIMEOUT_S = 60.0
SAMPLE_PERIOD_S = 0.25

# Batchserve as shipped, but for the address and the model.
DEFAULT_ENV: dict[str, str] = {}
# "Tuned": what an operator who read the docs sets for throughput. Bigger batches; no pause
# between batches; no per-request log line; no gc pass after big batches.
TUNED_ENV = {
    "BATCHSERVE_MAX_BATCH_SIZE": "256",
    "BATCHSERVE_MIN_BATCH_INTERVAL": "0",
    "BATCHSERVE_ACCESS_LOG": "false",
    "BATCHSERVE_LOG_LEVEL": "warning",
    "BATCHSERVE_ENABLE_MEMORY_OPTIMIZATION": "false",
}


@dataclass(frozen=True, slots=True)
class Contender:
    """One server under test."""

    name: str
    description: str
    module: str  # run as ``python -m module``
    args: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    batching: bool = False  # has /metrics with batchserve_batch_size

    def command(self, workload: Workload, port: int) -> list[str]:
        """The command line that starts it on ``port``."""
        if self.batching:
            return [sys.executable, "-m", self.module, *self.args]
        return [sys.executable, "-m", self.module, "--workload", workload.name, "--port", str(port)]

    def environment(self, workload: Workload, port: int) -> dict[str, str]:
        """Its environment: ours, one BLAS thread, ``bench`` importable, its own settings."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("BATCHSERVE_")}
        env.update(BLAS_ENV)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
        if self.batching:
            env.update(BATCHSERVE_HOST="127.0.0.1", BATCHSERVE_PORT=str(port))
            env["BATCHSERVE_MODEL"] = workload.model_ref
        env.update(self.env)
        return env


CONTENDERS: dict[str, Contender] = {
    "batchserve": Contender(
        "batchserve",
        "batchserve serve, default settings",
        "batchserve",
        ("serve",),
        DEFAULT_ENV,
        True,
    ),
    "tuned": Contender(
        "tuned",
        "batchserve serve, "
        + ", ".join(f"{k.removeprefix('BATCHSERVE_').lower()}={v}" for k, v in TUNED_ENV.items()),
        "batchserve",
        ("serve",),
        TUNED_ENV,
        True,
    ),
    "naive": Contender(
        "naive", "FastAPI + pydantic, one model call per request", "bench.contenders.naive"
    ),
    "ceiling": Contender(
        "ceiling", "bare ASGI + orjson on uvicorn, no model", "bench.contenders.ceiling"
    ),
}


def free_port() -> int:
    """A loopback port free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def post(url: str, body: bytes, timeout_s: float = 5.0) -> int:
    """POST a JSON body; the status code (raises ``OSError`` when nobody answers)."""
    request = urllib.request.Request(url, data=body, headers={"content-type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout_s) as response:
        response.read()
        status: int = response.status
        return status


@dataclass
class Server:
    """A running contender."""

    contender: Contender
    process: subprocess.Popen[bytes]
    port: int
    log_path: Path

    @property
    def url(self) -> str:
        """Its ``/predict`` address."""
        return f"http://127.0.0.1:{self.port}/predict"

    def log_tail(self, chars: int = 2000) -> str:
        """The end of its output, for error messages."""
        return self.log_path.read_text(errors="replace")[-chars:]

    def wait_ready(self, body: bytes) -> None:
        """Block until ``/predict`` answers 200; ``RuntimeError`` if it dies or never does."""
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.contender.name} exited:\n{self.log_tail()}")
            try:
                if post(self.url, body) == 200:
                    return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"{self.contender.name} not ready in {READY_TIMEOUT_S}s")

    def batch_totals(self) -> tuple[float, float] | None:
        """batchserve's (sum, count) of formed batch sizes from /metrics; None for others."""
        if not self.contender.batching:
            return None
        url = f"http://127.0.0.1:{self.port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as response:
            text = response.read().decode()
        values = {}
        for key in ("sum", "count"):
            match = re.search(rf"^batchserve_batch_size_{key} (\S+)$", text, re.MULTILINE)
            values[key] = float(match.group(1)) if match else 0.0
        return values["sum"], values["count"]


@contextmanager
def running(
    contender: Contender,
    workload: Workload,
    pin: list[str],
    command: list[str] | None = None,
    cwd: Path = ROOT,
) -> Iterator[Server]:
    """Start ``contender`` serving ``workload`` (pinned by ``pin``), stop it on exit.
    ``command`` and ``cwd`` replace its own command line and working directory."""
    port = free_port()
    with tempfile.NamedTemporaryFile(prefix=f"bench-{contender.name}-", suffix=".log",
                                     delete=False) as log:  # fmt: skip
        log_path = Path(log.name)
        process = subprocess.Popen(
            [*pin, *(command or contender.command(workload, port))],
            env=contender.environment(workload, port),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=cwd,
        )
    server = Server(contender, process, port, log_path)
    try:
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log_path.unlink(missing_ok=True)


class Sampler:
    """CPU% (from cpu time over wall time) and peak RSS of one process over a window, and
    the CPU time of its main thread (the event loop's, for every contender)."""

    def __init__(self, pid: int) -> None:
        self._proc = psutil.Process(pid)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.peak_rss = 0
        self._cpu0 = 0.0
        self._wall0 = 0.0
        self.cpu_percent = 0.0
        self._loop0 = 0.0
        self.loop_cpu_s = 0.0

    def _loop_cpu(self) -> float:
        for thread in self._proc.threads():
            if thread.id == self._proc.pid:
                return float(thread.user_time + thread.system_time)
        return 0.0

    def _cpu(self) -> float:
        times = self._proc.cpu_times()
        return float(times.user + times.system)

    def _run(self) -> None:
        while not self._stop.wait(SAMPLE_PERIOD_S):
            self.peak_rss = max(self.peak_rss, self._proc.memory_info().rss)

    def __enter__(self) -> Sampler:
        self._cpu0, self._wall0 = self._cpu(), time.perf_counter()
        self._loop0 = self._loop_cpu()
        self.peak_rss = self._proc.memory_info().rss
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        wall = time.perf_counter() - self._wall0
        self.cpu_percent = 100.0 * (self._cpu() - self._cpu0) / wall if wall > 0 else 0.0
        self.loop_cpu_s = self._loop_cpu() - self._loop0
