"""Scenarios about what the server holds and how fast it admits: conns, idle, create."""

from __future__ import annotations

import argparse
import math
import time
from array import array

from . import api, probes
from .messaging import seats
from .pool import WorkerPool, percentiles
from .report import emit

# Gives the server time to finish the work the connects started (presence, subscriptions).
SETTLE_SECONDS = 2.0


def conns(args: argparse.Namespace) -> None:
    """N idle members over rooms of up to --max-users: connect time and server RSS per connection."""
    rooms_needed = math.ceil(args.conns / args.max_users)
    per_room = math.ceil(args.conns / rooms_needed)
    rss_before = probes.total_rss_kib(args.pids)
    rooms = api.create_rooms(args.urls, rooms_needed, seats(per_room), args.expiry)
    with WorkerPool(args.workers) as pool:
        with probes.CpuUse(args.pids) as servers, probes.CpuUse(args.redis_pids) as backends:
            joined = pool.connect(api.layout(rooms, args.urls, per_room, 0), args.parallel)
            time.sleep(SETTLE_SECONDS)
        rss_after = probes.total_rss_kib(args.pids)
        opened = sum(joined["connected"].values())
        grown = rss_after - rss_before if rss_after is not None and rss_before is not None else None
        emit(
            args,
            {
                "scenario": args.scenario,
                "conns": opened,
                "rooms": rooms_needed,
                "members_per_room": per_room,
                "connect_failures": joined["failed"],
                "errors": joined["errors"],
                "connect_secs": joined["connect_secs"],
                **percentiles(joined["connect_ms"], "connect_"),
                "rss_before_kib": rss_before,
                "rss_after_kib": rss_after,
                "kib_per_conn": round(grown / opened, 1) if grown is not None and opened else None,
                # Join + WebSocket + hello, and what settling them cost: the capacity model's opens.
                "server_cpu_ms_per_open": round(servers.total * 1000 / opened, 3) if servers.total and opened else None,
                "redis_cpu_ms_per_1000_opens": round(backends.total * 1e6 / opened, 2)
                if backends.total is not None and backends.each and opened
                else None,
            },
        )


def idle(args: argparse.Namespace) -> None:
    """Quiet rooms of two: what the server burns and what it holds open in Redis while nobody talks."""
    redis_before = probes.redis_clients(args.redis_url) if args.redis_url else None
    rooms = api.create_rooms(args.urls, args.rooms, seats(2), args.expiry)
    with WorkerPool(args.workers) as pool:
        joined = pool.connect(api.layout(rooms, args.urls, 2, 0), args.parallel)
        time.sleep(SETTLE_SECONDS)
        window = probes.CpuWindow(args.pids)
        window.start()
        time.sleep(args.secs)
        cpu = window.stop()
        redis_during = probes.redis_clients(args.redis_url) if args.redis_url else None
        emit(
            args,
            {
                "scenario": "idle",
                "rooms": args.rooms,
                "members": 2,
                "secs": args.secs,
                "conns": sum(joined["connected"].values()),
                "connect_failures": joined["failed"],
                "server_cpu_percent": cpu,
                "redis_clients_before": redis_before,
                "redis_clients_during": redis_during,
            },
        )


def create(args: argparse.Namespace) -> None:
    """POST /rooms/ from ``clients`` concurrent clients for ``secs``: rooms per second and latency."""
    workers = min(args.workers, args.clients)
    shares = [args.clients // workers + (1 if k < args.clients % workers else 0) for k in range(workers)]
    offsets = [sum(shares[:k]) for k in range(workers)]
    first_index = int(time.time() * 1000) % 1_000_000
    with WorkerPool(workers) as pool:
        start_at = time.time() + 0.5
        replies = pool.command(
            [
                {
                    "op": "create",
                    "urls": args.urls,
                    "clients": share,
                    "client_offset": offset,
                    "start_at": start_at,
                    "secs": args.secs,
                    "expiry": args.create_expiry,
                    "first_index": first_index,
                }
                for share, offset in zip(shares, offsets, strict=True)
            ],
            args.secs + 30,
        )
    latencies = array("d")
    errors: dict[str, int] = {}
    for reply in replies:
        latencies.frombytes(reply["latencies"])
        for key, count in reply["errors"].items():
            errors[key] = errors.get(key, 0) + count
    secs = max(r["secs"] for r in replies)
    emit(
        args,
        {
            "scenario": "create",
            "clients": args.clients,
            "secs": args.secs,
            "created": len(latencies),
            "rooms_per_s": round(len(latencies) / secs, 1),
            "errors": errors,
            **percentiles(latencies),
        },
    )
