"""The worst bodies one can build within the body limit: each is answered (a 4xx, or 200 with
the right answer), every other client keeps being answered meanwhile, and the server's peak
memory grows by less than 10x the body. How long each took, and the other clients' p99 while
it was processed, go to the reliability report (they depend on the machine)."""

from __future__ import annotations

import asyncio
import struct
import time
from pathlib import Path

import httpx
import msgpack
import numpy as np
import orjson
import pytest

from tests.e2e.support import running_server
from tests.reliability.support import percentile, report

pytestmark = pytest.mark.e2e

LIMIT = 16 * 1024 * 1024  # the default max_body_bytes
ELEMENTWISE = LIMIT // 8
MSGPACK = {"content-type": "application/msgpack"}
JSON = {"content-type": "application/json"}


def _v2_binary(shape: list[int], datatype: str, data: bytes) -> tuple[bytes, dict[str, str]]:
    head = orjson.dumps(
        {
            "inputs": [
                {"name": "x", "shape": shape, "datatype": datatype}
                | {"parameters": {"binary_data_size": len(data)}}
            ]
        }
    )
    return head + data, {"inference-header-content-length": str(len(head))}


def worst_bodies() -> list[tuple[str, str, bytes, dict[str, str]]]:
    rows = LIMIT - 32
    tensor = np.ones((LIMIT // 4096 - 1, 1024), dtype=np.float32)  # just under 16 MiB
    v2_bytes, v2_headers = _v2_binary([200_000_000], "BYTES", struct.pack("<I", 1) + b"x")
    v2_big, v2_big_headers = _v2_binary(list(tensor.shape), "FP32", tensor.tobytes())
    return [
        ("msgpack, 16.7 million empty rows", "/predict",
         b"\x81\xa9instances\xdd" + rows.to_bytes(4, "big") + b"\x90" * rows, MSGPACK),
        ("msgpack, one row of 500 thousand small integers", "/predict",
         b"\x81\xa9instances\x91\xdd" + (ELEMENTWISE // 4 - 8).to_bytes(4, "big")
         + b"\x01" * (ELEMENTWISE // 4 - 8), MSGPACK),
        ("msgpack, one row of 2 million small integers", "/predict",
         b"\x81\xa9instances\x91\xdd" + (ELEMENTWISE - 24).to_bytes(4, "big")
         + b"\x01" * (ELEMENTWISE - 24), MSGPACK),
        ("msgpack, 65 thousand rows of empty lists", "/predict",
         b"\x81\xa9instances\xdc\xff\xff" + b"\x91\x90" * 0xFFFF, MSGPACK),
        ("msgpack binary tensor, 16 MiB", "/predict",
         msgpack.packb({"instances": {"dtype": "float32", "shape": list(tensor.shape),
                                      "data": tensor.tobytes()}}), MSGPACK),
        ("JSON, one row of a million zeros (2 MiB)", "/predict",
         b'{"instances":[[' + b"0," * (ELEMENTWISE // 2 - 20) + b"0]]}", JSON),
        ("JSON, 16 MiB of zeros", "/predict",
         b'{"instances":[[' + b"0," * (LIMIT // 2 - 20) + b"0]]}", JSON),
        ("JSON, 700 thousand empty lists (2 MiB)", "/predict",
         b'{"instances":[' + b"[]," * (ELEMENTWISE // 3 - 10) + b"[]]}", JSON),
        ("JSON, nested a million levels deep", "/predict",
         b'{"instances":' + b"[" * (ELEMENTWISE // 2 - 20) + b"]" * (ELEMENTWISE // 2 - 20) + b"}",
         JSON),
        ("V2 BYTES tensor declaring 200 million elements", "/v2/models/anything/infer",
         v2_bytes, v2_headers),
        ("V2 shape [0, 2**63-1]", "/v2/models/anything/infer",
         orjson.dumps({"inputs": [{"name": "x", "shape": [0, 2**63 - 1], "datatype": "FP32",
                                   "data": []}]}), JSON),
        ("V2 binary FP32, 16 MiB", "/v2/models/anything/infer", v2_big, v2_big_headers),
    ]  # fmt: skip


def _peak_rss(pid: int) -> int:
    """The process's peak resident set so far (VmHWM), in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


async def _others(
    url: str, latencies: list[tuple[float, float]], stop: asyncio.Event, steady: asyncio.Event
) -> int:
    """Small requests one after another until `stop` (`steady` once 20 are answered);
    returns how many were wrong."""
    wrong = 0
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        while not stop.is_set():
            began = time.monotonic()
            response = await http.post("/predict", json={"instances": [[1.0, 2.0, 3.0]]})
            latencies.append((began, time.monotonic() - began))
            if len(latencies) >= 20:
                steady.set()
            wrong += response.status_code != 200 or response.json()["predictions"] != [6.0]
    return wrong


async def _one_body(
    url: str, pid: int, name: str, path: str, body: bytes, headers: dict[str, str]
) -> dict[str, object]:
    latencies: list[tuple[float, float]] = []
    stop, steady = asyncio.Event(), asyncio.Event()
    others = [asyncio.create_task(_others(url, latencies, stop, steady)) for _ in range(2)]
    async with httpx.AsyncClient(base_url=url, timeout=60) as http:
        await steady.wait()  # the other clients' steady state first
        before = _peak_rss(pid)
        began = time.monotonic()
        response = await http.post(path, content=body, headers=headers)
        took = time.monotonic() - began
    stop.set()
    wrong = sum(await asyncio.gather(*others))
    during = [lat for start, lat in latencies if began <= start <= began + took]
    return {
        "body": name,
        "bytes": len(body),
        "status": response.status_code,
        "answer": response.text[:80] if response.status_code != 200 else "ok",
        "answered_in_s": round(took, 3),
        "peak_rss_growth_x": round((_peak_rss(pid) - before) / len(body), 2),
        "others_p99_ms": round(percentile(during, 99) * 1e3, 1),
        "others_answered": len(during),
        "others_wrong": wrong,
    }


@pytest.mark.parametrize(
    ("name", "path", "body", "headers"), worst_bodies(), ids=[b[0] for b in worst_bodies()]
)
def test_a_worst_body_is_answered_and_bounded_by_its_size(
    tmp_path: Path, name: str, path: str, body: bytes, headers: dict[str, str]
) -> None:
    # A fresh server per body: its peak memory (VmHWM) is then this body's alone.
    env = {
        "BATCHSERVE_MODEL": "tests.reliability.models:anything",
        "BATCHSERVE_ACCESS_LOG": "false",
    }
    with running_server(tmp_path, env) as server:
        entry = asyncio.run(_one_body(server.url, server.process.pid, name, path, body, headers))
        alive = server.process.poll() is None
    report(**entry)
    assert alive
    assert entry["others_wrong"] == 0, entry
    status = int(entry["status"])  # type: ignore[call-overload]
    assert status == 200 or 400 <= status < 500, entry
    # Below a MiB, growth is the noise of a process starting to work. Above it: under 10x
    # the body, except for bodies decoded value by value, where each value becomes a list
    # slot and an int64 (16 bytes, plus allocator slack across threads) for an undeclared
    # model: two bytes of JSON per value, one of msgpack.
    bound = 32 if "small integers" in name else 16 if "zeros (2 MiB)" in name else 10
    growth = float(entry["peak_rss_growth_x"]) * len(body)  # type: ignore[arg-type]
    assert growth < max(bound * len(body), 2**20), entry
