"""The medians and round-by-round ratios ``python -m benchmarks.summary`` prints from a results file."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _reading(label: str, rep: int, rooms_per_s: int | None) -> str:
    result = None if rooms_per_s is None else {"scenario": "create", "rooms_per_s": rooms_per_s}
    return json.dumps({"label": label, "scenario": "create", "rep": rep, "result": result})


def test_creation_is_read_against_the_reference_of_the_same_round(tmp_path: Path) -> None:
    results = tmp_path / "create.jsonl"
    readings = [
        ("ours-redis", 1, 150),
        ("reference", 1, 100),
        ("ours-redis", 2, 420),
        ("reference", 2, 300),
        ("ours-redis", 3, 500),
        ("reference", 3, None),  # That round's reference failed: the round has no ratio.
        ("ours-redis", 4, 160),
        ("reference", 4, 100),
    ]
    results.write_text("\n".join(_reading(*reading) for reading in readings) + "\n")

    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.summary", str(results)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )

    assert "| ours-redis | 4 | 290 |" in done.stdout  # The median of all four readings.
    assert "- ours-redis / reference, by round: **1.50x** (1.40-1.60; 1.50, 1.40, 1.60)" in done.stdout
    assert "reference / reference" not in done.stdout
