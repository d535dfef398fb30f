"""The fallback load generator (when ``wrk`` is not installed): a closed-loop asyncio client.

``python -m bench.pyload --url URL --body-file FILE --connections N --duration S`` keeps N
keep-alive HTTP/1.1 connections busy for S seconds, each sending the next POST as soon as
its previous answer is read, and prints one JSON line with the keys ``bench/wrk/post.lua``
prints. Hand-rolled on asyncio streams (uvloop when installed): a full HTTP client would
measure itself more than the server.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np


@dataclass
class Tally:
    """What the connections saw."""

    latencies_ns: list[int] = field(default_factory=list)
    bytes_read: int = 0
    connect_errors: int = 0
    read_errors: int = 0
    status_errors: int = 0


def build_request(url: str, body: bytes) -> tuple[str, int, bytes]:
    """Host, port and the raw bytes of one POST request."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    head = (
        f"POST {parts.path or '/'} HTTP/1.1\r\nHost: {host}:{port}\r\n"
        "Content-Type: application/json\r\nAccept: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return host, port, head.encode("latin-1") + body


async def exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, raw: bytes
) -> tuple[int, int]:
    """Send one request, read one response; its status and size."""
    writer.write(raw)
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    await reader.readexactly(length)
    return status, len(head) + length


async def connection(host: str, port: int, raw: bytes, stop_at: float, tally: Tally) -> None:
    """One closed-loop connection until ``stop_at`` (perf_counter seconds)."""
    while time.perf_counter() < stop_at:
        try:
            reader, writer = await asyncio.open_connection(host, port)
        except OSError:
            tally.connect_errors += 1
            await asyncio.sleep(0.01)
            continue
        try:
            while time.perf_counter() < stop_at:
                start = time.perf_counter_ns()
                status, size = await exchange(reader, writer, raw)
                tally.latencies_ns.append(time.perf_counter_ns() - start)
                tally.bytes_read += size
                if not 200 <= status < 300:
                    tally.status_errors += 1
        except (OSError, asyncio.IncompleteReadError, ValueError):
            tally.read_errors += 1
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()


async def drive(url: str, body: bytes, connections: int, duration_s: float) -> dict[str, float]:
    """Run the load; the summary in ``post.lua``'s keys (times in microseconds)."""
    host, port, raw = build_request(url, body)
    tally = Tally()
    began = time.perf_counter()
    stop_at = began + duration_s
    await asyncio.gather(*(connection(host, port, raw, stop_at, tally) for _ in range(connections)))
    elapsed = time.perf_counter() - began
    lat = np.asarray(tally.latencies_ns or [0], dtype=np.float64) / 1e3
    p50, p90, p99 = np.percentile(lat, [50, 90, 99])
    return {
        "requests": len(tally.latencies_ns),
        "duration_us": int(elapsed * 1e6),
        "bytes": tally.bytes_read,
        "connect_errors": tally.connect_errors,
        "read_errors": tally.read_errors,
        "write_errors": 0,
        "status_errors": tally.status_errors,
        "timeouts": 0,
        "latency_mean_us": float(lat.mean()),
        "latency_max_us": float(lat.max()),
        "p50_us": float(p50),
        "p90_us": float(p90),
        "p99_us": float(p99),
    }


def main(argv: Sequence[str] | None = None) -> None:
    """Command line: drive the load and print the JSON summary."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", required=True)
    parser.add_argument("--body-file", type=Path, required=True)
    parser.add_argument("--connections", type=int, required=True)
    parser.add_argument("--duration", type=float, required=True)
    args = parser.parse_args(argv)
    try:
        import uvloop
    except ImportError:
        runner = asyncio.run
    else:
        runner = uvloop.run
    body = args.body_file.read_bytes()
    summary = runner(drive(args.url, body, args.connections, args.duration))
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
