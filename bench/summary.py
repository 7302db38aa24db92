"""The table `make bench` ends with: each benchmark appends its figures (`record`) to the file
named by BENCH_SUMMARY; `python bench/summary.py FILE` prints them in the order recorded.

    figure | measured | floor (physical) | ratio | goal | detail
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path


def record(
    figure: str,
    measured: str,
    floor: str,
    ratio: float | None,
    goal: str,
    detail: str = "",
    *,
    show: bool = True,
) -> None:
    """Print the figure as a table row (unless the caller prints its own table), and append it
    to $BENCH_SUMMARY when set."""
    row = {
        "figure": figure,
        "measured": measured,
        "floor": floor,
        "ratio": ratio,
        "goal": goal,
        "detail": detail,
    }
    if show:
        print(_line(row), flush=True)
    target = os.environ.get("BENCH_SUMMARY")
    if target:
        with Path(target).open("a", encoding="utf-8") as out:
            out.write(json.dumps(row) + "\n")


def header() -> str:
    return "| figure | measured | floor | ratio | goal | detail |\n|---|---|---|---|---|---|"


def _line(row: Mapping[str, object]) -> str:
    ratio = row["ratio"]
    shown = f"{ratio:.2f}x" if isinstance(ratio, float) else "—"
    return f"| {row['figure']} | {row['measured']} | {row['floor']} | {shown} | {row['goal']} | {row['detail']} |"


def main(path: str) -> int:
    rows = [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
    load = os.getloadavg()
    print(
        f"\n## make bench: summary ({len(rows)} figures; load now {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f})\n"
    )
    print(header())
    for row in rows:
        print(_line(row))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
