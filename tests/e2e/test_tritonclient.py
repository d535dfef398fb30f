"""The official Triton HTTP client against a real batchserve process (uvicorn, V2 routes)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

ROOT = Path(__file__).resolve().parents[2]
MODEL = "multi_io"
STARTUP_TIMEOUT_S = 20.0

pytestmark = pytest.mark.e2e


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_ready(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"server exited with {process.returncode}")
        try:
            if httpx.get(f"{url}/health/ready", timeout=1.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)  # a separate process: polling its readiness is the only signal
    raise AssertionError("server did not become ready")


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    """``host:port`` of a running server serving `tests.server.v2_models:multi_io`."""
    port = _free_port()
    env = {
        **os.environ,
        "BATCHSERVE_MODEL": f"tests.server.v2_models:{MODEL}",
        "BATCHSERVE_ACCESS_LOG": "false",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    command = [
        sys.executable,
        "-m",
        "batchserve",
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL)
    try:
        _wait_ready(f"http://127.0.0.1:{port}", process)
        yield f"127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture
def client(server: str) -> Iterator[triton.InferenceServerClient]:
    client = triton.InferenceServerClient(url=server)
    try:
        yield client
    finally:
        client.close()


ROWS = 3
INPUTS = {
    "f32": np.arange(ROWS * 3, dtype=np.float32).reshape(ROWS, 3) / 4,
    "i64": np.array([[1, 2], [3, 4], [2**40, -7]], dtype=np.int64),
    "f64": np.array([0.5, -1.25, 1e300], dtype=np.float64),
    "u8": np.arange(ROWS * 4, dtype=np.uint8).reshape(ROWS, 4) * 20,
    "flag": np.array([True, False, True]),
}
DATATYPES = {"f32": "FP32", "i64": "INT64", "f64": "FP64", "u8": "UINT8", "flag": "BOOL"}
EXPECTED = {
    "f32_twice": INPUTS["f32"] * 2,
    "i64_sum": INPUTS["i64"].sum(axis=1),
    "f64_neg": -INPUTS["f64"],
    "u8_inv": 255 - INPUTS["u8"],
    "flag_not": ~INPUTS["flag"],
}


def _inputs(binary: bool) -> list[triton.InferInput]:
    tensors = []
    for name, array in INPUTS.items():
        tensor = triton.InferInput(name, list(array.shape), DATATYPES[name])
        tensor.set_data_from_numpy(array, binary_data=binary)
        tensors.append(tensor)
    return tensors


def test_server_and_model_health(client: triton.InferenceServerClient) -> None:
    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.is_model_ready(MODEL)
    assert client.is_model_ready(MODEL, "1")
    assert not client.is_model_ready("other")


def test_server_and_model_metadata(client: triton.InferenceServerClient) -> None:
    server = client.get_server_metadata()
    assert server["name"] == "batchserve"
    assert "binary_tensor_data" in server["extensions"]
    model = client.get_model_metadata(MODEL)
    assert model["name"] == MODEL
    assert model["versions"] == ["1"]
    declared = {t["name"]: (t["datatype"], t["shape"]) for t in model["inputs"]}
    assert declared["f32"] == ("FP32", [-1, 3])
    assert declared["flag"] == ("BOOL", [-1])
    assert [t["name"] for t in model["outputs"]] == list(EXPECTED)


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_every_datatype_round_trips(client: triton.InferenceServerClient, binary: bool) -> None:
    outputs = [triton.InferRequestedOutput(name, binary_data=binary) for name in EXPECTED]
    result = client.infer(MODEL, _inputs(binary), outputs=outputs, request_id="r1")
    assert result.get_response()["id"] == "r1"
    for name, expected in EXPECTED.items():
        got = result.as_numpy(name)
        assert got.dtype == expected.dtype, name
        np.testing.assert_array_equal(got, expected, err_msg=name)


def test_default_outputs_come_back_binary(client: triton.InferenceServerClient) -> None:
    result = client.infer(MODEL, _inputs(binary=True), priority=1, timeout=5_000_000)
    for name, expected in EXPECTED.items():
        np.testing.assert_array_equal(result.as_numpy(name), expected, err_msg=name)
    assert all("binary_data_size" in o["parameters"] for o in result.get_response()["outputs"])


def test_only_requested_outputs_are_returned(client: triton.InferenceServerClient) -> None:
    outputs = [triton.InferRequestedOutput("u8_inv"), triton.InferRequestedOutput("flag_not")]
    result = client.infer(MODEL, _inputs(binary=False), outputs=outputs, model_version="1")
    np.testing.assert_array_equal(result.as_numpy("u8_inv"), EXPECTED["u8_inv"])
    assert result.as_numpy("f32_twice") is None


def test_compressed_requests_are_accepted(client: triton.InferenceServerClient) -> None:
    result = client.infer(MODEL, _inputs(binary=True), request_compression_algorithm="gzip")
    np.testing.assert_array_equal(result.as_numpy("i64_sum"), EXPECTED["i64_sum"])


def test_a_bad_shape_raises_with_status_400(client: triton.InferenceServerClient) -> None:
    inputs = _inputs(binary=True)
    bad = triton.InferInput("f32", [ROWS, 4], "FP32")
    bad.set_data_from_numpy(np.zeros((ROWS, 4), dtype=np.float32))
    inputs[0] = bad
    with pytest.raises(InferenceServerException, match=r"shape \[3, 4\]") as caught:
        client.infer(MODEL, inputs)
    assert caught.value.status() == "400"


def test_an_unknown_model_or_version_raises_with_status_404(
    client: triton.InferenceServerClient,
) -> None:
    with pytest.raises(InferenceServerException, match="unknown model") as caught:
        client.infer("other", _inputs(binary=False))
    assert caught.value.status() == "404"
    with pytest.raises(InferenceServerException) as caught:
        client.get_model_metadata(MODEL, model_version="2")
    assert caught.value.status() == "404"
