"""PNG plots of a run (matplotlib, the ``bench`` extra): throughput against concurrency, and
p99 latency against throughput, one panel per workload."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from bench.report import Row

THROUGHPUT_PNG = "throughput.png"
LATENCY_PNG = "latency.png"
STYLES = {"batchserve": "o-", "tuned": "s-", "naive": "v--", "ceiling": "k:"}


def _series(rows: Sequence[Row], workload: str) -> dict[str, list[Row]]:
    series: dict[str, list[Row]] = {}
    for row in rows:
        if row.workload == workload:
            series.setdefault(row.contender, []).append(row)
    return {name: sorted(points, key=lambda r: r.concurrency) for name, points in series.items()}


def plot(rows: Sequence[Row], out_dir: Path) -> list[Path]:
    """Write both PNGs into ``out_dir``; their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, NullFormatter

    workloads = list(dict.fromkeys(r.workload for r in rows))
    paths = []
    for filename, x_of, y_of, xlabel, ylabel, logy in (
        (THROUGHPUT_PNG, "concurrency", "rps", "concurrent clients", "req/s", False),
        (LATENCY_PNG, "rps", "p99_ms", "req/s", "p99 latency (ms)", True),
    ):
        fig, axes = plt.subplots(
            1, len(workloads), figsize=(3.6 * len(workloads), 3.0), squeeze=False, dpi=90
        )
        for ax, workload in zip(axes[0], workloads, strict=True):
            for name, points in _series(rows, workload).items():
                xs = [getattr(p, x_of) for p in points]
                ys = [getattr(p, y_of) for p in points]
                ax.plot(xs, ys, STYLES.get(name, "x-"), label=name, markersize=4)
            ax.set_xscale("log", base=2 if x_of == "concurrency" else 10)
            ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}"))
            ax.xaxis.set_minor_formatter(NullFormatter())
            if logy:
                ax.set_yscale("log")
            ax.set_title(workload, fontsize=10)
            ax.set_xlabel(xlabel, fontsize=8)
            ax.set_ylabel(ylabel, fontsize=8)
            ax.tick_params(labelsize=7)
            ax.grid(True, alpha=0.3)
        axes[0][0].legend(fontsize=7)
        fig.tight_layout()
        path = out_dir / filename
        fig.savefig(path)
        plt.close(fig)
        paths.append(path)
    return paths
