"""``python -m benchmarks SCENARIO [options]``: run one scenario, print one JSON line per result."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable

from . import capacity, messaging, resume, storm
from .api import ApiError
from .pool import WorkerError

SCENARIOS: dict[str, Callable[[argparse.Namespace], None]] = {
    "fanout": messaging.fanout,
    # Many small rooms (the capacity model's traffic): fanout's measurement under its own name.
    "rooms": messaging.fanout,
    "ramp": messaging.ramp,
    "slow": messaging.slow,
    "conns": capacity.conns,
    # Opening members in rooms of --max-users (the capacity model's rooms of 10, say): conns'
    # measurement under its own name, as each arrival's presence goes to that many others.
    "opens": capacity.conns,
    "idle": capacity.idle,
    # A reconnect storm: members joined beforehand all dial at once.
    "storm": storm.storm,
    "create": capacity.create,
    "resume": resume.resume,
}
# Keeps a mistyped option from turning the shared machine into a load test of itself.
MAX_CONNECTIONS = 20_000
MAX_SECONDS = 600.0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    p.add_argument("scenario", choices=sorted(SCENARIOS))
    p.add_argument("--urls", default="http://127.0.0.1:8000", help="comma-separated base URLs, members spread over")
    p.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1), help="load-generating processes")
    p.add_argument("--label", default="", help="tag copied into every result line (e.g. the target's name)")
    p.add_argument("--extra", default="", help="JSON object merged into every result line")
    p.add_argument("--pids", default="", help="comma-separated server pids for RSS and CPU readings")
    p.add_argument("--redis-pids", default="", help="comma-separated redis-server pids for their CPU readings")
    p.add_argument("--redis-url", default="", help="the server's Redis, for the client count of `idle`")
    p.add_argument("--parallel", type=int, default=8, help="joins+connects in flight per worker")
    p.add_argument("--expiry", type=int, default=900, help="expiry_seconds of the rooms a scenario creates")
    traffic = p.add_argument_group("fanout / ramp / slow")
    traffic.add_argument("--rooms", type=int, default=10)
    traffic.add_argument("--members", type=int, default=20, help="members per room, senders included")
    traffic.add_argument("--senders", type=int, default=1, help="senders per room (the owner first)")
    traffic.add_argument("--rate", type=float, default=10.0, help="messages per second per sender")
    traffic.add_argument("--secs", type=float, default=10.0, help="measured window")
    traffic.add_argument("--warmup", type=float, default=2.0, help="unmeasured traffic before the window")
    traffic.add_argument("--drain", type=float, default=2.0, help="wait for late deliveries after the window")
    traffic.add_argument("--lockstep", action="store_true", help="all senders tick at once, like loadgen.js")
    traffic.add_argument("--pad", type=int, default=16_000, help="slow: bytes of padding per message")
    traffic.add_argument("--start", type=float, default=20.0, help="ramp: first rate")
    traffic.add_argument("--factor", type=float, default=1.5, help="ramp: rate growth per step")
    traffic.add_argument("--p99", type=float, default=250.0, help="ramp: p99 latency limit in ms")
    traffic.add_argument("--max-steps", type=int, default=20, help="ramp: steps at most")
    footprint = p.add_argument_group("conns / idle / create")
    footprint.add_argument("--conns", type=int, default=2000)
    footprint.add_argument("--max-users", type=int, default=200, help="conns: members per room at most")
    footprint.add_argument("--clients", type=int, default=20, help="create: concurrent clients")
    footprint.add_argument("--create-expiry", type=int, default=60, help="create: expiry_seconds of each room")
    back = p.add_argument_group("resume")
    back.add_argument("--backlog", type=int, default=50, help="messages each resume gets replayed")
    back.add_argument("--resumes", type=int, default=300, help="resumes (and newcomers) measured, one after another")
    back.add_argument("--history-size", type=int, default=50, help="the server's HISTORY_SIZE")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    args.urls = [u.strip().rstrip("/") for u in args.urls.split(",") if u.strip()]
    args.pids = [int(p) for p in args.pids.split(",") if p.strip()]
    args.redis_pids = [int(p) for p in args.redis_pids.split(",") if p.strip()]
    if args.scenario != "slow":
        args.pad = 0
    if args.scenario == "slow":
        args.rooms = 1
    held = {"conns": args.conns, "opens": args.conns, "storm": args.conns, "idle": 2 * args.rooms}
    connections = held.get(args.scenario, args.rooms * args.members)
    if connections > MAX_CONNECTIONS or args.secs > MAX_SECONDS or args.workers < 1:
        print(
            f"refusing: at most {MAX_CONNECTIONS} connections, {MAX_SECONDS:.0f} s, and one worker or more",
            file=sys.stderr,
        )
        return 2
    if args.senders > args.members:
        print("--senders cannot exceed --members", file=sys.stderr)
        return 2
    try:
        SCENARIOS[args.scenario](args)
    except (ApiError, WorkerError, OSError) as exc:
        print(f"{args.scenario} failed: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
