"""The official Triton HTTP client's management and statistics calls against a real
batchserve process: model configuration, statistics, the repository index, load and unload."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from tests.e2e.support import running_server

pytestmark = pytest.mark.e2e

MODEL = "scale"
TOKEN = "triton-admin-token-0123456789"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}
SCALE = "tests.server.v2_models:scale"
TRIPLE = "tests.server.v2_models:triple"
ROWS = 3
BOOKED_WITHIN_S = 10.0


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``host:port`` of a `batchserve serve` serving `tests.server.v2_models:scale`."""
    env = {"BATCHSERVE_MODEL": SCALE, "BATCHSERVE_ADMIN_TOKEN": TOKEN}
    with running_server(Path(tmp_path_factory.mktemp("triton")), env) as running:
        yield running.url.removeprefix("http://")


@pytest.fixture
def client(server: str) -> Iterator[triton.InferenceServerClient]:
    client = triton.InferenceServerClient(url=server)
    try:
        yield client
    finally:
        client.close()


def infer(client: triton.InferenceServerClient, value: float = 1.0) -> triton.InferResult:
    """One request of ROWS rows."""
    tensor = triton.InferInput("x", [ROWS, 4], "FP32")
    tensor.set_data_from_numpy(np.full((ROWS, 4), value, dtype=np.float32))
    return client.infer(MODEL, [tensor])


def served_version(client: triton.InferenceServerClient) -> str:
    (version,) = client.get_model_metadata(MODEL)["versions"]
    return str(version)


def statistics(client: triton.InferenceServerClient) -> dict[str, Any]:
    (stat,) = client.get_inference_statistics(MODEL)["model_stats"]
    return dict(stat)


def booked(client: triton.InferenceServerClient, inference_count: int) -> dict[str, Any]:
    """The statistics once the engine has booked `inference_count` rows: it books a model
    call just after answering it (a separate process: polling is the only signal)."""
    end = time.monotonic() + BOOKED_WITHIN_S
    while (stat := statistics(client))["inference_count"] < inference_count:
        if time.monotonic() > end:
            raise AssertionError(f"statistics never got to {inference_count} rows: {stat}")
        time.sleep(0.01)
    return stat


def test_the_model_configuration_describes_the_model(client: triton.InferenceServerClient) -> None:
    config = client.get_model_config(MODEL)
    assert config["name"] == MODEL
    assert config["max_batch_size"] >= 1
    assert config["input"] == [{"name": "x", "data_type": "TYPE_FP32", "dims": [4]}]
    assert [o["name"] for o in config["output"]] == ["y", "batch_size", "call"]
    batching = config["dynamic_batching"]
    assert (batching["priority_levels"], batching["default_priority_level"]) == (3, 2)
    assert batching["default_queue_policy"]["timeout_action"] == "REJECT"
    assert config["instance_group"][0]["kind"] == "KIND_CPU"


def test_statistics_add_up_to_the_requests_sent(client: triton.InferenceServerClient) -> None:
    requests = 10
    before = statistics(client)
    for _ in range(requests):
        infer(client)
    after = booked(client, before["inference_count"] + requests * ROWS)
    assert after["inference_count"] - before["inference_count"] == requests * ROWS
    success = after["inference_stats"]["success"]["count"]
    assert success - before["inference_stats"]["success"]["count"] == requests
    executions = after["execution_count"] - before["execution_count"]
    assert 1 <= executions <= requests * ROWS
    assert after["last_inference"] > 0
    every = client.get_inference_statistics()["model_stats"]
    assert [(s["name"], s["version"]) for s in every] == [(MODEL, served_version(client))]
    calls = sum(int(b["compute_infer"]["count"]) for b in after["batch_stats"])
    assert calls == after["execution_count"]


def test_the_repository_index_lists_the_served_model(
    client: triton.InferenceServerClient,
) -> None:
    (entry,) = client.get_model_repository_index()
    assert entry["name"] == MODEL
    assert entry["version"] == served_version(client)
    assert entry["state"] == "READY"


def test_load_serves_a_new_reference_as_the_next_version_then_unload_and_load(
    client: triton.InferenceServerClient,
) -> None:
    version = int(served_version(client))
    client.load_model(MODEL, config=json.dumps({"model": TRIPLE}), headers=ADMIN)
    assert served_version(client) == str(version + 1)
    assert client.is_model_ready(MODEL, str(version + 1))
    result = infer(client)
    assert result.get_response()["model_version"] == str(version + 1)
    np.testing.assert_array_equal(result.as_numpy("y"), np.full((ROWS, 4), 3.0))
    assert statistics(client)["version"] == str(version + 1)

    client.unload_model(MODEL, headers=ADMIN)
    assert not client.is_model_ready(MODEL)
    assert not client.is_server_ready()
    with pytest.raises(InferenceServerException) as caught:
        infer(client)
    assert caught.value.status() == "503"
    assert "unloaded" in str(caught.value)
    (entry,) = client.get_model_repository_index()
    assert (entry["state"], entry["reason"]) == ("UNAVAILABLE", "unloaded")

    client.load_model(MODEL, headers=ADMIN)  # the current reference again
    assert client.is_server_ready()
    assert client.is_model_ready(MODEL, str(version + 2))
    np.testing.assert_array_equal(infer(client).as_numpy("y"), np.full((ROWS, 4), 3.0))


def test_load_and_unload_without_the_admin_token_are_refused(
    client: triton.InferenceServerClient,
) -> None:
    version = served_version(client)
    with pytest.raises(InferenceServerException) as missing:
        client.load_model(MODEL)
    with pytest.raises(InferenceServerException) as wrong:
        client.unload_model(MODEL, headers={"Authorization": "Bearer not-the-token"})
    assert (missing.value.status(), wrong.value.status()) == ("401", "403")
    assert served_version(client) == version
    assert client.is_model_ready(MODEL)


def test_a_load_that_fails_raises_and_the_model_keeps_serving(
    client: triton.InferenceServerClient,
) -> None:
    version = served_version(client)
    config = json.dumps({"model": "tests.server.v2_models:unloadable"})
    with pytest.raises(InferenceServerException, match="no weights here") as caught:
        client.load_model(MODEL, config=config, headers=ADMIN)
    assert caught.value.status() == "400"
    assert served_version(client) == version
    assert infer(client).get_response()["model_version"] == version
