"""The real `batchserve serve` process: defaults, concurrency, and SIGTERM under load."""

from __future__ import annotations

import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
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
