"""``storm``: N members whose tokens are already issued dial their sockets all at once.

What an instance faces when it restarts and every phone that was on it comes back together.
The members are REST-joined first (unmeasured, 32 at a time); then ``--workers`` processes
dial their shares of the sockets at one wall-clock instant, every dial in flight at once.
Reported: the time from that instant until the last hello (``storm_secs``), each member's
time to its hello, and every failure by kind; the server's CPU per member back (the diallers
hold their sockets for a moment after the last hello, then close them).
"""

from __future__ import annotations

import argparse
import math
import multiprocessing
import time
from array import array
from collections import Counter
from multiprocessing.connection import Connection

import httpx
import trio
from trio_websocket import ConnectionClosed, open_websocket_url

from . import api, probes
from .messaging import seats
from .pool import percentiles
from .report import emit
from .worker import raise_fd_limit

# A dial that has no hello by then counts as failed: a phone would have given up and retried.
HELLO_WITHIN_SECONDS = 60.0
JOINS_IN_FLIGHT = 32
SETTLE_SECONDS = 2.0


async def _join_all(rooms: list[api.Room], urls: list[str], per_room: int) -> list[str]:
    specs = api.layout(rooms, urls, per_room, 0)
    dial: list[str] = []
    limit = trio.Semaphore(JOINS_IN_FLIGHT)
    async with httpx.AsyncClient(timeout=api.REST_TIMEOUT_SECONDS) as http:

        async def one(spec: api.MemberSpec) -> None:
            async with limit:
                ws_url = spec.ws_url or await api.join(http, spec)
                dial.append(api.with_display_name(ws_url, spec.name))

        async with trio.open_nursery() as nursery:
            for spec in specs:
                nursery.start_soon(one, spec)
    return dial


async def _dial_all(urls: list[str], start_at: float, pipe: Connection) -> None:
    """Dial every url at ``start_at``; once each is back or failed, report to the parent and
    hold the sockets until it says every dialler is done: an owner's socket closed early
    would end its room under members still dialling from another process."""
    release = trio.Event()
    hello_ms = array("d")
    failures: Counter[str] = Counter()
    settled = trio.Event()

    def tally() -> None:
        if len(hello_ms) + sum(failures.values()) == len(urls):
            settled.set()

    await trio.sleep(max(0.0, start_at - time.time()))
    started = time.perf_counter()

    async def one(url: str) -> None:
        counted = False
        try:
            async with open_websocket_url(url, connect_timeout=HELLO_WITHIN_SECONDS, disconnect_timeout=1) as ws:
                with trio.fail_after(HELLO_WITHIN_SECONDS):
                    hello = await ws.get_message()
                counted = True
                if "Connected to room" in hello:
                    hello_ms.append((time.perf_counter() - started) * 1000.0)
                else:
                    failures[f"first frame not the hello: {str(hello)[:100]}"] += 1
                tally()
                await release.wait()  # Held until everyone is back or failed.
        except Exception as exc:  # Refused, reset, timed out: counted by kind, once.
            if not counted:
                kind = type(exc).__name__
                if isinstance(exc, ConnectionClosed):
                    kind += f" {exc.reason.code} {exc.reason.reason or ''}".rstrip()
                failures[kind] += 1
                tally()

    async with trio.open_nursery() as nursery:
        for url in urls:
            nursery.start_soon(one, url)
        await settled.wait()  # Everyone back, or failed.
        last = max(hello_ms, default=0.0)
        pipe.send({"hello_ms": hello_ms.tobytes(), "failures": dict(failures), "last_ms": last})
        await trio.to_thread.run_sync(pipe.recv)
        release.set()


def _dialler(pipe: Connection, urls: list[str], start_at: float) -> None:
    raise_fd_limit()
    trio.run(_dial_all, urls, start_at, pipe)


def storm(args: argparse.Namespace) -> None:
    rooms_needed = math.ceil(args.conns / args.max_users)
    per_room = math.ceil(args.conns / rooms_needed)
    rooms = api.create_rooms(args.urls, rooms_needed, seats(per_room), args.expiry)
    dial = trio.run(_join_all, rooms, args.urls, per_room)
    context = multiprocessing.get_context("spawn")
    start_at = time.time() + 3.0  # every dialler has started well before this instant
    pipes, processes = [], []
    for k in range(args.workers):
        parent_end, child_end = context.Pipe()
        process = context.Process(target=_dialler, args=(child_end, dial[k :: args.workers], start_at), daemon=True)
        process.start()
        pipes.append(parent_end)
        processes.append(process)
    with probes.CpuUse(args.pids) as servers:
        replies = [pipe.recv() for pipe in pipes]
        time.sleep(SETTLE_SECONDS)  # Everyone is back or failed: held a moment, then let go.
    for pipe in pipes:
        pipe.send("release")
    for process in processes:
        process.join(30)
    hello_ms = array("d")
    failures: Counter[str] = Counter()
    for reply in replies:
        hello_ms.frombytes(reply["hello_ms"])
        failures.update(reply["failures"])
    back = len(hello_ms)
    emit(
        args,
        {
            "scenario": "storm",
            "conns": len(dial),
            "back": back,
            "failures": dict(failures),
            "rooms": rooms_needed,
            "members_per_room": per_room,
            "storm_secs": round(max(r["last_ms"] for r in replies) / 1000.0, 2),
            **percentiles(hello_ms, "hello_"),
            "server_cpu_ms_per_member": round(servers.total * 1000 / back, 3) if servers.total and back else None,
        },
    )
