"""Run the reliability scenarios and print their report as markdown.

    python scripts/reliability_report.py [--out FILE] [pytest arguments...]

Runs ``pytest tests/reliability`` with ``RELIABILITY_REPORT`` set, then turns its JSON lines
into two tables: for every scenario, what was sent and how it ended (answered, by status;
lost; wrong), and the figures that depend on the machine (times, rates, memory), which the
suite records but never asserts on.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
COUNTS = {"sent", "answered", "codes", "lost", "wrong"}


def _name(scenario: str) -> str:
    return scenario.removeprefix("tests/reliability/").replace(".py::", ": ")


def render(lines: list[dict[str, Any]]) -> str:
    """The report's markdown."""
    outcomes = [line for line in lines if "sent" in line]
    figures: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for line in lines:
        if "sent" not in line:
            figures[line["scenario"]].append({k: v for k, v in line.items() if k != "scenario"})
    out = [
        "| scenario | sent | answered | by status | lost | wrong |",
        "|---|--:|--:|---|--:|--:|",
    ]
    for line in outcomes:
        codes = ", ".join(f"{code}: {count}" for code, count in line["codes"].items())
        out.append(
            f"| {_name(line['scenario'])} | {line['sent']} | {line['answered']} | {codes}"
            f" | {line['lost']} | {line['wrong']} |"
        )
    total = {key: sum(line[key] for line in outcomes) for key in ("sent", "lost", "wrong")}
    out += ["", f"In all: {total['sent']} sent, {total['lost']} lost, {total['wrong']} wrong."]
    if figures:
        out += ["", "| scenario | figures (machine-dependent, not asserted) |", "|---|---|"]
        for scenario, entries in figures.items():
            for entry in entries:
                text = ", ".join(f"{k}={v}" for k, v in entry.items())
                out.append(f"| {_name(scenario)} | {text} |")
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, help="write the markdown here too")
    args, pytest_args = parser.parse_known_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.jsonl"
        env = {**os.environ, "RELIABILITY_REPORT": str(report)}
        done = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/reliability",
             *pytest_args],
            cwd=ROOT, env=env, check=False,
        )  # fmt: skip
        lines = (
            [json.loads(line) for line in report.read_text().splitlines()]
            if report.exists()
            else []
        )
    text = render(lines)
    print(text)
    if args.out is not None:
        args.out.write_text(text)
    return done.returncode


if __name__ == "__main__":
    raise SystemExit(main())
