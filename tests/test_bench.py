"""The benchmark script keeps working (figures are not checked here: speed claims live
in the README, produced by the script, never in timed tests)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_store_bench_quick_run(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    done = subprocess.run(
        [sys.executable, "bench/store_bench.py", "--quick", "--json", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "| items | metric | InMemoryStore | EdgeStore |" in done.stdout
    figures = json.loads(out.read_text())
    assert figures, "the JSON report is empty"


def test_slack_ack_bench_small_run() -> None:
    done = subprocess.run(
        [sys.executable, "bench/slack_ack_bench.py", "--events", "10"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "| ack latency (ms) | bare bolt app | membot Slack adapter |" in done.stdout
    assert "all 10 answered" in done.stdout
