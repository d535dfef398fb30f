"""The model's in-process ceiling: items/s when its batch function is called directly.

``python -m bench.model_ceiling --workload NAME [--sizes 1,8,32,64]`` prints one JSON object
``{"1": items_per_s, "8": ..., "64": ...}``. No HTTP, no engine: no server can serve the
model faster at that batch size on the same core.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence

from bench.workloads import get_workload, limit_blas_threads

BATCH_SIZES = (1, 8, 64)


def pipeline_sizes(levels: Sequence[int]) -> list[int]:
    """`BATCH_SIZES` plus each closed-loop concurrency and half of it: the largest batch
    ``c`` clients can form, and the two alternating batches of about ``c / 2`` they form
    when the next batch gathers while the model runs the current one."""
    return sorted({*BATCH_SIZES, *levels, *(max(1, c // 2) for c in levels)})


def items_per_second(workload: str, sizes: Sequence[int], seconds: float) -> dict[int, float]:
    """Items/s at each batch size, each measured for about ``seconds`` after a warm-up call."""
    limit_blas_threads()
    spec = get_workload(workload)
    predict = spec.batch_fn()
    rates: dict[int, float] = {}
    for size in sizes:
        batch = spec.batch(size)
        predict(batch)
        calls = 0
        began = time.perf_counter()
        while (elapsed := time.perf_counter() - began) < seconds:
            predict(batch)
            calls += 1
        rates[size] = calls * size / elapsed
    return rates


def main(argv: Sequence[str] | None = None) -> None:
    """Command line: measure and print JSON."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workload", required=True)
    parser.add_argument("--seconds", type=float, default=0.5, help="per batch size")
    parser.add_argument("--sizes", default=",".join(map(str, BATCH_SIZES)), help="batch sizes")
    args = parser.parse_args(argv)
    sizes = [int(size) for size in args.sizes.split(",")]
    rates = items_per_second(args.workload, sizes, args.seconds)
    print(json.dumps({str(k): v for k, v in rates.items()}))


if __name__ == "__main__":
    main()
