"""Micro-benchmark of the batching engine's own overhead.

Pushes items through a `BatchProcessor` running a no-op model (``lambda b: b``) with the batch
size pinned (min = max = initial = B), and compares with calling the same model directly on
pre-stacked ``(B, ...)`` arrays. The difference, divided by the item count, is what the engine
costs per item: entries and futures, queueing, stacking, splitting and bookkeeping.

Producers submit chunks with `enqueue_many` and collect their own results with
``future.result()``, as request handlers do. Two loads are measured:

- *bounded*: each producer keeps at most ``--in-flight`` items outstanding (a closed loop, like
  a server with a bounded number of open requests);
- *all in flight*: every item is submitted before any result is read. The extra cost there is
  mostly CPython's full garbage collections walking the tens of thousands of live futures.

Both keep the queue deep enough that every batch is full (the "mean batch" column shows it).
Times are taken twice: wall clock, and the CPU time of the whole process (every thread). Pinned
to one core the two agree on a quiet machine; on a shared one the CPU figure is the one that
ignores the neighbours. Run it pinned (``python -m bench.run`` runs it too, on the server's
core, and reports it beside the load benchmark)::

    taskset -c 0 python bench/engine_bench.py [--items N] [--repeats R] [--producers P] [--json]
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import threading
import time
from collections import deque
from concurrent.futures import Future
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

# Runnable as a plain script from anywhere: the repository root holds the `app` package.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from batchserve.batching import BatchProcessor, BatchProcessorConfig
from bench.report import engine_goal, engine_table

BATCH_SIZES = (1, 8, 64)
ROW_SHAPE = (16,)


def noop(batch: Any) -> Any:
    return batch


class Timing(NamedTuple):
    wall_s: float
    cpu_s: float
    mean_batch: float = 0.0


def engine_run(
    batch_size: int, items: list[np.ndarray], producers: int, in_flight: int | None
) -> Timing:
    """Push every item through the engine and collect every result. `in_flight`: items each
    producer may have outstanding (None = all of them)."""
    config = BatchProcessorConfig(
        initial_batch_size=batch_size,
        min_batch_size=batch_size,
        max_batch_size=batch_size,
        max_queue_size=max(len(items), batch_size),
    )
    processor: BatchProcessor[np.ndarray, np.ndarray] = BatchProcessor(config)
    processor.start(noop)
    chunk = batch_size * 4
    limit = len(items) if in_flight is None else max(in_flight, chunk)
    shares = [items[i::producers] for i in range(producers)]
    received = [0] * producers
    go = threading.Event()

    def produce(index: int) -> None:
        mine = shares[index]
        pending: deque[list[Future[np.ndarray]]] = deque()
        outstanding = 0
        go.wait()
        for start in range(0, len(mine), chunk):
            futures = processor.enqueue_many(mine[start : start + chunk])
            pending.append(futures)
            outstanding += len(futures)
            while outstanding > limit:
                oldest = pending.popleft()
                received[index] += len([f.result() for f in oldest])
                outstanding -= len(oldest)
        for futures in pending:
            received[index] += len([f.result() for f in futures])

    threads = [threading.Thread(target=produce, args=(i,)) for i in range(producers)]
    for thread in threads:
        thread.start()
    wall, cpu = time.perf_counter(), time.process_time()
    go.set()
    for thread in threads:
        thread.join()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    mean_batch = float(processor.get_stats()["avg_batch_size"])
    processor.stop()
    if sum(received) != len(items):
        raise RuntimeError(f"{sum(received)} results for {len(items)} items")
    return Timing(wall, cpu, mean_batch)


def direct_run(batch_size: int, items: list[np.ndarray]) -> Timing:
    """Run the model on pre-stacked batches and take each row out."""
    batches = [np.stack(items[i : i + batch_size]) for i in range(0, len(items), batch_size)]
    wall, cpu = time.perf_counter(), time.process_time()
    for batch in batches:
        out = noop(batch)
        for _row in out:
            pass
    return Timing(time.perf_counter() - wall, time.process_time() - cpu)


def best(runs: list[Timing]) -> Timing:
    """Fastest wall and fastest CPU time of several runs (noise only ever adds time)."""
    return Timing(min(r.wall_s for r in runs), min(r.cpu_s for r in runs), runs[0].mean_batch)


def measure(items: int, repeats: int, producers: int, in_flight: int) -> dict[str, Any]:
    """Every cell of the table: per batch size, engine and direct items/s and the engine's
    overhead per item (wall, CPU, CPU with all in flight)."""
    rows = [np.full(ROW_SHAPE, i, dtype=np.float32) for i in range(items)]
    runs = range(repeats)

    def per_item_us(engine: float, direct: float) -> float:
        return (engine - direct) / items * 1e6

    cells = []
    for size in BATCH_SIZES:
        bounded = best([engine_run(size, rows, producers, in_flight) for _ in runs])
        everything = best([engine_run(size, rows, producers, None) for _ in runs])
        direct = best([direct_run(size, rows) for _ in runs])
        cells.append(
            {
                "batch": size,
                "mean_batch": bounded.mean_batch,
                "engine_items_per_s": items / bounded.wall_s,
                "direct_items_per_s": items / direct.wall_s,
                "overhead_us_wall": per_item_us(bounded.wall_s, direct.wall_s),
                "overhead_us_cpu": per_item_us(bounded.cpu_s, direct.cpu_s),
                "overhead_us_cpu_all_in_flight": per_item_us(everything.cpu_s, direct.cpu_s),
            }
        )
    setup = {"items": items, "repeats": repeats, "producers": producers, "in_flight": in_flight}
    return {**setup, "rows": cells}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=64 * 1024, help="items per run")
    parser.add_argument("--repeats", type=int, default=5, help="runs per cell; best is kept")
    parser.add_argument("--producers", type=int, default=2, help="submitting threads")
    parser.add_argument(
        "--in-flight", type=int, default=2048, help="items outstanding per producer (bounded)"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object instead")
    args = parser.parse_args()
    # With everything in flight the queue rightly reports itself degraded: not news here.
    logging.getLogger("batchserve.batching").setLevel(logging.ERROR)
    result = measure(args.items, args.repeats, args.producers, args.in_flight)
    if args.json:
        print(json.dumps(result))
        return
    print("\n".join(engine_table(result)[2:]))
    goal = engine_goal(result)
    print(f"\n(bounded = {args.in_flight} items in flight per producer)")
    print(f"{goal.text}: {goal.value:.2f} -> {goal.verdict()}")


if __name__ == "__main__":
    main()
