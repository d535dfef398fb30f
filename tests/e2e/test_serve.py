"""The real `batchserve serve` process: defaults, concurrency, and SIGTERM under load."""

from __future__ import annotations

import signal
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import orjson
import pytest
from sklearn.datasets import load_digits

from batchserve.client import Client, PredictError, TransportError
from batchserve.models import load_model
from tests.e2e.support import running_server

pytestmark = pytest.mark.e2e


def test_service_starts_with_no_configuration_and_classifies_a_digit(tmp_path: Path) -> None:
    digits = load_digits()
    with running_server(tmp_path) as server, Client(server.url) as client:
        predictions = client.predict(digits.data[:10].tolist())
    labels = [p["label"] for p in predictions]
    assert np.mean(np.array(labels) == digits.target[:10]) >= 0.9


def test_many_concurrent_clients_each_get_their_own_answer(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    inputs = rng.uniform(0, 16, size=(400, 64)).astype(np.float32)
    expected = load_model(None).predict_batch(inputs)
    assert isinstance(expected, dict)

    with running_server(tmp_path, {"BATCHSERVE_ACCESS_LOG": "false"}) as server:

        def call(i: int) -> int:
            with Client(server.url, wire="msgpack" if i % 2 else "json") as client:
                (prediction,) = client.predict(inputs[i : i + 1])
            return int(prediction["label"])

        with ThreadPoolExecutor(32) as pool:
            labels = list(pool.map(call, range(len(inputs))))
        stats = httpx.get(f"{server.url}/stats").json()["engine"]
    assert labels == expected["label"].tolist()
    assert stats["total_processed"] >= len(inputs)


def _inflight(url: str) -> int:
    for line in httpx.get(f"{url}/metrics").text.splitlines():
        if line.startswith("batchserve_inflight_requests "):
            return int(float(line.split()[1])) - 1  # not counting this scrape
    raise AssertionError("no inflight gauge")


def test_sigterm_with_200_requests_in_flight_answers_every_one(tmp_path: Path) -> None:
    env = {"BATCHSERVE_MODEL": "tests.e2e.models:slow_double", "BATCHSERVE_MAX_BATCH_SIZE": "4"}
    total = 200
    with running_server(tmp_path, env) as server:
        answered = threading.Semaphore(0)
        done = [0]

        def call(i: int) -> str:
            try:
                return attempt(server.url, i)
            finally:
                done[0] += 1
                answered.release()

        with ThreadPoolExecutor(total) as pool:
            futures = [pool.submit(call, i) for i in range(total)]
            assert answered.acquire(timeout=30)
            deadline = time.monotonic() + 30
            while _inflight(server.url) + done[0] < total:  # every request is in the server
                assert time.monotonic() < deadline, "requests never all arrived"
            server.process.send_signal(signal.SIGTERM)
            outcomes = [f.result() for f in futures]
            late = [attempt(server.url, total + i) for i in range(5)]
        exit_code = server.process.wait(40)
    assert exit_code == 0, server.log()
    assert outcomes.count("ok") == total, sorted(set(outcomes))
    assert set(late) <= {"http-503", "refused"}, late
    assert "drained" in server.log()


def test_a_request_whose_body_is_still_arriving_at_sigterm_is_answered(tmp_path: Path) -> None:
    body = orjson.dumps({"instances": [[float(i % 17) for i in range(64)]]})
    with running_server(tmp_path) as server:
        host, port = server.url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=30) as conn:
            conn.sendall(
                b"POST /predict HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
                + f"content-length: {len(body)}\r\n\r\n".encode()
            )
            _wait_until(lambda: _inflight(server.url) == 1, "the head never arrived")
            server.process.send_signal(signal.SIGTERM)
            _wait_until(lambda: "still being received" in server.log(), "the drain never waited")
            conn.sendall(body)
            answer = conn.makefile("rb").read()  # the answer closes the connection
        exit_code = server.process.wait(40)
    status_line, _, rest = answer.partition(b"\r\n")
    assert status_line == b"HTTP/1.1 200 OK", answer[:300]
    assert b"connection: close" in rest.lower()
    (prediction,) = orjson.loads(rest.partition(b"\r\n\r\n")[2])["predictions"]
    assert 0 <= prediction["label"] <= 9
    assert exit_code == 0, server.log()
    assert "drained" in server.log()


def _wait_until(condition: Callable[[], bool], failure: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, failure


def attempt(url: str, i: int) -> str:
    """One request with a distinct input; the outcome as a short word."""
    row = [float(i)] * 4
    try:
        with Client(url, timeout_s=60) as client:
            (prediction,) = client.predict([row])
    except PredictError as exc:
        return f"http-{exc.status}"
    except TransportError as exc:
        return "refused" if isinstance(exc.__cause__, httpx.ConnectError) else f"lost:{exc}"
    return "ok" if prediction == [2.0 * i] * 4 else "wrong"
