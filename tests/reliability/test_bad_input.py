"""Bad input against the real service: property-based and fuzz tests of every decoder and
route. However malformed, a request gets a 4xx with the service's error body, never a 500;
the process never falls over; and good requests running alongside get their answers."""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import os
import re
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import msgpack
import numpy as np
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from tests.e2e.support import ROOT
from tests.reliability.models import WIDTH
from tests.reliability.support import (
    PREDICT,
    Service,
    Tally,
    Wire,
    check_server_counts,
    client,
    quiet_log,
    send,
    service,
)

pytestmark = pytest.mark.e2e

TOKEN = "bad-input-scenario-token"
MAX_BODY = 256 * 1024
MAX_QUEUE = 20_000  # room for the largest request the body limit lets through
MODEL = "recorder"
ENV = {
    "BATCHSERVE_MAX_BODY_BYTES": str(MAX_BODY),
    "BATCHSERVE_ADMIN_TOKEN": TOKEN,
    "BATCHSERVE_ACCESS_LOG": "false",
    "BATCHSERVE_MAX_BATCH_SIZE": "64",
    "BATCHSERVE_MAX_QUEUE_SIZE": str(MAX_QUEUE),
    "RELIABILITY_FAULTS": "0",  # any value is a plain input here, never a fault trigger
}
REFUSALS = {400, 401, 403, 404, 405, 413, 415, 422}
FUZZ = settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
FLOAT32_MAX = float(np.finfo(np.float32).max)


@dataclass
class Fuzzing:
    """The service under fuzzing, the statuses it gave to `/predict`, and the good traffic
    that runs alongside."""

    svc: Service
    http: httpx.Client
    predict_codes: Counter[str] = field(default_factory=Counter)
    good: Tally = field(default_factory=Tally)
    stop: threading.Event = field(default_factory=threading.Event)
    traffic: threading.Thread | None = None

    def __repr__(self) -> str:
        return f"Fuzzing({self.svc.url})"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(repr(self))  # Hypothesis prints a dataclass field by field otherwise

    def start_traffic(self) -> None:
        self.traffic = threading.Thread(target=asyncio.run, args=(_good_traffic(self),))
        self.traffic.start()

    def stop_traffic(self) -> None:
        """Stop the good traffic and wait for its last answers."""
        self.stop.set()
        if self.traffic is not None:
            self.traffic.join(30)
            assert not self.traffic.is_alive()

    def post(self, path: str, content: bytes, headers: dict[str, str]) -> httpx.Response:
        """POST and check the answer is no server error and, if a refusal, a proper one."""
        # Any byte, not only ASCII; HTTP itself has no leading or trailing blanks in a value.
        raw = {k: v.strip(" \t").encode("latin-1") for k, v in headers.items()}
        response = self.http.post(path, content=content, headers=raw)
        status = response.status_code
        assert status < 500, (status, response.text[:300])
        if refused_by_the_http_parser(response):
            # A byte HTTP forbids: no request reached the application.
            assert status == 400, (status, response.text[:300])
            assert any(b"\x7f" in value for value in raw.values()), (raw, response.text)
            return response
        if path == PREDICT:
            self.predict_codes[str(status)] += 1
        if status != 200:
            assert status in REFUSALS, status
            body = orjson.loads(response.content)
            assert set(body) == {"error", "code"}, body
        return response


def refused_by_the_http_parser(response: httpx.Response) -> bool:
    """The connection's own refusal of bytes that are not HTTP (the body says so)."""
    return response.status_code == 400 and response.text.startswith(
        '{"error":"invalid HTTP request'
    )


async def _good_traffic(fuzzing: Fuzzing) -> None:
    """Valid requests, one after another on two connections, until told to stop."""
    ids = itertools.count(1)

    async def worker(wire: Wire) -> None:
        async with client(fuzzing.svc.url, connections=1) as http:
            while not fuzzing.stop.is_set():
                fuzzing.good.add(await send(http, next(ids), wire=wire))

    await asyncio.gather(worker("json"), worker("msgpack"))


@pytest.fixture(scope="module")
def fuzzing(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fuzzing]:
    with (
        service(tmp_path_factory.mktemp("bad-input"), ENV) as svc,
        httpx.Client(base_url=svc.url, timeout=30) as http,
    ):
        state = Fuzzing(svc, http)
        state.start_traffic()
        try:
            yield state
        finally:
            state.stop_traffic()


# -- strategies -------------------------------------------------------------------------------

JSON_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)  # what msgpack can carry
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8)
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: st.lists(inner, max_size=6) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=40,
)
CELLS = (
    st.floats(width=32, allow_nan=False, allow_infinity=False)
    | st.integers(min_value=-(2**40), max_value=2**40)
    | st.sampled_from([math.nan, math.inf, -math.inf, 1e39, -1e300, True, None, "1.0", 2**63])
)
ANY_ROWS = st.lists(st.lists(CELLS, min_size=WIDTH - 1, max_size=WIDTH + 1), min_size=1, max_size=5)
FLOAT_ROWS = st.lists(
    st.lists(st.floats(width=32, allow_nan=False), min_size=WIDTH, max_size=WIDTH),
    min_size=1,
    max_size=5,
)
ROWS = ANY_ROWS | FLOAT_ROWS
DTYPE_NAMES = [
    "float32",
    "<f4",
    ">f4",
    "float64",
    "float16",
    "int8",
    "uint8",
    "int64",
    "bool",
    "complex64",
    "object",
    "U8",
    "V4",
    "f",
    "i16",
]
DTYPES = st.sampled_from([*DTYPE_NAMES, "", "float32\x00"])
SHAPES = st.lists(
    st.integers(min_value=-2, max_value=5) | st.sampled_from([2**31 - 1, 2**31, 2**63]),
    max_size=4,
)
BINARY_TENSORS = st.fixed_dictionaries(
    {
        "dtype": DTYPES | st.binary(max_size=8),
        "shape": SHAPES | JSON_SCALARS,
        "data": st.binary(max_size=64) | JSON_SCALARS,
    }
)
MSGPACK_NUMPY_TENSORS = st.fixed_dictionaries(
    {
        "nd": st.booleans() | st.integers(-(2**63), 2**64 - 1),
        "type": DTYPES,
        "kind": st.sampled_from([b"", b"O", b"V"]),
        "shape": SHAPES,
        "data": st.binary(max_size=64),
    }
)
TENSORS = BINARY_TENSORS | MSGPACK_NUMPY_TENSORS
MSGPACK_VALUES = st.recursive(
    JSON_SCALARS | st.binary(max_size=16) | TENSORS,
    lambda inner: (
        st.lists(inner, max_size=5)
        | st.dictionaries(st.text(max_size=8) | st.binary(max_size=8), inner, max_size=5)
    ),
    max_leaves=30,
)
MEDIA_TYPES = [
    "application/json",
    "application/msgpack",
    "application/x-msgpack",
    "APPLICATION/JSON",
    "application/json; charset=utf-8",
    "text/plain",
    "application/xml",
    "multipart/form-data",
    "application/octet-stream",
    "",
    ";",
    "application/json;;;",
    "*/*",
]
CONTENT_TYPES = st.sampled_from(MEDIA_TYPES) | st.text(
    st.characters(min_codepoint=32, max_codepoint=126), max_size=30
)
HEADER_TEXT = st.text(st.characters(min_codepoint=32, max_codepoint=255), max_size=40)


def _documents(instances: Any) -> Any:
    return st.sampled_from([{"instances": instances}, instances, {"inputs": instances}])


def _valid_body() -> bytes:
    return orjson.dumps({"instances": [[1.0, -0.25, 0.0, 3.0]]})


def _is_right(response: httpx.Response, rows: Any) -> bool:
    if "msgpack" in response.headers["content-type"]:
        predictions = msgpack.unpackb(response.content)["predictions"]
        if isinstance(predictions, dict):
            predictions = np.frombuffer(predictions["data"], predictions["dtype"]).reshape(
                predictions["shape"]
            )
    else:
        predictions = orjson.loads(response.content)["predictions"]
    with np.errstate(over="ignore"):  # the model's doubling overflows near float32's max
        expected = np.asarray(rows, dtype=np.float32) * 2
    got = np.array(predictions, dtype=np.float32)  # JSON writes an overflow as null: NaN
    finite = np.isfinite(expected)
    return (
        got.shape == expected.shape
        and bool(np.array_equal(got[finite], expected[finite]))
        and not np.any(np.isfinite(got[~finite]))
    )


def _finite_float32(rows: list[list[Any]]) -> bool:
    return all(
        len(row) == WIDTH
        and all(type(v) in (int, float) and math.isfinite(v) and abs(v) <= FLOAT32_MAX for v in row)
        for row in rows
    )


# -- /predict -------------------------------------------------------------------------------


@FUZZ
@given(doc=JSON_VALUES.flatmap(_documents), big=st.integers(2**64, 2**200))
def test_any_json_document_is_refused_cleanly_or_answered_right(
    fuzzing: Fuzzing, doc: Any, big: int
) -> None:
    body = json.dumps(doc).encode()
    if b"0" in body:  # now and then an integer beyond 64 bits, which JSON allows
        body = body.replace(b"0", str(big).encode(), 1)
    response = fuzzing.post(PREDICT, body, {"content-type": "application/json"})
    if response.status_code == 200:
        assert _is_right(response, json.loads(body)["instances"])


@FUZZ
@given(rows=ROWS, wire=st.sampled_from(["json", "json-nan", "msgpack"]))
def test_rows_of_wrong_width_type_or_value_are_refused_and_good_ones_answered(
    fuzzing: Fuzzing, rows: list[list[Any]], wire: str
) -> None:
    if wire == "msgpack":
        body, content_type = msgpack.packb({"instances": rows}), "application/msgpack"
    elif wire == "json-nan":  # NaN and Infinity tokens, which JSON does not have
        body, content_type = json.dumps({"instances": rows}).encode(), "application/json"
    else:
        body, content_type = orjson.dumps({"instances": rows}), "application/json"
    response = fuzzing.post(PREDICT, body, {"content-type": content_type})
    has_nan = any(isinstance(v, float) and not math.isfinite(v) for row in rows for v in row)
    if has_nan and wire != "json":  # orjson writes them as null
        assert response.status_code in (400, 422), response.text
    if _finite_float32(rows) and not any(type(v) is bool for row in rows for v in row):
        assert response.status_code == 200, response.text
    if response.status_code == 200:
        assert _is_right(response, rows)


@FUZZ
@given(doc=MSGPACK_VALUES.flatmap(_documents))
def test_any_msgpack_document_and_tensor_map_is_refused_cleanly(fuzzing: Fuzzing, doc: Any) -> None:
    body = msgpack.packb(doc, use_bin_type=True)
    fuzzing.post(PREDICT, body, {"content-type": "application/msgpack"})


@FUZZ
@given(
    arr=hnp.arrays(
        dtype=st.sampled_from(["float32", "float64", "float16", "int32", "uint8", "bool", "<c8"]),
        shape=hnp.array_shapes(min_dims=1, max_dims=3, max_side=5),
    )
)
def test_binary_tensors_of_any_dtype_shape_and_value_are_refused_or_answered_right(
    fuzzing: Fuzzing, arr: np.ndarray
) -> None:
    tensor = {"dtype": arr.dtype.name, "shape": list(arr.shape), "data": arr.tobytes()}
    response = fuzzing.post(
        PREDICT, msgpack.packb({"instances": tensor}), {"content-type": "application/msgpack"}
    )
    fits = (
        arr.ndim == 2
        and arr.shape[1] == WIDTH
        and arr.dtype.kind in "fiu"
        and bool(np.all(np.isfinite(arr)))
        and bool(np.all(np.abs(arr.astype(np.float64)) <= FLOAT32_MAX))
    )
    if fits:
        assert response.status_code == 200, response.text
    if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
        assert response.status_code == 422, response.text
    if response.status_code == 200:
        assert _is_right(response, arr)


@FUZZ
@given(body=st.binary(max_size=512), content_type=CONTENT_TYPES)
def test_random_bytes_with_any_content_type_are_refused(
    fuzzing: Fuzzing, body: bytes, content_type: str
) -> None:
    response = fuzzing.post(PREDICT, body, {"content-type": content_type})
    assert response.status_code in (400, 415, 422), response.text


@FUZZ
@given(
    priority=HEADER_TEXT | st.sampled_from(["high", "LOW", " normal ", ""]),
    timeout=HEADER_TEXT | st.sampled_from(["0", "-1", "nan", "inf", "1e400", "0.5", "301", "5"]),
    request_id=HEADER_TEXT,
    accept=HEADER_TEXT | st.sampled_from(["application/msgpack;q=0", "*/*", "text/html"]),
)
def test_any_header_values_are_validated(
    fuzzing: Fuzzing, priority: str, timeout: str, request_id: str, accept: str
) -> None:
    headers = {
        "content-type": "application/json",
        "x-priority": priority,
        "x-request-timeout-seconds": timeout,
        "x-request-id": request_id,
        "accept": accept,
    }
    response = fuzzing.post(PREDICT, _valid_body(), headers)
    assert response.status_code in (200, 400), response.text
    if refused_by_the_http_parser(response):
        return
    sent, echoed = request_id.strip(" \t"), response.headers["x-request-id"]
    sane = re.compile(r"[A-Za-z0-9._:-]{1,64}")
    if sane.fullmatch(sent):
        assert echoed == sent
    else:  # a fresh one instead, never the client's text
        assert echoed != sent
        assert sane.fullmatch(echoed), echoed
    if response.status_code == 200:
        assert _is_right(response, [[1.0, -0.25, 0.0, 3.0]])


# -- the other routes ------------------------------------------------------------------------

V2_DATATYPES = st.sampled_from(["FP32", "FP64", "INT8", "BYTES", "BOOL", "FP16", "XX"])
V2_INPUTS = st.fixed_dictionaries(
    {
        "name": st.sampled_from(["input0", "x", ""]) | st.text(max_size=5),
        "shape": SHAPES | JSON_SCALARS,
        "datatype": V2_DATATYPES | JSON_SCALARS,
        "data": JSON_VALUES,
    },
    optional={"parameters": st.dictionaries(st.text(max_size=8), JSON_SCALARS, max_size=3)},
)
V2_DOCS = st.fixed_dictionaries(
    {"inputs": st.lists(V2_INPUTS, max_size=2) | JSON_VALUES},
    optional={
        "id": JSON_SCALARS,
        "parameters": st.dictionaries(
            st.sampled_from(["priority", "timeout", "sequence_id", "binary_data_output", "x"]),
            JSON_SCALARS,
        ),
        "outputs": st.lists(st.fixed_dictionaries({"name": JSON_SCALARS}), max_size=2),
    },
)


@FUZZ
@given(doc=V2_DOCS | JSON_VALUES, model=st.sampled_from([MODEL, "other", "..", "%00"]))
def test_v2_inference_refuses_any_malformed_request_cleanly(
    fuzzing: Fuzzing, doc: Any, model: str
) -> None:
    fuzzing.post(f"/v2/models/{model}/infer", orjson.dumps(doc), {})


@FUZZ
@given(
    path=st.sampled_from(["/admin/pause", "/admin/resume", "/admin/batch-size"]),
    authorization=HEADER_TEXT | st.just(f"Basic {TOKEN}") | st.just(f"Bearer {TOKEN[:-1]}"),
    body=JSON_VALUES.map(orjson.dumps),
)
def test_admin_routes_refuse_anything_without_the_token(
    fuzzing: Fuzzing, path: str, authorization: str, body: bytes
) -> None:
    response = fuzzing.post(path, body, {"authorization": authorization})
    if not refused_by_the_http_parser(response):
        assert response.status_code in (401, 403, 405), response.text


def test_deep_nesting_huge_payloads_and_absurd_shapes_are_refused(fuzzing: Fuzzing) -> None:
    cases: list[tuple[bytes, str, set[int]]] = [
        (b'{"instances":' + b"[" * 100_000 + b"]" * 100_000 + b"}", "json", {400, 413}),
        (b'{"instances":' + b"[" * 1000 + b"1" + b"]" * 1000 + b"}", "json", {422}),
        (orjson.dumps({"instances": _nested(40)}), "json", {422}),
        (b"\x81\xa9instances" + b"\x91" * 100_000 + b"\x01", "msgpack", {400}),
        (msgpack.packb({"instances": _nested(40)}), "msgpack", {422}),
        # Over an eighth of the body limit, a JSON body is refused before it is parsed.
        (orjson.dumps({"instances": [[0.0] * 20_000]}), "json", {413, 422}),
        (b"[" * (MAX_BODY + 1), "json", {413}),
        (_tensor("float32", [2**31 - 1] * 3, b"\x00" * 16), "msgpack", {422}),
        (_tensor("float32", [0, WIDTH], b""), "msgpack", {422}),
        (_tensor("float32", [1, WIDTH], b"\x00" * 15), "msgpack", {422}),
        (_tensor("object", [1, WIDTH], b"\x00" * 32), "msgpack", {422}),
        (msgpack.packb({"instances": []}), "msgpack", {422}),
        (b'{"instances": [[1e39, 0, 0, 0]]}', "json", {422}),
        (b'{"instances": [[1, 2, 3, 4]], "instances": 7}', "json", {400}),
        (b"\xef\xbb\xbf" + _valid_body(), "json", {400}),
    ]
    for body, wire, expected in cases:
        response = fuzzing.post(PREDICT, body, {"content-type": f"application/{wire}"})
        assert response.status_code in expected, (body[:60], response.text[:200])


def test_a_batch_that_fills_the_body_limit_is_answered_row_by_row(fuzzing: Fuzzing) -> None:
    rows = np.arange(15_000 * WIDTH, dtype=np.float32).reshape(-1, WIDTH)
    body = msgpack.packb(
        {"instances": {"dtype": "float32", "shape": list(rows.shape), "data": rows.tobytes()}}
    )
    assert MAX_BODY // 2 < len(body) <= MAX_BODY
    response = fuzzing.post(PREDICT, body, {"content-type": "application/msgpack"})
    assert response.status_code == 200, response.text
    assert _is_right(response, rows)


def test_good_requests_alongside_the_fuzzing_were_all_answered_right(fuzzing: Fuzzing) -> None:
    fuzzing.stop_traffic()
    svc, good = fuzzing.svc, fuzzing.good
    live = httpx.get(f"{svc.url}/health/live")
    assert live.status_code == 200, live.text
    check_server_counts(svc, good, limit_s=15, also=fuzzing.predict_codes)
    good.check(len(good.outcomes))
    assert good.codes() == {"200": len(good.outcomes)}, good.summary()
    assert len(good.outcomes) > 50
    assert not quiet_log(svc.log()), quiet_log(svc.log())[:5]


# -- schemathesis, from the service's own OpenAPI document --------------------------------

SCHEMATHESIS_EXAMPLES = 20  # per operation and phase


def _schemathesis() -> Path:
    """The `st` command of this environment; skip without it, or fail if
    BATCHSERVE_TEST_REQUIRE_TOOLS=1 (as in CI)."""
    path = Path(sys.executable).with_name("st")
    if path.is_file():
        return path
    reason = "schemathesis is not installed (pip install schemathesis)"
    if os.environ.get("BATCHSERVE_TEST_REQUIRE_TOOLS") == "1":
        pytest.fail(f"{reason}, and BATCHSERVE_TEST_REQUIRE_TOOLS=1 requires it")
    pytest.skip(reason)


def test_schemathesis_finds_no_server_error_in_any_documented_operation(
    tmp_path: Path,
) -> None:
    st_command = _schemathesis()
    har = tmp_path / "schemathesis.har.json"
    command = [
        str(st_command), "run", "", "--checks", "not_a_server_error",
        "--max-examples", str(SCHEMATHESIS_EXAMPLES), "--seed", "1",
        "--workers", "1",  # ast.parse in threads trips a CPython 3.11 bug inside Hypothesis
        "--request-timeout", "10", "--no-color",
        "--report", "har", "--report-har-path", str(har),
    ]  # fmt: skip
    env = {
        **os.environ,
        "SCHEMATHESIS_HOOKS": "tests.reliability.schemathesis_hooks",
        "PYTHONPATH": str(ROOT),
    }
    with service(tmp_path, ENV) as svc, httpx.Client(base_url=svc.url, timeout=30) as http:
        command[2] = f"{svc.url}/openapi.json"
        fuzzing = Fuzzing(svc, http)
        fuzzing.start_traffic()
        try:
            run = subprocess.run(
                command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
            )
        finally:
            fuzzing.stop_traffic()
        entries = orjson.loads(har.read_bytes())["log"]["entries"]
        predicts = Counter(
            str(e["response"]["status"])
            for e in entries
            if urlsplit(e["request"]["url"]).path == PREDICT
        )
        check_server_counts(svc, fuzzing.good, also=predicts)
        live = http.get("/health/live")
        log = svc.log()

    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert len(entries) > 300, len(entries)
    assert live.status_code == 200
    good = fuzzing.good
    good.check(len(good.outcomes))
    assert good.codes() == {"200": len(good.outcomes)}, good.summary()
    assert not quiet_log(log), quiet_log(log)[:5]


def _tensor(dtype: str, shape: list[int], data: bytes) -> bytes:
    return msgpack.packb({"instances": {"dtype": dtype, "shape": shape, "data": data}})


def _nested(depth: int) -> Any:
    doc: Any = [1.0]
    for _ in range(depth):
        doc = [doc]
    return doc
