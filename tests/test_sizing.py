"""The capacity model (``python -m benchmarks.sizing``) from its recorded inputs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import sizing

ROOT = Path(__file__).resolve().parent.parent


def test_every_input_is_measured_and_names_its_benchmark() -> None:
    raw = json.loads(sizing.INPUTS.read_text())
    for name in sizing.REQUIRED:
        entry = raw[name]
        assert isinstance(entry["value"], int | float) and entry["value"] > 0, name
        assert entry["benchmark"].strip() and entry["result"].strip() and entry["readings"], name
        assert (ROOT / entry["results_file"]).is_file(), name


def test_the_table_grows_with_connections_and_names_what_runs_out_first() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.sizing", "--connections", "10000", "1000000"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    rows = [line for line in done.stdout.splitlines() if line.startswith("| 1")]
    assert [row.split("|")[1].strip() for row in rows] == ["10,000", "1,000,000"]
    small, large = (int(row.split("|")[4].split()[0]) for row in rows)
    assert 1 <= small < large
    assert all(row.split("|")[5].strip() in ("cpu", "opens", "memory") for row in rows)


def test_a_harsher_storm_needs_more_instances_and_no_history_less_redis() -> None:
    cost = sizing.load_inputs(sizing.INPUTS)
    calm = sizing.Mix(10, 2.0, 60.0, 0.7, 2048.0)
    storm = sizing.Mix(10, 2.0, 5.0, 0.7, 2048.0)
    assert sizing.plan(100_000, storm, cost).instances > sizing.plan(100_000, calm, cost).instances
    chatty = sizing.Mix(10, 60.0, 60.0, 0.7, 2048.0)
    quiet = sizing.Mix(10, 60.0, 60.0, 0.7, 2048.0, history=False)
    kept, dropped = sizing.plan(1_000_000, chatty, cost), sizing.plan(1_000_000, quiet, cost)
    assert dropped.shard_load["messages"] < kept.shard_load["messages"]


def test_an_unmeasured_input_is_refused_by_name(tmp_path: Path) -> None:
    raw = json.loads(sizing.INPUTS.read_text())
    raw["instance_kib_per_connection"]["value"] = None
    inputs = tmp_path / "inputs.json"
    inputs.write_text(json.dumps(raw))
    with pytest.raises(SystemExit, match="instance_kib_per_connection"):
        sizing.load_inputs(inputs)
