"""What every bench prints the same way: the command line, Markdown tables, target lines.

A target line says PASS only when the measured figure meets the target; anything else
(missed, or not measured) says MISS, so a bench never claims a target it did not reach.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any


def header(title: str) -> str:
    """The command that produced a report, when and where: the README quotes this line."""
    command = shlex.join([Path(sys.executable).name, *sys.argv])
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return f"## {title}\n\n`{command}` — {stamp} — nproc {os.cpu_count()}, load {load:.1f}\n"


def table(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    def cell(value: Any) -> str:
        if isinstance(value, float):
            return f"{value:.2f}"
        return "—" if value is None else str(value)

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def target(
    name: str, value: float | None, goal: float, *, at_least: bool = True, fmt: str = "{:.2f}"
) -> tuple[str, bool]:
    """One target line and whether it was met."""
    sign = "≥" if at_least else "≤"
    if value is None:
        return f"{name}: not measured (target {sign} {fmt.format(goal)}) MISS", False
    met = value >= goal if at_least else value <= goal
    verdict = "PASS" if met else "MISS"
    shown = fmt.format(value)
    if not met and shown == fmt.format(goal):  # 0.897 is no 0.90: show the digit that misses
        shown = f"{value:.3f}"
    return f"{name}: {shown} (target {sign} {fmt.format(goal)}) {verdict}", met


def ratio(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def write_json(path: Path | None, data: Any, default: Callable[[Any], Any] = str) -> None:
    if path is not None:
        path.write_text(json.dumps(data, indent=1, default=default))
