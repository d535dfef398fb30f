"""What the reliability scenarios share.

- `service(...)`: a real `batchserve serve` process serving `tests.reliability.models:recorder`,
  with its call log;
- `send(...)`: one `/predict` request whose outcome (status, latency, whether a 200 carried
  exactly the caller's own answer) is recorded in a `Tally`, one outcome per request;
- the server's own accounting: `/stats` and `/metrics` read back and compared with the tally.

Waiting is always on server state or an event, polled with a bounded deadline.
"""

from __future__ import annotations

import asyncio
import os
import re
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

import httpx
import msgpack
import numpy as np
import orjson
import psutil
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.support import Server, running_server
from tests.reliability.models import NORMAL, expected_answer, make_row

T = TypeVar("T")
Wire = Literal["json", "msgpack", "msgpack-lists"]
PREDICT = "/predict"
ABORTED = "aborted"  # the client gave up on purpose; the server logs it as 499
POLL_INTERVAL_S = 0.02
MODEL_REF = "tests.reliability.models:recorder"
_MEDIA = {"json": "application/json", "msgpack": "application/msgpack"}


# -- waiting on state ------------------------------------------------------------------------


def eventually(check: Callable[[], T | None], limit_s: float = 10.0, what: str = "") -> T:
    """Poll `check` until it returns something truthy, which is returned; fail after
    `limit_s` seconds with the last value seen."""
    end = time.monotonic() + limit_s
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"not reached within {limit_s:g}s: {what or check} ({value!r})")
        time.sleep(POLL_INTERVAL_S)  # the polling interval, not a wait for something to happen


async def eventually_async(
    check: Callable[[], Awaitable[T | None]], limit_s: float = 10.0, what: str = ""
) -> T:
    """`eventually` for coroutines."""
    end = time.monotonic() + limit_s
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"not reached within {limit_s:g}s: {what} ({value!r})")
        await asyncio.sleep(POLL_INTERVAL_S)


# -- the service -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Call:
    """One model call, as the model logged it."""

    started: float  # time.monotonic() when the model was entered
    ids: tuple[int, ...]


class CallLog:
    """The model's record of every call (see `tests.reliability.models`)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def calls(self) -> list[Call]:
        """Every call so far, in order, without the service's warm-up call (id 0)."""
        if not self.path.exists():
            return []
        calls = []
        for line in self.path.read_text().splitlines(keepends=True):
            if not line.endswith("\n"):
                break  # being written right now
            started, *ids = line.split()
            idents = tuple(int(i) for i in ids if i != "0")
            if idents:
                calls.append(Call(float(started), idents))
        return calls

    def ids(self) -> set[int]:
        """Every id the model has seen."""
        return {i for call in self.calls() for i in call.ids}

    def first_seen(self) -> list[int]:
        """Ids in the order the model first saw them."""
        seen: dict[int, None] = {}
        for call in self.calls():
            for ident in call.ids:
                seen.setdefault(ident, None)
        return list(seen)


@dataclass
class Service:
    """A running service and what it wrote."""

    server: Server
    call_log: CallLog

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def process(self) -> psutil.Process:
        return psutil.Process(self.server.process.pid)

    def log(self) -> str:
        return self.server.log()

    def stats(self) -> dict[str, Any]:
        response = httpx.get(f"{self.url}/stats", timeout=5)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    def engine(self) -> dict[str, Any]:
        engine: dict[str, Any] = self.stats()["engine"]
        return engine

    def metrics(self) -> Metrics:
        response = httpx.get(f"{self.url}/metrics", timeout=5)
        assert response.status_code == 200, response.text
        return Metrics(response.text)


@contextmanager
def service(
    tmp_path: Path, env: Mapping[str, str] | None = None, *, delay_s: float = 0.0
) -> Iterator[Service]:
    """Start the service on the recording test model (one call takes `delay_s`)."""
    call_log = tmp_path / "calls.log"
    full_env = {
        "BATCHSERVE_MODEL": MODEL_REF,
        "RELIABILITY_CALL_LOG": str(call_log),
        "RELIABILITY_DELAY_S": repr(delay_s),
        **(env or {}),
    }
    with running_server(tmp_path, full_env) as server:
        yield Service(server, CallLog(call_log))


# -- metrics ---------------------------------------------------------------------------------


class Metrics:
    """One scrape of `/metrics`."""

    def __init__(self, text: str) -> None:
        self.samples: list[tuple[str, dict[str, str], float]] = [
            (s.name, dict(s.labels), s.value)
            for family in text_string_to_metric_families(text)
            for s in family.samples
        ]

    def value(self, name: str, **labels: str) -> float:
        """The sum of the samples of `name` whose labels include `labels`."""
        return sum(
            v
            for n, have, v in self.samples
            if n == name and all(have.get(k) == x for k, x in labels.items())
        )

    def by_label(self, name: str, label: str, **labels: str) -> Counter[str]:
        """Sample values of `name` keyed by `label` (zero values left out)."""
        counts: Counter[str] = Counter()
        for n, have, v in self.samples:
            if n == name and all(have.get(k) == x for k, x in labels.items()) and v:
                counts[have[label]] += int(v)
        return counts

    def predict_codes(self) -> Counter[str]:
        """`batchserve_requests_total{route="/predict"}` by status code."""
        return self.by_label("batchserve_requests_total", "code", route=PREDICT)


# -- clients ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one request got: an HTTP status, or `error` naming why there was none."""

    ids: tuple[int, ...]
    status: int | None
    error: str = ""
    code: str = ""  # the error body's code
    correct: bool | None = None  # for a 200: exactly the answers for `ids`
    latency_s: float = 0.0
    started: float = 0.0  # time.monotonic() before sending
    retry_after: str | None = None

    @property
    def key(self) -> str:
        """The status code as the server's metrics label it (499 for a client that left)."""
        if self.status is not None:
            return str(self.status)
        return "499" if self.error == ABORTED else self.error


@dataclass
class Tally:
    """One outcome per request sent; the checks every scenario ends with."""

    outcomes: list[Outcome] = field(default_factory=list)

    def add(self, outcome: Outcome) -> Outcome:
        self.outcomes.append(outcome)
        return outcome

    def extend(self, outcomes: Iterable[Outcome]) -> None:
        self.outcomes.extend(outcomes)

    def codes(self) -> Counter[str]:
        """Outcomes by status code (as the server labels them)."""
        return Counter(o.key for o in self.outcomes)

    def with_status(self, *statuses: int) -> list[Outcome]:
        return [o for o in self.outcomes if o.status in statuses]

    def ids(self, *statuses: int) -> set[int]:
        """Every id of the requests that got one of `statuses`."""
        return {i for o in self.with_status(*statuses) for i in o.ids}

    def lost(self) -> list[Outcome]:
        """Requests without an HTTP answer that the client did not abandon on purpose."""
        return [o for o in self.outcomes if o.status is None and o.error != ABORTED]

    def wrong(self) -> list[Outcome]:
        """200s that did not carry exactly the caller's own answer."""
        return [o for o in self.outcomes if o.status == 200 and not o.correct]

    def check(self, sent: int) -> None:
        """Every request got exactly one outcome, none was lost, every 200 was right.

        With ``RELIABILITY_REPORT=<file>`` set, one JSON line per check is appended to the
        file (scenario, sent, codes, lost, wrong): the figures of the reliability table.
        """
        self._report(sent)
        assert len(self.outcomes) == sent, (len(self.outcomes), sent)
        every_id = [i for o in self.outcomes for i in o.ids]
        assert len(every_id) == len(set(every_id)), "an id was sent twice or answered twice"
        assert not self.lost(), self.lost()[:5]
        assert not self.wrong(), self.wrong()[:5]

    def _report(self, sent: int) -> None:
        report(
            sent=sent,
            answered=sum(1 for o in self.outcomes if o.status is not None),
            codes=dict(sorted(self.codes().items())),
            lost=len(self.lost()),
            wrong=len(self.wrong()),
        )

    def latencies(self, *statuses: int) -> list[float]:
        return [o.latency_s for o in self.with_status(*statuses)]

    def summary(self) -> str:
        return f"sent={len(self.outcomes)} codes={dict(sorted(self.codes().items()))}"


def report(**entry: Any) -> None:
    """With ``RELIABILITY_REPORT=<file>`` set, append one JSON line for the running scenario:
    the outcome counts of `Tally.check`, or figures that depend on the machine's speed
    (rates, latencies, times), which the suite records but never asserts on."""
    path = os.environ.get("RELIABILITY_REPORT")
    if not path:
        return
    line = {"scenario": os.environ.get("PYTEST_CURRENT_TEST", "").split(" ")[0], **entry}
    with open(path, "ab") as out:
        out.write(orjson.dumps(line, option=orjson.OPT_SERIALIZE_NUMPY) + b"\n")


def encode(rows: list[list[float]], wire: Wire) -> tuple[bytes, str]:
    """A `/predict` body and its content type."""
    if wire == "json":
        return orjson.dumps({"instances": rows}), _MEDIA["json"]
    if wire == "msgpack-lists":
        return msgpack.packb({"instances": rows}), _MEDIA["msgpack"]
    arr = np.asarray(rows, dtype="<f4")
    tensor = {"dtype": "float32", "shape": list(arr.shape), "data": arr.tobytes()}
    return msgpack.packb({"instances": tensor}), _MEDIA["msgpack"]


def is_answer(response: httpx.Response, ids: Sequence[int], kinds: Sequence[float]) -> bool:
    """Whether a 200 holds exactly the answers for `ids`, in order."""
    if "msgpack" in response.headers.get("content-type", ""):
        predictions = msgpack.unpackb(response.content, raw=False)["predictions"]
        if isinstance(predictions, dict):
            data = np.frombuffer(predictions["data"], dtype=predictions["dtype"])
            predictions = data.reshape(predictions["shape"]).tolist()
    else:
        predictions = orjson.loads(response.content)["predictions"]
    expected = [expected_answer(i, k) for i, k in zip(ids, kinds, strict=True)]
    got = np.asarray(predictions, dtype=np.float64)
    return got.shape == (len(ids), len(expected[0])) and bool(np.array_equal(got, expected))


def request_id(ident: int) -> str:
    """The X-Request-ID `send` gives the request whose first id is `ident`."""
    return f"req-{ident}"


_ACCESS_LINE = re.compile(
    r" (?P<method>[A-Z]+) (?P<path>\S+) (?P<status>\d{3}) (?P<ms>[\d.]+)ms id=(?P<rid>\S+)"
)


@dataclass(frozen=True, slots=True)
class Served:
    """One access-log line: how the server answered a request, and how long it took."""

    method: str
    path: str
    status: int
    duration_s: float


def access_log(log: str) -> dict[str, Served]:
    """Every request in the server's access log, by request id."""
    found = {}
    for line in log.splitlines():
        match = _ACCESS_LINE.search(line)
        if match:
            found[match["rid"]] = Served(
                match["method"], match["path"], int(match["status"]), float(match["ms"]) / 1e3
            )
    return found


def served_codes(log: str, path: str = PREDICT) -> Counter[str]:
    """Requests to `path` in the access log, by status code."""
    return Counter(str(s.status) for s in access_log(log).values() if s.path == path)


def request_headers(
    content_type: str, priority: str | None, timeout_s: float | None
) -> dict[str, str]:
    """The headers of a `/predict` request."""
    headers = {"content-type": content_type}
    if priority is not None:
        headers["x-priority"] = priority
    if timeout_s is not None:
        headers["x-request-timeout-seconds"] = f"{timeout_s:g}"
    return headers


async def send(
    client: httpx.AsyncClient,
    ids: int | Sequence[int],
    *,
    kind: float = NORMAL,
    wire: Wire = "json",
    priority: str | None = None,
    timeout_s: float | None = None,
) -> Outcome:
    """POST one `/predict` with the rows of `ids` (all of `kind`) and record what came back."""
    idents = (ids,) if isinstance(ids, int) else tuple(ids)
    kinds = [kind] * len(idents)
    body, content_type = encode([make_row(i, kind) for i in idents], wire)
    headers = request_headers(content_type, priority, timeout_s)
    headers["x-request-id"] = request_id(idents[0])
    started = time.monotonic()
    try:
        response = await client.post(PREDICT, content=body, headers=headers)
    except httpx.HTTPError as exc:
        return Outcome(idents, None, type(exc).__name__, started=started)
    latency = time.monotonic() - started
    return outcome_of(response, idents, kinds, started, latency)


def outcome_of(
    response: httpx.Response,
    ids: tuple[int, ...],
    kinds: Sequence[float],
    started: float,
    latency: float,
) -> Outcome:
    """The `Outcome` of an answered request."""
    status = response.status_code
    if status == 200:
        correct = is_answer(response, ids, kinds)
        return Outcome(ids, 200, correct=correct, latency_s=latency, started=started)
    try:
        code = str(orjson.loads(response.content).get("code", ""))
    except (orjson.JSONDecodeError, AttributeError):
        code = "<not json>"
    return Outcome(
        ids,
        status,
        code=code,
        latency_s=latency,
        started=started,
        retry_after=response.headers.get("retry-after"),
    )


def client(url: str, *, connections: int = 100, timeout_s: float = 30.0) -> httpx.AsyncClient:
    """An async client with room for `connections` concurrent requests."""
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    return httpx.AsyncClient(base_url=url, timeout=timeout_s, limits=limits)


async def run_workers(
    url: str,
    workers: int,
    jobs: Iterable[dict[str, Any]],
    tally: Tally,
    *,
    timeout_s: float = 30.0,
) -> None:
    """`workers` closed-loop clients, each on its own connection, send the `jobs` (keyword
    arguments of `send`) until there are none left."""
    queue = iter(jobs)

    async def worker() -> None:
        async with client(url, connections=1, timeout_s=timeout_s) as http:
            for job in queue:
                tally.add(await send(http, **job))

    await asyncio.gather(*(worker() for _ in range(workers)))


async def inflight(http: httpx.AsyncClient) -> int:
    """Requests the server is handling now (its inflight gauge), not counting this one."""
    for line in (await http.get("/metrics")).text.splitlines():
        if line.startswith("batchserve_inflight_requests "):
            return int(float(line.split()[1])) - 1
    raise AssertionError("no batchserve_inflight_requests gauge")


# -- server-side checks ----------------------------------------------------------------------


def check_server_counts(
    svc: Service, tally: Tally, limit_s: float = 10.0, also: Counter[str] | None = None
) -> Metrics:
    """`batchserve_requests_total{route="/predict"}` matches the clients' tally per status
    code, plus the statuses in `also` (the server counts a request just after its answer is
    sent, hence the polling)."""
    expected = tally.codes() + (also or Counter())
    last: list[Counter[str]] = [Counter()]

    def matches() -> Metrics | None:
        metrics = svc.metrics()
        last[0] = metrics.predict_codes()
        return metrics if last[0] == expected else None

    try:
        return eventually(matches, limit_s, "server request counts")
    except AssertionError:
        raise AssertionError(
            f"server counted {dict(last[0])}, clients saw {dict(expected)}"
        ) from None


def check_engine_totals(svc: Service, metrics: Metrics) -> dict[str, Any]:
    """The engine's own counts agree with its call log and its Prometheus series: every item
    the model settled is counted once, as processed or as failed."""
    engine = svc.engine()
    settled = len(svc.call_log.ids()) + 1  # the warm-up row
    assert engine["total_processed"] + engine["error_count"] == settled, (engine, settled)
    assert metrics.value("batchserve_items_processed_total") == settled
    assert metrics.value("batchserve_model_errors_total") == engine["error_count"]
    for reason, count in engine["rejected"].items():
        if reason != "too_large":  # which the HTTP layer counts too, for oversized bodies
            assert metrics.value("batchserve_rejected_total", reason=reason) == count, reason
    return engine


@dataclass(frozen=True, slots=True)
class Sample:
    """Resource use of the server process at one moment."""

    at: float  # time.monotonic()
    rss: int  # bytes
    threads: int
    fds: int


class ResourceSampler:
    """Samples the server process's RSS, threads and open file descriptors every
    `interval_s` on a background thread, while used as a context manager."""

    def __init__(self, process: psutil.Process, interval_s: float = 0.1) -> None:
        self.process = process
        self.interval_s = interval_s
        self.samples: list[Sample] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="resource-sampler", daemon=True)

    def sample(self) -> Sample:
        with self.process.oneshot():
            taken = Sample(
                time.monotonic(),
                self.process.memory_info().rss,
                self.process.num_threads(),
                self.process.num_fds(),
            )
        self.samples.append(taken)
        return taken

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.sample()

    def __enter__(self) -> ResourceSampler:
        self.sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()

    def peak_rss_growth_mb(self) -> float:
        """Largest RSS seen minus the first reading, in MiB."""
        return (max(s.rss for s in self.samples) - self.samples[0].rss) / 2**20


_NOISE = re.compile(r"\b(ERROR|CRITICAL)\b|Traceback|Exception")


def quiet_log(log: str) -> list[str]:
    """The log lines at ERROR or worse, and tracebacks: a healthy run has none."""
    return [line for line in log.splitlines() if _NOISE.search(line)]


def percentile(values: Sequence[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else 0.0
