"""Execution benchmark: model instances, padded variable-length batches, fixed batch sizes.

    python bench/execution_bench.py [--json] [--seconds S]

Each scenario runs the engine in-process with the model the service would build (its
instances and its collator, as `batchserve serve` builds them) under closed-loop asyncio
clients, one row per request, and reports items/s over a window after a warm-up:

- *two devices*: an accelerator stand-in, ``sleep(10 ms + 100 us x B)`` with the GIL released
  and one lock per instance (its device); a batch holds at most 64 rows (the device's memory);
  128 clients; ``instances=2`` against ``instances=1``. Goal: at least 1.8x.
- *variable length*: rows of 8 to 128 values (uniform), ``sleep(5 ms + 1 us x B x L)`` for a
  batch of B rows padded to length L; 64 clients; padded batching against rows grouped by
  exact shape (no pad value). Goal: at least 3x.
- *fixed batch of 8*: ``sleep(2 ms + 20 us x 8)`` that takes exactly 8 rows (padded), against
  the same model with a dynamic batch dimension capped at 8; 64 clients. Goal: within 10%.

The sleeps stand for work elsewhere (a device), so the figures hardly depend on the CPU.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from batchserve.batching import BatchProcessor, BatchProcessorConfig
from batchserve.models import model_from_object
from batchserve.models.base import LoadedModel
from batchserve.models.padding import model_collator

TWO_DEVICES_MIN = 1.8
PADDING_MIN = 3.0
FIXED_WITHIN = 0.10


class Device:
    """One accelerator: calls on it run one at a time (its lock), for `cost(batch)` seconds."""

    input_shape = (4,)

    def __init__(self) -> None:
        self._lock = threading.Lock()

    def cost(self, batch: np.ndarray) -> float:
        return 0.010 + 0.0001 * len(batch)

    def predict(self, batch: np.ndarray) -> np.ndarray:
        with self._lock:
            time.sleep(self.cost(batch))
        return batch[:, :1] * 2


class Sequences:
    """Token sequences padded with 0; cost grows with rows x padded length."""

    inputs = ({"name": "tokens", "shape": (-1,), "dtype": "float32", "pad": 0.0},)

    def predict(self, batch: np.ndarray) -> np.ndarray:
        time.sleep(0.005 + 1e-6 * batch.shape[0] * batch.shape[1])
        return batch.sum(axis=1)


class Unpadded(Sequences):
    """The same model, declaring no pad value: rows batch only with rows of their length."""

    inputs = ({"name": "tokens", "shape": (-1,), "dtype": "float32"},)


class Dynamic:
    """``sleep(2 ms + 20 us x B)``; any batch size."""

    input_shape = (4,)

    def predict(self, batch: np.ndarray) -> np.ndarray:
        time.sleep(0.002 + 0.00002 * len(batch))
        return batch[:, :1] * 2


class FixedEight(Dynamic):
    """The same model exported with a batch dimension of exactly 8."""

    allowed_batch_sizes = (8,)

    def predict(self, batch: np.ndarray) -> np.ndarray:
        if len(batch) != 8:
            raise ValueError(f"takes 8 rows, got {len(batch)}")
        return super().predict(batch)


def _throughput(
    model: LoadedModel,
    rows: Callable[[int], np.ndarray],
    clients: int,
    seconds: float,
    **config: Any,
) -> dict[str, float]:
    """Items/s and mean batch of `clients` closed-loop clients for `seconds` after a warm-up."""
    config.setdefault("enable_health_monitoring", False)
    processor: BatchProcessor[Any, Any] = BatchProcessor(BatchProcessorConfig(**config))
    processor.start(
        model.instance_functions(processor.config.instances), collator=model_collator(model)
    )
    counts = {"done": 0}

    async def client(index: int, until: float) -> None:
        n = index
        while time.monotonic() < until:
            await processor.submit(rows(n))
            counts["done"] += 1
            n += clients

    async def run() -> tuple[int, float]:
        warm = time.monotonic() + min(1.0, seconds / 3)
        until = warm + seconds
        tasks = [asyncio.create_task(client(i, until)) for i in range(clients)]
        await asyncio.sleep(warm - time.monotonic())
        start_count, start = counts["done"], time.monotonic()
        await asyncio.gather(*tasks)
        return counts["done"] - start_count, time.monotonic() - start

    try:
        done, elapsed = asyncio.run(run())
    finally:
        processor.stop(timeout=10)
    assert processor.stats is not None
    sizes = list(processor.stats.batch_sizes)
    return {"items_per_s": done / elapsed, "mean_batch": float(np.mean(sizes)) if sizes else 0.0}


def _fixed_row(n: int) -> np.ndarray:
    return np.full(4, float(n % 97), dtype=np.float32)


def _sequence_row(n: int) -> np.ndarray:
    length = 8 + (n * 7919) % 121  # 8..128, spread evenly over the clients' requests
    return np.ones(length, dtype=np.float32)


def measure(seconds: float) -> dict[str, Any]:
    """Every scenario; ratios and whether each goal is met."""
    devices = model_from_object(Device, "devices")
    one = _throughput(devices, _fixed_row, 128, seconds, instances=1, max_batch_size=64)
    two = _throughput(devices, _fixed_row, 128, seconds, instances=2, max_batch_size=64)
    padded = _throughput(model_from_object(Sequences(), "seq"), _sequence_row, 64, seconds)
    grouped = _throughput(model_from_object(Unpadded(), "seq"), _sequence_row, 64, seconds)
    fixed = _throughput(model_from_object(FixedEight(), "fixed"), _fixed_row, 64, seconds)
    dynamic = _throughput(
        model_from_object(Dynamic(), "dynamic"), _fixed_row, 64, seconds, max_batch_size=8
    )
    scenarios = [
        ("two devices, c=128", "instances=2", two, "instances=1", one, TWO_DEVICES_MIN, "min"),
        ("variable length, c=64", "padded", padded, "shape groups", grouped, PADDING_MIN, "min"),
        ("fixed batch of 8, c=64", "fixed 8", fixed, "dynamic <= 8", dynamic, FIXED_WITHIN, "in"),
    ]
    rows = []
    for name, label, mine, other_label, other, target, kind in scenarios:
        ratio = mine["items_per_s"] / other["items_per_s"] if other["items_per_s"] else 0.0
        met = ratio >= target if kind == "min" else abs(ratio - 1) <= target  # "in": within
        rows.append(
            {
                "scenario": name,
                "this": label,
                "this_items_per_s": mine["items_per_s"],
                "this_mean_batch": mine["mean_batch"],
                "against": other_label,
                "against_items_per_s": other["items_per_s"],
                "against_mean_batch": other["mean_batch"],
                "ratio": ratio,
                "goal": f">= {target:g}x" if kind == "min" else f"within {target:.0%}",
                "met": met,
            }
        )
    return {"seconds": seconds, "rows": rows}


def table(result: dict[str, Any]) -> list[str]:
    """The benchmark as a markdown section."""
    out = [
        "## Execution",
        "",
        "`bench/execution_bench.py`: the engine in-process with the model as the service builds"
        " it (instances, collator), closed-loop clients, one row per request; device-bound"
        " stand-in models (sleeps), so the figures hardly depend on the CPU.",
        "",
        "| scenario | this | items/s | mean batch | against | items/s | mean batch | ratio"
        " | goal |",
        "|---|---|--:|--:|---|--:|--:|--:|---|",
    ]
    for row in result["rows"]:
        verdict = "met" if row["met"] else "MISSED"
        out.append(
            f"| {row['scenario']} | {row['this']} | {row['this_items_per_s']:,.0f}"
            f" | {row['this_mean_batch']:.1f} | {row['against']}"
            f" | {row['against_items_per_s']:,.0f} | {row['against_mean_batch']:.1f}"
            f" | {row['ratio']:.2f} | {row['goal']}: **{verdict}** |"
        )
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=3.0, help="measured window per run")
    parser.add_argument("--json", action="store_true", help="print one JSON line")
    args = parser.parse_args(argv)
    result = measure(args.seconds)
    if args.json:
        print(json.dumps(result))
    else:
        print("\n".join(table(result)))


if __name__ == "__main__":
    main()
