"""Scenarios that push messages through rooms: fanout, ramp, slow."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from . import api, probes
from .pool import WorkerPool, delivery, per_second
from .report import emit

# The server's ceiling on max_users; rooms never ask for more.
MAX_USERS_LIMIT = 1000
WARMUP_DRAIN_SECONDS = 1.0


def seats(members: int) -> int:
    return min(MAX_USERS_LIMIT, max(members + 5, 20))


def fanout(args: argparse.Namespace) -> None:
    rooms = api.create_rooms(args.urls, args.rooms, seats(args.members), args.expiry)
    with WorkerPool(args.workers) as pool:
        joined = pool.connect(api.layout(rooms, args.urls, args.members, args.senders), args.parallel)
        pool.run(phase=0, secs=args.warmup, rate=args.rate, drain=WARMUP_DRAIN_SECONDS, lockstep=args.lockstep)
        with probes.CpuUse(args.pids) as servers, probes.CpuUse(args.redis_pids) as backends:
            replies = pool.run(phase=1, secs=args.secs, rate=args.rate, drain=args.drain, lockstep=args.lockstep)
        result = delivery(replies, joined["connected"], args.secs)
        emit(
            args,
            {
                "scenario": args.scenario,
                "rooms": args.rooms,
                "members": args.members,
                "senders": args.senders,
                "rate": args.rate,
                "secs": args.secs,
                "connect_failures": joined["failed"],
                **result,
                **cpu_costs(servers, backends, result),
            },
        )


def cpu_costs(servers: probes.CpuUse, backends: probes.CpuUse, result: dict[str, Any]) -> dict[str, Any]:
    """The unit costs the capacity model takes (docs/scaling.md): CPU per 1,000 deliveries and messages."""

    def per_thousand(seconds: float | None, count: int) -> float | None:
        return round(seconds * 1e6 / count, 2) if seconds is not None and count else None

    return {
        "server_cpu_seconds": servers.total,
        "server_cpu_ms_per_1000_deliveries": per_thousand(servers.total, result["received"]),
        # One reading per Redis process (a cluster's masters): how evenly the rooms spread.
        "redis_cpu_seconds": backends.each,
        "redis_cpu_ms_per_1000_messages": per_thousand(backends.total, result["sent"]),
    }


def ramp(args: argparse.Namespace) -> None:
    """Grows the rate until p99 reaches the limit or a delivery goes missing; reports the last good step."""
    rooms = api.create_rooms(args.urls, args.rooms, seats(args.members), args.expiry)
    rate = args.start
    best: dict[str, Any] | None = None
    steps = []
    with WorkerPool(args.workers) as pool:
        joined = pool.connect(api.layout(rooms, args.urls, args.members, args.senders), args.parallel)
        pool.run(phase=0, secs=args.warmup, rate=rate, drain=WARMUP_DRAIN_SECONDS, lockstep=args.lockstep)
        for step in range(1, args.max_steps + 1):
            replies = pool.run(phase=step, secs=args.secs, rate=rate, drain=args.drain, lockstep=args.lockstep)
            result = {"rate": rate, **delivery(replies, joined["connected"], args.secs)}
            steps.append({k: result[k] for k in ("rate", "delivered_per_s", "loss", "p50_ms", "p99_ms")})
            print(f"ramp step {step}: {steps[-1]}", file=sys.stderr, flush=True)
            if result["loss"] > 0 or result["p99_ms"] is None or result["p99_ms"] >= args.p99:
                break
            best = result
            rate = round(rate * args.factor, 2)
    emit(
        args,
        {
            "scenario": "ramp",
            "rooms": args.rooms,
            "members": args.members,
            "senders": args.senders,
            "p99_limit_ms": args.p99,
            "connect_failures": joined["failed"],
            "best": best,
            "steps": steps,
        },
    )


def slow(args: argparse.Namespace) -> None:
    """One member stops reading; do the others keep getting every message, on time?"""
    rooms = api.create_rooms(args.urls, 1, seats(args.members), args.expiry)
    specs = api.layout(rooms, args.urls, args.members, 1, stall_member=1)
    stalled_name = next(s.name for s in specs if s.stall)
    rss_before = probes.total_rss_kib(args.pids)
    with WorkerPool(args.workers) as pool:
        joined = pool.connect(specs, args.parallel)
        healthy = {room: count - 1 for room, count in joined["connected"].items()}
        with probes.RssSampler(args.pids) as rss:
            replies = pool.run(
                phase=1, secs=args.secs, rate=args.rate, pad=args.pad, drain=args.drain, lockstep=args.lockstep
            )
        rss_after = probes.total_rss_kib(args.pids)
        closing = pool.finish()
    offline_at = [at for r in replies for name, at in r["offline"] if name == stalled_name]
    stalled = [s for r in closing for s in r["stalled"]]
    result = delivery(replies, healthy, args.secs)
    emit(
        args,
        {
            "scenario": "slow",
            "members": args.members,
            "rate": args.rate,
            "secs": args.secs,
            "pad": args.pad,
            "connect_failures": joined["failed"],
            "sent": result["sent"],
            "healthy_expected": result["expected"],
            "healthy_received": result["received"],
            "healthy_delivery_ratio": round(result["received"] / result["expected"], 4) if result["expected"] else None,
            "duplicates": result["duplicates"],
            "out_of_order": result["out_of_order"],
            **{k: result[k] for k in ("p50_ms", "p90_ms", "p99_ms", "max_ms")},
            "healthy_per_second": per_second(replies),
            # Seen by the healthy members as user_offline, so it needs no cooperation from the stalled socket.
            "stalled_offline_after_s": round(min(offline_at), 2) if offline_at else None,
            "stalled": stalled[0] if stalled else None,
            "server_rss_kib": {"before": rss_before, "max": max(rss.samples, default=None), "after": rss_after},
            "error_frames": result["error_frames"],
            "disconnected_during_run": result["disconnected_during_run"],
            "client_cpu_percent_max": result["client_cpu_percent_max"],
        },
    )
