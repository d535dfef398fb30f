"""Three replicas behind nginx, configured by `deploy/nginx/batchserve.conf.template`.

Traffic spreads over every replica; when one is killed mid-load, only the requests it was
running while it died fail (a 502, or a response cut off mid-way; not retried, they had been
sent), a request nginx then sends to the dead replica is refused and retried on a survivor, and
every other answer is the right one for its own input.

Needs nginx (Debian package `nginx`); skips without it unless BATCHSERVE_TEST_REQUIRE_TOOLS=1.
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest

from batchserve.client import Client, PredictError
from batchserve.models import load_model
from tests.e2e.support import ROOT, Server, free_port, running_server
from tests.e2e.tools import poll_until, require_tool, stop_process

pytestmark = pytest.mark.e2e
logger = logging.getLogger(__name__)

TEMPLATE = ROOT / "deploy" / "nginx" / "batchserve.conf.template"
REPLICAS = 3
CLIENTS = 12
ROWS_PER_CLIENT = 50
SPREAD_MIN_ITEMS = 30  # per replica, before the kill
SURVIVOR_MIN_ITEMS = 60  # per survivor, after the kill
PHASE_DEADLINE_S = 20.0
CUT_OFF_BY_THE_KILL = {(502, "bad_gateway"), (0, "RemoteProtocolError")}

# The test's own main configuration around the rendered template: every path nginx writes
# (temporary files, logs) lives under the prefix directory given with -p.
MAIN_CONF = """\
worker_processes 2;
events {
    worker_connections 512;
}
http {
    client_body_temp_path client_body_temp;
    proxy_temp_path proxy_temp;
    fastcgi_temp_path fastcgi_temp;
    uwsgi_temp_path uwsgi_temp;
    scgi_temp_path scgi_temp;
    include batchserve.conf;
    access_log access.log batchserve_upstream;
}
"""


def render_template(addresses: Sequence[str], listen: str) -> str:
    """The template with its placeholders filled, as envsubst would fill them.

    ``fail_timeout=1s`` (10 s is the default) makes nginx try the killed replica again within
    the test, so that the refused-and-retried path is exercised.
    """
    servers = "\n    ".join(f"server {a} max_fails=1 fail_timeout=1s;" for a in addresses)
    values = {"BATCHSERVE_UPSTREAM_SERVERS": servers, "BATCHSERVE_LISTEN": listen}
    text = TEMPLATE.read_text()
    for name, value in values.items():
        text = text.replace("${" + name + "}", value)
    leftover = re.findall(r"\$\{\w+\}", text)
    assert not leftover, f"unfilled placeholders: {leftover}"
    return text


@contextmanager
def running_nginx(binary: str, prefix: Path, addresses: Sequence[str]) -> Iterator[str]:
    """nginx in the foreground on a free loopback port, balancing over ``addresses``; yields
    its base URL once a readiness probe passes through it, and stops it on exit."""
    prefix.mkdir()
    port = free_port()
    (prefix / "batchserve.conf").write_text(render_template(addresses, f"127.0.0.1:{port}"))
    conf = prefix / "nginx.conf"
    conf.write_text(MAIN_CONF)
    directives = f"daemon off; pid {prefix / 'nginx.pid'}; error_log {prefix / 'error.log'};"
    if os.geteuid() == 0:
        # As root the workers would switch to `nobody`, who may not enter the test's directory.
        directives += " user root;"
    command = [binary, "-p", str(prefix), "-c", str(conf), "-e", str(prefix / "error.log")]
    command += ["-g", directives]
    checked = subprocess.run([*command, "-t"], capture_output=True, text=True, check=False)
    assert checked.returncode == 0, checked.stderr
    with (prefix / "stdout.log").open("wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:

        def ready() -> bool | None:
            if process.poll() is not None:
                pytest.fail(f"nginx exited: {(prefix / 'error.log').read_text()}")
            try:
                return httpx.get(f"{url}/health/ready", timeout=1.0).status_code == 200 or None
            except httpx.TransportError:
                return None

        poll_until(ready, PHASE_DEADLINE_S, "nginx to answer /health/ready")
        yield url
    finally:
        stop_process(process)


@dataclass(frozen=True)
class Outcome:
    """One request through the balancer."""

    started: float
    ended: float
    status: int  # 200, the error status, or 0 when no complete answer arrived
    code: str = ""
    correct: bool = False


class Load:
    """``CLIENTS`` threads, each sending its own rows one per request until stopped."""

    def __init__(self, url: str) -> None:
        rng = np.random.default_rng(11)
        self.rows = rng.uniform(0, 16, size=(CLIENTS, ROWS_PER_CLIENT, 64)).astype(np.float32)
        expected = load_model(None).predict_batch(self.rows.reshape(-1, 64))
        assert isinstance(expected, dict)
        self.labels = expected["label"].reshape(CLIENTS, ROWS_PER_CLIENT)
        self.probabilities = expected["probabilities"].reshape(CLIENTS, ROWS_PER_CLIENT, -1)
        self.url = url
        self.outcomes: list[list[Outcome]] = [[] for _ in range(CLIENTS)]
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(CLIENTS)
        ]

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(15)
        assert not any(t.is_alive() for t in self._threads), "a client thread hung"

    def all_outcomes(self) -> list[Outcome]:
        return [o for per_client in self.outcomes for o in per_client]

    def _run(self, client: int) -> None:
        with Client(self.url, timeout_s=10) as http:
            sent = 0
            while not self._stop.is_set():
                k = sent % ROWS_PER_CLIENT
                self.outcomes[client].append(self._one(http, client, k))
                sent += 1

    def _one(self, http: Client, client: int, k: int) -> Outcome:
        started = time.monotonic()
        try:
            (prediction,) = http.predict(self.rows[client, k : k + 1])
        except PredictError as exc:
            return Outcome(started, time.monotonic(), exc.status, exc.code)
        except httpx.TransportError as exc:
            return Outcome(started, time.monotonic(), 0, type(exc).__name__)
        correct = prediction["label"] == self.labels[client, k] and np.allclose(
            prediction["probabilities"], self.probabilities[client, k], rtol=1e-4, atol=1e-6
        )
        return Outcome(started, time.monotonic(), 200, correct=bool(correct))


def processed(replica: Server) -> int:
    """Items the replica's engine has run through the model."""
    stats = httpx.get(f"{replica.url}/stats", timeout=2.0).json()
    return int(stats["engine"]["total_processed"])


def grown(replicas: Sequence[Server], since: Sequence[int], by: int) -> list[int] | None:
    """Each replica's processed count, once every one has grown by ``by`` since ``since``."""
    now = [processed(r) for r in replicas]
    return now if all(n - s >= by for n, s in zip(now, since, strict=True)) else None


def retried_after_refusal(access_log: Path, dead: str) -> str | None:
    """An access-log line of a POST /predict first sent to ``dead``, then answered 200 by
    another replica."""
    for line in access_log.read_text().splitlines():
        if '"POST /predict' in line and f"upstream={dead}, " in line and " 200 " in line:
            return line
    return None


def test_killing_a_replica_under_load_fails_only_its_inflight_requests(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    binary = require_tool("nginx", "nginx")
    caplog.set_level(logging.WARNING, logger="httpx")  # a line per request otherwise
    env = {"BATCHSERVE_ACCESS_LOG": "false"}
    with ExitStack() as stack:
        replicas = [stack.enter_context(running_server(tmp_path, env)) for _ in range(REPLICAS)]
        addresses = [r.url.removeprefix("http://") for r in replicas]
        url = stack.enter_context(running_nginx(binary, tmp_path / "nginx", addresses))

        assert httpx.get(f"{url}/health").json()["ready"] is True
        assert httpx.post(f"{url}/admin/pause").status_code == 403

        before = [processed(r) for r in replicas]
        with Load(url) as load:
            poll_until(
                lambda: grown(replicas, before, SPREAD_MIN_ITEMS),
                PHASE_DEADLINE_S,
                lambda: f"every replica to serve {SPREAD_MIN_ITEMS} items (from {before})",
            )
            victim, survivors = replicas[0], replicas[1:]
            at_kill = [processed(r) for r in survivors]
            # SIGKILL is not instant: until the process is gone its sockets stay open, and
            # requests nginx sends it meanwhile are in flight on it as well.
            kill_sent = time.monotonic()
            victim.process.kill()
            victim.process.wait(5)
            died = time.monotonic()
            poll_until(
                lambda: grown(survivors, at_kill, SURVIVOR_MIN_ITEMS),
                PHASE_DEADLINE_S,
                lambda: f"the survivors to serve {SURVIVOR_MIN_ITEMS} more items each",
            )
            retried = poll_until(
                lambda: retried_after_refusal(tmp_path / "nginx" / "access.log", addresses[0]),
                PHASE_DEADLINE_S,
                "a request refused by the killed replica to be retried on a survivor",
            )

    outcomes = load.all_outcomes()
    failed = [o for o in outcomes if o.status != 200]
    failed_per_client = [sum(o.status != 200 for o in per) for per in load.outcomes]
    in_flight_while_dying = sum(o.started < died and o.ended > kill_sent for o in outcomes)
    answered_after = sum(o.started > died and o.status == 200 for o in outcomes)
    logger.info(
        "%d requests; the replica took %.1f ms to die, %d were in flight meanwhile, "
        "%d failed (per client %s), %d answered after; retried: %s",
        len(outcomes),
        (died - kill_sent) * 1e3,
        in_flight_while_dying,
        len(failed),
        failed_per_client,
        answered_after,
        retried,
    )
    assert all(o.correct for o in outcomes if o.status == 200), "a wrong answer"
    # A request whose replica died before answering is a 502 from nginx; one whose replica died
    # mid-answer reaches the client as a cut-off response (nginx had already relayed the 200).
    assert {(o.status, o.code) for o in failed} <= CUT_OFF_BY_THE_KILL, failed
    # Only requests in flight while the replica was dying failed: each client has one request
    # in flight at a time, so each lost at most one, and later ones were retried or rerouted.
    assert all(o.started < died and o.ended > kill_sent for o in failed), (kill_sent, failed)
    assert max(failed_per_client) <= 1, failed_per_client
    assert len(failed) <= CLIENTS
    assert answered_after >= SURVIVOR_MIN_ITEMS
