"""V2 error answers: 400 for every unusable request, 500 isolated per request, 503, 504."""

from __future__ import annotations

import asyncio
import gzip

import numpy as np
import orjson
import pytest

from batchserve.config import Settings
from tests.server.support import serving, until
from tests.server.v2_models import POISON

SCALE = "tests.server.v2_models:scale"
MULTI = "tests.server.v2_models:multi_io"
TOKEN = "t" * 16
AUTH = {"authorization": f"Bearer {TOKEN}"}
HEADER = "inference-header-content-length"


def x(**fields) -> dict:
    return {"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4], **fields}


def doc(*inputs: dict, **fields) -> bytes:
    return orjson.dumps({"inputs": list(inputs), **fields})


def binary(document: dict, *chunks: bytes) -> tuple[bytes, dict[str, str]]:
    header = orjson.dumps(document)
    return header + b"".join(chunks), {HEADER: str(len(header))}


def _no_data(tensor: dict) -> dict:
    return {k: v for k, v in tensor.items() if k != "data"}


X_BIN16 = _no_data(x(parameters={"binary_data_size": 16}))
ONES = np.ones(4, dtype="<f4").tobytes()

SCALE_CASES = [
    ("not json", b"{nope", {}, "not valid JSON"),
    ("not an object", b"[1]", {}, "must be a JSON object"),
    ("no inputs", b"{}", {}, "'inputs' must be a non-empty list"),
    ("input not an object", b'{"inputs": [1]}', {}, "input 0 must be a JSON object"),
    ("input without name", doc(x(name="")), {}, "'name' must be a non-empty string"),
    ("missing input", doc(x(name="z")), {}, "missing input(s) 'x'; unknown input(s) 'z'"),
    ("unknown input", doc(x(), x(name="z")), {}, "unknown input(s) 'z'"),
    ("duplicate input", doc(x(), x()), {}, "given twice"),
    (
        "datatype mismatch",
        doc(x(datatype="FP64")),
        {},
        "datatype FP64 does not match the model's FP32",
    ),
    ("bf16", doc(x(datatype="BF16")), {}, "BF16 is not supported"),
    ("unknown datatype", doc(x(datatype="fp32")), {}, "unknown datatype"),
    (
        "shape mismatch",
        doc(x(shape=[1, 3], data=[1, 2, 3])),
        {},
        "does not match the model's [-1, 4]",
    ),
    ("element count", doc(x(data=[1, 2, 3])), {}, "needs 4 elements, 'data' holds 3"),
    ("nesting", doc(x(shape=[2, 4], data=[[1] * 8])), {}, "nested as [1, 8]"),
    ("ragged", doc(x(shape=[2, 4], data=[[1] * 4, [1]])), {}, "not a rectangular"),
    ("strings", doc(x(data=["a"] * 4)), {}, "must hold numbers"),
    ("booleans", doc(x(data=[True] * 4)), {}, "must hold numbers"),
    ("bad shape", doc(x(shape=[-1, 4])), {}, "'shape' must be a list"),
    ("no data", doc(_no_data(x())), {}, "give 'data' or parameters.binary_data_size"),
    ("scalar data", doc(x(data=5)), {}, "'data' must be a list"),
    ("empty batch", doc(x(shape=[0, 4], data=[])), {}, "the batch is empty"),
    ("unknown output", doc(x(), outputs=[{"name": "z"}]), {}, "unknown output 'z'"),
    ("duplicate output", doc(x(), outputs=[{"name": "y"}] * 2), {}, "requested twice"),
    (
        "binary_data type",
        doc(x(), outputs=[{"name": "y", "parameters": {"binary_data": 1}}]),
        {},
        "binary_data must be a boolean",
    ),
    (
        "classification",
        doc(x(), outputs=[{"name": "y", "parameters": {"classification": 3}}]),
        {},
        "classification is not supported",
    ),
    (
        "binary_data_output",
        doc(x(), parameters={"binary_data_output": "yes"}),
        {},
        "'binary_data_output' must be a boolean",
    ),
    ("id type", doc(x(), id=5), {}, "'id' must be a string"),
    (
        "negative priority",
        doc(x(), parameters={"priority": -1}),
        {},
        "'priority' must be a non-negative integer",
    ),
    (
        "bool priority",
        doc(x(), parameters={"priority": True}),
        {},
        "'priority' must be a non-negative integer",
    ),
    (
        "negative timeout",
        doc(x(), parameters={"timeout": -5}),
        {},
        "'timeout' must be a non-negative integer",
    ),
    ("timeout over limit", doc(x(), parameters={"timeout": 10**12}), {}, "exceeds the limit"),
    ("x-priority", doc(x()), {"x-priority": "urgent"}, "X-Priority must be one of"),
    ("x-timeout", doc(x()), {"x-request-timeout-seconds": "soon"}, "X-Request-Timeout-Seconds"),
    ("sequence", doc(x(), parameters={"sequence_id": 5}), {}, "sequence_id is not supported"),
    (
        "shared memory",
        doc(x(parameters={"shared_memory_region": "r"})),
        {},
        "shared memory is not supported",
    ),
    (
        "non-finite",
        *binary({"inputs": [X_BIN16]}, np.array([1, np.nan, 0, 0], "<f4").tobytes()),
        "NaN or Inf",
    ),
    (
        "size mismatch",
        *binary({"inputs": [_no_data(x(parameters={"binary_data_size": 12}))]}, ONES[:12]),
        "needs 16",
    ),
    (
        "trailing bytes",
        *binary({"inputs": [X_BIN16]}, ONES, b"xx"),
        "2 bytes of binary data belong to no input",
    ),
    ("past the end", *binary({"inputs": [X_BIN16]}, ONES[:8]), "runs past the end"),
    (
        "no header",
        orjson.dumps({"inputs": [X_BIN16]}),
        {},
        "needs the Inference-Header-Content-Length",
    ),
    ("bad header", doc(x()), {HEADER: "ten"}, "Inference-Header-Content-Length must be"),
    ("header too long", doc(x()), {HEADER: "100000"}, "Inference-Header-Content-Length must be"),
    (
        "data and binary",
        *binary({"inputs": [x(parameters={"binary_data_size": 16})]}, ONES),
        "not both",
    ),
    (
        "binary size type",
        *binary({"inputs": [_no_data(x(parameters={"binary_data_size": "16"}))]}, ONES),
        "non-negative integer",
    ),
    ("raw size", b"\x00" * 15, {HEADER: "0"}, "needs 16"),
    ("corrupt gzip", b"not gzip", {"content-encoding": "gzip"}, "not valid gzip data"),
    ("encoding", doc(x()), {"content-encoding": "br"}, "Content-Encoding 'br' is not supported"),
    (
        "gzip bomb",
        gzip.compress(b" " * 100_000),
        {"content-encoding": "gzip"},
        "exceeds max_body_bytes",
    ),
]


@pytest.mark.parametrize(
    ("body", "headers", "message"), [c[1:] for c in SCALE_CASES], ids=[c[0] for c in SCALE_CASES]
)
async def test_unusable_requests_are_400_with_a_clear_message(body, headers, message) -> None:
    async with serving(Settings(model=SCALE, max_body_bytes=65536)) as (_, client):
        response = await client.post("/v2/models/scale/infer", content=body, headers=headers)
    assert response.status_code == 400, response.text
    assert response.headers["content-type"] == "application/json"
    assert message in response.json()["error"]


def m(name: str, datatype: str, shape: list[int], data: list) -> dict:
    return {"name": name, "datatype": datatype, "shape": shape, "data": data}


GOOD = [
    m("f32", "FP32", [1, 3], [1, 2, 3]),
    m("i64", "INT64", [1, 2], [1, 2]),
    m("f64", "FP64", [1], [1]),
    m("u8", "UINT8", [1, 4], [1, 2, 3, 4]),
    m("flag", "BOOL", [1], [True]),
]
MULTI_CASES = [
    ("lossy cast", {"i64": m("i64", "INT64", [1, 2], [1.5, 2])}, "non-integral"),
    ("out of range", {"u8": m("u8", "UINT8", [1, 4], [1, 2, 3, 256])}, "out of range"),
    ("bool as numbers", {"flag": m("flag", "BOOL", [1], [1])}, "must hold true/false"),
    ("batch sizes", {"f64": m("f64", "FP64", [2], [1, 2])}, "disagree on the batch size"),
    ("missing input", {"flag": None}, "missing input(s) 'flag'"),
]


@pytest.mark.parametrize(
    ("changes", "message"), [c[1:] for c in MULTI_CASES], ids=[c[0] for c in MULTI_CASES]
)
async def test_multi_input_requests_are_checked_input_by_input(changes, message) -> None:
    inputs = [changes.get(t["name"], t) for t in GOOD]
    async with serving(Settings(model=MULTI)) as (_, client):
        response = await client.post(
            "/v2/models/multi_io/infer", json={"inputs": [t for t in inputs if t]}
        )
        raw = await client.post(
            "/v2/models/multi_io/infer", content=b"\x00" * 4, headers={HEADER: "0"}
        )
    assert response.status_code == 400
    assert message in response.json()["error"]
    assert raw.status_code == 400
    assert "exactly one input" in raw.json()["error"]


async def test_a_scalar_without_batch_dimension_is_refused() -> None:
    request = {"inputs": [{"name": "v", "shape": [], "datatype": "FP32", "data": [1]}]}
    async with serving(Settings(model="tests.server.v2_models:plus_one")) as (_, client):
        response = await client.post("/v2/models/plus_one/infer", json=request)
        many = await client.post("/v2/models/plus_one/infer", json={"inputs": [x(), x(name="z")]})
    assert response.status_code == 400
    assert "batch dimension" in response.json()["error"]
    assert "takes one input; got 2" in many.json()["error"]


async def test_a_model_failure_is_500_for_the_poisoned_request_only() -> None:
    async with serving(Settings(model=SCALE, admin_token=TOKEN)) as (app, client):
        await client.post("/admin/pause", headers=AUTH)
        bad = asyncio.create_task(
            client.post("/v2/models/scale/infer", content=doc(x(data=[POISON] * 4)))
        )
        good = asyncio.create_task(client.post("/v2/models/scale/infer", content=doc(x())))
        await until(lambda: len(app.state.processor) == 2)
        await client.post("/admin/resume", headers=AUTH)
        bad_response, good_response = await bad, await good
    assert bad_response.status_code == 500
    assert bad_response.json()["code"] == "model_error"
    assert "poison value" in bad_response.json()["error"]
    assert good_response.status_code == 200


async def test_a_full_queue_is_503_with_retry_after() -> None:
    request = doc(x(shape=[1, 4], data=[1] * 4))
    settings = Settings(model=SCALE, max_queue_size=1, admin_token=TOKEN)
    async with serving(settings) as (app, client):
        await client.post("/admin/pause", headers=AUTH)
        first = asyncio.create_task(client.post("/v2/models/scale/infer", content=request))
        await until(lambda: len(app.state.processor) == 1)
        response = await client.post("/v2/models/scale/infer", content=request)
        await client.post("/admin/resume", headers=AUTH)
        assert (await first).status_code == 200
    assert response.status_code == 503
    assert response.json()["code"] == "queue_full"
    assert int(response.headers["retry-after"]) >= 1


@pytest.mark.parametrize(
    ("request_doc", "headers"),
    [
        (doc(x(), parameters={"timeout": 20_000}), {}),
        (doc(x()), {"x-request-timeout-seconds": "0.02"}),
    ],
    ids=["timeout parameter", "timeout header"],
)
async def test_a_passed_deadline_is_504(request_doc, headers) -> None:
    async with serving(Settings(model=SCALE, admin_token=TOKEN)) as (_, client):
        await client.post("/admin/pause", headers=AUTH)
        response = await client.post("/v2/models/scale/infer", content=request_doc, headers=headers)
        await client.post("/admin/resume", headers=AUTH)
    assert response.status_code == 504
    assert response.json()["code"] == "deadline_exceeded"
