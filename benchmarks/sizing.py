"""``python -m benchmarks.sizing``: instances and Redis shards for a number of connections.

Every unit cost comes from ``benchmarks/sizing-inputs.json``, where each input names the
benchmark command and the result file that produced it; the traffic mix and the headroom are
options, because they are choices about a deployment, not measurements. The model and its
limits are in docs/scaling.md.

    python -m benchmarks.sizing                                  # 10k, 100k and 1M connections
    python -m benchmarks.sizing --members 25 --messages-per-minute 6 --connections 250000
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

INPUTS = Path(__file__).with_name("sizing-inputs.json")
REQUIRED = (
    "instance_cpu_ms_per_1000_deliveries",
    "instance_cpu_ms_per_open",
    "instance_kib_per_connection",
    "redis_cpu_ms_per_1000_messages",
    "redis_cpu_ms_per_1000_messages_extra_instance",
    "redis_cpu_ms_per_1000_opens",
    "redis_cpu_ms_per_1000_history_appends",
)


@dataclass(frozen=True)
class Mix:
    """What the users do: room size, how often each member writes, how fast they all come back."""

    members: int
    messages_per_minute: float
    storm_seconds: float
    headroom: float
    instance_memory_mib: float
    history: bool = True  # HISTORY_SIZE=0 keeps offsets but appends nothing


@dataclass(frozen=True)
class Plan:
    connections: int
    messages_per_s: float
    deliveries_per_s: float
    instances: int
    instances_by: dict[str, int]
    shards: int
    shard_load: dict[str, float]

    @property
    def instances_bound_by(self) -> str:
        return max(self.instances_by, key=lambda k: self.instances_by[k])

    @property
    def shards_bound_by(self) -> str:
        return max(self.shard_load, key=lambda k: self.shard_load[k])


def load_inputs(path: Path) -> dict[str, float]:
    raw: dict[str, Any] = json.loads(path.read_text())
    missing = [name for name in REQUIRED if name not in raw or raw[name].get("value") is None]
    if missing:
        raise SystemExit(f"{path}: no measured value for {', '.join(missing)} (run the benchmark each names)")
    return {name: float(raw[name]["value"]) for name in REQUIRED}


def plan(connections: int, mix: Mix, cost: dict[str, float]) -> Plan:
    messages = connections * mix.messages_per_minute / 60.0
    deliveries = messages * mix.members
    opens = connections / mix.storm_seconds  # everyone reconnecting inside the storm window
    # One instance is one Python process: one core at most, used up to the headroom.
    by = {
        "cpu": math.ceil(deliveries * cost["instance_cpu_ms_per_1000_deliveries"] / 1e6 / mix.headroom),
        "opens": math.ceil(opens * cost["instance_cpu_ms_per_open"] / 1e3 / mix.headroom),
        "memory": math.ceil(connections * cost["instance_kib_per_connection"] / 1024 / mix.instance_memory_mib),
    }
    instances = max(1, *by.values())
    # A load balancer spreads a room's members over instances at random: Redis hands each
    # message to every instance holding one of them, the expected count of distinct instances
    # among `members` draws.
    spread = instances * (1 - (1 - 1 / instances) ** mix.members)
    per_message = (
        cost["redis_cpu_ms_per_1000_messages"] + (spread - 1) * cost["redis_cpu_ms_per_1000_messages_extra_instance"]
    )
    if not mix.history:  # The measured message cost includes its history append.
        per_message -= cost["redis_cpu_ms_per_1000_history_appends"]
    load = {
        "messages": messages * per_message / 1e6,
        "opens": opens * cost["redis_cpu_ms_per_1000_opens"] / 1e6,
    }
    # Each shard is one Redis process (one core); rooms spread evenly over the slots.
    shards = max(1, math.ceil(sum(load.values()) / mix.headroom))
    return Plan(connections, messages, deliveries, instances, by, shards, load)


def table(plans: list[Plan]) -> str:
    rows = [
        "| connections | messages/s | deliveries/s | instances (cpu / opens / memory) | runs out first | "
        "Redis shards (cores for messages + opens) | runs out first |",
        "|---|---|---|---|---|---|---|",
    ]
    for p in plans:
        by = " / ".join(str(p.instances_by[k]) for k in ("cpu", "opens", "memory"))
        rows.append(
            f"| {p.connections:,} | {p.messages_per_s:,.0f} | {p.deliveries_per_s:,.0f} | {p.instances} ({by}) "
            f"| {p.instances_bound_by} | {p.shards} ({p.shard_load['messages']:.2f} + {p.shard_load['opens']:.2f}) "
            f"| {p.shards_bound_by} |"
        )
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.sizing", description=__doc__)
    p.add_argument("--inputs", type=Path, default=INPUTS)
    p.add_argument("--connections", type=int, nargs="*", default=[10_000, 100_000, 1_000_000])
    p.add_argument("--members", type=int, default=10, help="members per room")
    p.add_argument("--messages-per-minute", type=float, default=2.0, help="messages each member sends a minute")
    p.add_argument("--storm-seconds", type=float, default=60.0, help="everyone reconnects within this window")
    p.add_argument("--headroom", type=float, default=0.7, help="share of a core an instance or a shard may use")
    p.add_argument("--instance-memory-mib", type=float, default=2048.0, help="memory an instance may use")
    p.add_argument("--no-history", action="store_true", help="rooms keep no history (HISTORY_SIZE=0)")
    args = p.parse_args(argv)
    mix = Mix(
        args.members,
        args.messages_per_minute,
        args.storm_seconds,
        args.headroom,
        args.instance_memory_mib,
        history=not args.no_history,
    )
    cost = load_inputs(args.inputs)
    print(
        f"rooms of {mix.members}, {mix.messages_per_minute:g} messages a member a minute, reconnect storm "
        f"over {mix.storm_seconds:g} s, {mix.headroom:.0%} of a core per process, "
        f"{mix.instance_memory_mib:g} MiB an instance{'' if mix.history else ', no history'}"
    )
    print(table([plan(n, mix, cost) for n in args.connections]))


if __name__ == "__main__":
    main()
