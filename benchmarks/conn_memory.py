"""Where an idle member's bytes go: tracemalloc and live objects in a server holding N members.

    python -m benchmarks.conn_memory --conns 2000                     # MemoryBus
    python -m benchmarks.conn_memory --conns 2000 --redis-url redis://127.0.0.1:6395/0
    python -m benchmarks.conn_memory --conns 2000 --rss-only          # RSS, no tracing overhead

Starts the server in a child process (``serve`` below) with tracemalloc on, opens a warm-up
room, then N members (join, WebSocket, hello) in rooms of 200, lets them settle, and has the
server compare a snapshot taken after the warm-up with one taken while the N are held. Prints
the bytes per member by package and by allocation site, the live objects per member by type,
and (in every mode) the RSS growth per member. Only the server's own allocations are counted:
the clients run in this process.
"""

from __future__ import annotations

import argparse
import collections
import gc
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

import httpx
import trio
from trio_websocket import open_websocket_url

from . import probes
from .api import with_display_name

ROOM_SIZE = 200
SETTLE_SECONDS = 2.0
FRAMES = 8


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# The server side: chat's own entry point, with a snapshot on SIGUSR1.


def serve() -> None:
    from chat import __main__ as chat_main
    from chat.config import Settings

    trace = os.environ.get("CONN_MEMORY_TRACE") == "1"
    if trace:
        tracemalloc.start(FRAMES)
    out = os.environ["CONN_MEMORY_OUT"]
    settings = Settings.from_env()

    async def snapshots() -> None:
        count = 0
        with trio.open_signal_receiver(signal.SIGUSR1) as signals:
            async for _ in signals:
                gc.collect()
                types = collections.Counter(type(o).__qualname__ for o in gc.get_objects())
                # Blocking on purpose: the snapshot is of this moment, nothing else may run.
                Path(f"{out}.{count}.types.json").write_text(json.dumps(types))  # noqa: ASYNC240
                if trace:
                    tracemalloc.take_snapshot().dump(f"{out}.{count}.snap")
                Path(f"{out}.{count}.done").touch()  # noqa: ASYNC240
                count += 1

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(snapshots)
            await chat_main.serve(settings)
            nursery.cancel_scope.cancel()

    trio.run(main)


# The driver side.


async def open_members(base: str, count: int, held: trio.Nursery, done: trio.Event) -> float:
    """Open ``count`` members in rooms of ROOM_SIZE; they stay open until ``done``."""
    started = trio.current_time()
    gate = trio.Semaphore(64)  # members being opened at once
    async with httpx.AsyncClient(base_url=base, timeout=60) as http:
        room_ids: list[str] = []
        for index in range((count + ROOM_SIZE - 1) // ROOM_SIZE):
            created = await http.post("/rooms/", json={"owner_name": f"owner{index}", "max_users": ROOM_SIZE + 1})
            room_ids.append(created.raise_for_status().json()["room_id"])
        opened = trio.Semaphore(0)

        async def member(i: int) -> None:
            await gate.acquire()
            opening = True
            try:
                joined = await http.post(f"/rooms/{room_ids[i // ROOM_SIZE]}/join", json={"display_name": f"m{i}"})
                url = with_display_name(joined.raise_for_status().json()["ws_url"], f"m{i}")
                async with open_websocket_url(url) as ws:
                    await ws.get_message()  # hello
                    opening = False
                    gate.release()
                    opened.release()
                    await done.wait()
            finally:
                if opening:
                    gate.release()

        for i in range(count):
            held.start_soon(member, i)
        for _ in range(count):
            await opened.acquire()
    return trio.current_time() - started


def snapshot(server: subprocess.Popen[bytes], out: str, index: int) -> None:
    server.send_signal(signal.SIGUSR1)
    while not os.path.exists(f"{out}.{index}.done"):
        time.sleep(0.1)


def report(out: str, conns: int, trace: bool) -> dict[str, Any]:
    before = collections.Counter(json.load(open(f"{out}.0.types.json")))
    after = collections.Counter(json.load(open(f"{out}.1.types.json")))
    grown = {name: round((after[name] - before[name]) / conns, 2) for name in after}
    result: dict[str, Any] = {
        "objects_per_member": dict(sorted(((k, v) for k, v in grown.items() if v >= 0.5), key=lambda kv: -kv[1]))
    }
    if not trace:
        return result
    ignored = [tracemalloc.Filter(False, tracemalloc.__file__), tracemalloc.Filter(False, __file__)]
    first = tracemalloc.Snapshot.load(f"{out}.0.snap").filter_traces(ignored)
    second = tracemalloc.Snapshot.load(f"{out}.1.snap").filter_traces(ignored)
    by_owner: collections.Counter[str] = collections.Counter()
    for stat in second.compare_to(first, "traceback"):
        by_owner[_owner(stat.traceback)] += stat.size_diff
    result["traced_bytes_per_member"] = round(sum(by_owner.values()) / conns)
    result["bytes_per_member_by_owner"] = {k: round(v / conns) for k, v in by_owner.most_common(15)}
    result["bytes_per_member_by_site"] = [
        [round(stat.size_diff / conns), round(stat.count_diff / conns, 2), _where(stat)]
        for stat in second.compare_to(first, "traceback")[:30]
    ]
    return result


OWNERS = ("chat", "hypercorn", "quart_trio", "quart", "wsproto", "h11", "werkzeug", "redis", "trio_asyncio")


def _owner(traceback: tracemalloc.Traceback) -> str:
    """Whose code asked for the bytes: the innermost frame in our code or a web library's;
    otherwise (Trio, the standard library) the innermost frame's file."""
    for frame in reversed(traceback):
        parts = frame.filename.split("/")
        for owner in OWNERS:
            if owner in parts:
                return f"{owner} ({parts[-1]})"
    return "/".join(traceback[-1].filename.split("/")[-2:])


def _where(stat: tracemalloc.StatisticDiff) -> str:
    frames = [f"{'/'.join(f.filename.split('/')[-2:])}:{f.lineno}" for f in reversed(stat.traceback)]
    return " < ".join(frames[:5])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--conns", type=int, default=2000)
    parser.add_argument("--redis-url", default="")
    parser.add_argument("--rss-only", action="store_true", help="no tracemalloc: RSS and object counts only")
    args = parser.parse_args()
    port = free_port()
    out = os.path.join(tempfile.mkdtemp(prefix="conn-memory-"), "snap")
    env = {
        **os.environ,
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "LOG_LEVEL": "WARNING",
        "SECRET_KEY": "bench",
        "ROOMS_PER_MINUTE": "1000000",
        "JOINS_PER_MINUTE": "1000000",
        "CONN_MEMORY_OUT": out,
        "CONN_MEMORY_TRACE": "0" if args.rss_only else "1",
    }
    if args.redis_url:
        env["REDIS_URL"] = args.redis_url
    server = subprocess.Popen([sys.executable, "-m", "benchmarks.conn_memory", "serve"], env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(200):
            try:
                httpx.get(f"{base}/healthz", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.1)

        async def drive() -> dict[str, Any]:
            done = trio.Event()
            async with trio.open_nursery() as held:
                await open_members(base, 20, held, done)  # warm-up: first-use allocations
                await trio.sleep(SETTLE_SECONDS)
                await trio.to_thread.run_sync(snapshot, server, out, 0)
                rss_before = probes.rss_kib(server.pid)
                secs = await open_members(base, args.conns, held, done)
                await trio.sleep(SETTLE_SECONDS)
                rss_after = probes.rss_kib(server.pid)
                await trio.to_thread.run_sync(snapshot, server, out, 1)
                done.set()
            assert rss_before is not None and rss_after is not None
            return {"open_secs": round(secs, 2), "rss_kib_per_member": round((rss_after - rss_before) / args.conns, 1)}

        result = {"conns": args.conns, "bus": "redis" if args.redis_url else "memory", **trio.run(drive)}
        result |= report(out, args.conns, not args.rss_only)
        print(json.dumps(result, indent=1))
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(30)


if __name__ == "__main__":
    if sys.argv[1:] == ["serve"]:
        serve()
    else:
        main()
