"""Micro-benchmark of the ``/predict`` wire codecs (``batchserve.server.wire.codecs``).

Times ``decode_predict`` (with the model dtype float32) and ``encode_predict`` of the decoded
batch for 1 and 64 rows of 256 float32, in every format and tensor style, and prints
microseconds per request. The ``bare orjson`` line is what an app that only parses and
re-serialises the JSON does (``orjson.loads`` + ``orjson.dumps``), the floor for JSON.

Run it pinned to one core for a stable figure::

    taskset -c 0 python bench/codec_bench.py [--dim D] [--repeats R]
"""

from __future__ import annotations

import argparse
import sys
import timeit
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgpack
import msgpack_numpy
import numpy as np
import orjson

# Runnable as a plain script from anywhere: the repository root holds the `app` package.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from batchserve.server.wire.codecs import (
    TensorStyle,
    WireFormat,
    decode_predict,
    encode_predict,
)

ROWS = (1, 64)
F32 = np.dtype(np.float32)
CASES: tuple[tuple[str, WireFormat, TensorStyle, str], ...] = (
    ("json/lists", WireFormat.JSON, TensorStyle.LISTS, "application/json"),
    ("msgpack/lists", WireFormat.MSGPACK, TensorStyle.LISTS, "application/msgpack"),
    ("msgpack/binary", WireFormat.MSGPACK, TensorStyle.BINARY, "application/msgpack"),
    ("msgpack/msgpack_numpy", WireFormat.MSGPACK, TensorStyle.MSGPACK_NUMPY, "application/msgpack"),
)


def request_body(batch: np.ndarray[Any, Any], fmt: WireFormat, style: TensorStyle) -> bytes:
    """The body a client of this format and style sends."""
    doc: Any
    if fmt is WireFormat.JSON:
        return orjson.dumps({"instances": batch}, option=orjson.OPT_SERIALIZE_NUMPY)
    if style is TensorStyle.BINARY:
        doc = {"dtype": "float32", "shape": list(batch.shape), "data": batch.tobytes()}
    elif style is TensorStyle.MSGPACK_NUMPY:
        return bytes(msgpack_numpy.packb({"instances": batch}))
    else:
        doc = batch.tolist()
    return bytes(msgpack.packb({"instances": doc}))


def per_call_us(func: Callable[[], object], repeats: int) -> float:
    """Best-of-``repeats`` microseconds per call, each repeat about 0.2 s long."""
    timer = timeit.Timer(func)
    number, _ = timer.autorange()
    number = max(1, number)
    return min(timer.repeat(repeat=repeats, number=number)) / number * 1e6


def bench_case(body: bytes, content_type: str, fmt: WireFormat, repeats: int) -> tuple[float, ...]:
    decoded = decode_predict(body, content_type, dtype=F32)
    assert decoded.batch is not None
    batch, style = decoded.batch, decoded.style

    def both() -> object:
        request = decode_predict(body, content_type, dtype=F32)
        assert request.batch is not None
        return encode_predict(request.batch, fmt, request.style)

    return (
        per_call_us(lambda: decode_predict(body, content_type, dtype=F32), repeats),
        per_call_us(lambda: encode_predict(batch, fmt, style), repeats),
        per_call_us(both, repeats),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--dim", type=int, default=256, help="features per row")
    parser.add_argument("--repeats", type=int, default=5, help="timing repeats (best is kept)")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    print(f"{'codec':<24}{'rows':>5}{'bytes':>9}{'decode us':>11}{'encode us':>11}{'total us':>10}")
    for rows in ROWS:
        batch = rng.standard_normal((rows, args.dim)).astype(np.float32)
        for name, fmt, style, content_type in CASES:
            body = request_body(batch, fmt, style)
            decode_us, encode_us, total_us = bench_case(body, content_type, fmt, args.repeats)
            print(
                f"{name:<24}{rows:>5}{len(body):>9}{decode_us:>11.1f}{encode_us:>11.1f}"
                f"{total_us:>10.1f}"
            )
        json_body = request_body(batch, WireFormat.JSON, TensorStyle.LISTS)
        bare_us = per_call_us(
            lambda body=json_body: orjson.dumps({"predictions": orjson.loads(body)["instances"]}),
            args.repeats,
        )
        print(f"{'bare orjson (floor)':<24}{rows:>5}{len(json_body):>9}{'':>22}{bare_us:>10.1f}")


if __name__ == "__main__":
    main()
