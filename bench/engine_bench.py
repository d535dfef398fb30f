"""Micro-benchmark of the batching engine's own overhead.

Pushes items through a `BatchProcessor` running a no-op model (``lambda b: b``) with the batch
size pinned (min = max = initial = B), and compares with calling the same model directly on
pre-stacked ``(B, ...)`` arrays. The difference, divided by the item count, is what the engine
costs per item: queueing, futures, stacking, splitting and bookkeeping.

Run it pinned to one core for a stable figure::

    taskset -c 0 python bench/engine_bench.py [--items N] [--repeats R]
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import numpy as np

# Runnable as a plain script from anywhere: the repository root holds the `app` package.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.batching import (  # noqa: E402
    BatchProcessingStrategy,
    BatchProcessor,
    BatchProcessorConfig,
)

BATCH_SIZES = (1, 8, 64)
TARGET_US_AT_64 = 10.0
ROW_SHAPE = (16,)


def noop(batch: Any) -> Any:
    return batch


def engine_seconds(
    batch_size: int, items: list[np.ndarray], producers: int
) -> tuple[float, float]:
    """Wall time to push every item through the engine and collect every result, and the
    mean size of the batches the model saw."""
    config = BatchProcessorConfig(
        initial_batch_size=batch_size,
        min_batch_size=batch_size,
        max_batch_size=batch_size,
        max_queue_size=max(len(items), batch_size),
        processing_strategy=BatchProcessingStrategy.GREEDY,
        enable_adaptive_batching=False,
        enable_health_monitoring=False,
        enable_memory_optimization=False,
        priority_aging=None,
    )
    processor: BatchProcessor[np.ndarray, np.ndarray] = BatchProcessor(config)
    processor.start(noop)
    chunk = batch_size * 4
    shares = [items[i::producers] for i in range(producers)]
    futures: list[list[Future[np.ndarray]]] = [[] for _ in range(producers)]
    go = threading.Event()

    def produce(index: int) -> None:
        go.wait()
        mine = shares[index]
        out = futures[index]
        for start in range(0, len(mine), chunk):
            out.extend(processor.enqueue_many(mine[start : start + chunk]))

    threads = [threading.Thread(target=produce, args=(i,)) for i in range(producers)]
    for thread in threads:
        thread.start()
    began = time.perf_counter()
    go.set()
    for thread in threads:
        thread.join()
    # What a caller does: block on its own future for its row.
    results = [f.result() for part in futures for f in part]
    elapsed = time.perf_counter() - began
    mean_batch = processor.get_stats()["avg_batch_size"]
    processor.stop()
    assert len(results) == len(items)
    return elapsed, mean_batch


def direct_seconds(batch_size: int, items: list[np.ndarray]) -> float:
    """Wall time to run the model on pre-stacked batches and take each row out."""
    batches = [np.stack(items[i : i + batch_size]) for i in range(0, len(items), batch_size)]
    began = time.perf_counter()
    for batch in batches:
        out = noop(batch)
        for row in out:
            pass
    return time.perf_counter() - began


def best_of(repeats: int, run: Callable[[], tuple[float, float]]) -> tuple[float, float]:
    """The fastest of `repeats` runs (and what it measured alongside its time)."""
    return min(run() for _ in range(repeats))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=64 * 1024, help="items per run")
    parser.add_argument("--repeats", type=int, default=5, help="runs per cell; best is kept")
    parser.add_argument("--producers", type=int, default=2, help="submitting threads")
    args = parser.parse_args()
    items = [np.full(ROW_SHAPE, i, dtype=np.float32) for i in range(args.items)]

    rows = []
    for size in BATCH_SIZES:
        engine, mean_batch = best_of(
            args.repeats, lambda s=size: engine_seconds(s, items, args.producers)
        )
        direct, _ = best_of(args.repeats, lambda s=size: (direct_seconds(s, items), 0.0))
        overhead_us = (engine - direct) / len(items) * 1e6
        rows.append((size, mean_batch, len(items) / engine, len(items) / direct, overhead_us))

    print(f"{args.items} items of shape {ROW_SHAPE} float32, {args.producers} producer threads,")
    print(f"best of {args.repeats}; model = lambda b: b\n")
    print("| batch | mean batch seen | engine items/s | direct items/s | overhead us/item |")
    print("|------:|----------------:|---------------:|---------------:|-----------------:|")
    for size, mean_batch, engine_rate, direct_rate, overhead in rows:
        print(
            f"| {size:5d} | {mean_batch:15.1f} | {engine_rate:14,.0f} | {direct_rate:14,.0f}"
            f" | {overhead:16.2f} |"
        )
    at_64 = rows[-1][4]
    verdict = "meets" if at_64 < TARGET_US_AT_64 else "MISSES"
    print(f"\nbatch 64: {at_64:.2f} us/item {verdict} the {TARGET_US_AT_64:g} us target")


if __name__ == "__main__":
    main()
