"""Medians per target and scenario from a results file, as the Markdown tables RESULTS.md holds.

    python -m benchmarks.summary benchmarks/results/2026-11-29.jsonl
    python -m benchmarks.summary benchmarks/results/2026-11-29-loadgen.jsonl

Reads both our generator's lines and ``benchmarks/loadgen-compare``'s, which wrap the
independent generator's result (``"result": {...}``) with the target and scenario.
"""

from __future__ import annotations

import json
import statistics
import sys
from collections import defaultdict
from collections.abc import Callable
from typing import Any

Row = dict[str, Any]

# Scenario -> (column, how to read it from one result line).
METRICS: dict[str, list[tuple[str, Callable[[Row], float | None]]]] = {
    "fanout": [
        ("deliveries/s", lambda r: r["delivered_per_s"]),
        ("p99 ms", lambda r: r["p99_ms"]),
        ("loss", lambda r: r["loss"]),
    ],
    "fine-ramp": [
        ("best deliveries/s (p99<250 ms, no loss)", lambda r: (r.get("best") or {}).get("delivered_per_s")),
        ("its p99 ms", lambda r: (r.get("best") or {}).get("p99_ms")),
    ],
    "ramp": [
        ("best deliveries/s (p99<250 ms, no loss)", lambda r: (r.get("best") or {}).get("delivered_per_s")),
        ("its p99 ms", lambda r: (r.get("best") or {}).get("p99_ms")),
    ],
    "conns": [
        ("KiB per connection", lambda r: r["kib_per_conn"]),
        ("seconds to open all", lambda r: r["connect_secs"]),
    ],
    "idle": [
        ("server CPU %", lambda r: r["server_cpu_percent"]),
        ("Redis clients during", lambda r: r.get("redis_clients_during")),
    ],
    "slow": [
        ("healthy delivery ratio", lambda r: r["healthy_delivery_ratio"]),
        ("healthy p99 ms", lambda r: r["p99_ms"]),
        ("stalled closed with", lambda r: (r.get("stalled") or {}).get("close_code")),
    ],
    "create": [
        ("rooms/s", lambda r: r["rooms_per_s"]),
        ("p99 ms", lambda r: r.get("p99_ms")),  # ours only: the independent generator has none
        ("server CPU ms/room", lambda r: r.get("server_cpu_ms_per_room")),
        ("Redis CPU ms/room", lambda r: r.get("redis_cpu_ms_per_room")),
    ],
}
# One room at a time, and created by wrk: read as creation is.
METRICS["lone-create"] = METRICS["capacity"] = METRICS["create"]
# Read against the reference round by round: the machine's speed moves between rounds (by
# more than the gap between targets at some hours), and a round's targets ran minutes apart.
BY_ROUND = ("create", "lone-create", "capacity")


def main(path: str) -> None:
    runs: dict[tuple[str, str], list[Row]] = defaultdict(list)
    for line in open(path):
        row = json.loads(line)
        if "result" in row:  # loadgen-compare: the independent generator's line, wrapped
            if row["result"] is None:
                continue  # that run printed nothing (it failed); the count of runs shows it
            row = {**row["result"], **{k: v for k, v in row.items() if k != "result"}}
        runs[(row["scenario"], row["label"])].append(row)
    targets = sorted({label for _, label in runs}, key=lambda t: (t == "reference", t))
    for scenario, columns in METRICS.items():
        if not any(s == scenario for s, _ in runs):
            continue
        print(f"\n**{scenario}**\n")
        print("| target | runs | " + " | ".join(name for name, _ in columns) + " |")
        print("|---|---|" + "---|" * len(columns))
        for target in targets:
            rows = runs.get((scenario, target), [])
            if not rows:
                continue
            cells = []
            for _, read in columns:
                values = [v for v in (read(r) for r in rows) if v is not None]
                cells.append(f"{statistics.median(values):g}" if values else "-")
            print(f"| {target} | {len(rows)} | " + " | ".join(cells) + " |")
        if scenario in BY_ROUND:
            for line in by_round(runs, scenario, targets):
                print(line)


def by_round(runs: dict[tuple[str, str], list[Row]], scenario: str, targets: list[str]) -> list[str]:
    """Each target's rooms/s over the reference's in the same round (``rep``): the median of
    those ratios, their range, and each in round order."""
    reference = {row["rep"]: row["rooms_per_s"] for row in runs.get((scenario, "reference"), [])}
    lines = []
    for target in targets:
        rows = runs.get((scenario, target), []) if target != "reference" else []
        ratios = [row["rooms_per_s"] / reference[row["rep"]] for row in rows if reference.get(row["rep"])]
        if ratios:
            each = ", ".join(f"{ratio:.2f}" for ratio in ratios)
            lines.append(
                f"- {target} / reference, by round: **{statistics.median(ratios):.2f}x** "
                f"({min(ratios):.2f}-{max(ratios):.2f}; {each})"
            )
    return ["", *lines] if lines else []


if __name__ == "__main__":
    main(sys.argv[1])
