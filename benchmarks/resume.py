"""``resume``: how long a client that comes back waits for what it missed.

A room gets ``backlog`` + 10 messages; then one member reconnects ``resumes`` times in a row
with ``since`` = the newest offset - ``backlog`` (and, for comparison, enters afresh as a
newcomer, who gets the room's last messages). Each time is measured from dialling the socket
to holding the last replayed message: the hello, the history read and the replay, end to end.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import httpx
import orjson
import trio
from trio_websocket import open_websocket_url

from .api import REST_TIMEOUT_SECONDS, room_body, with_display_name
from .pool import percentiles
from .report import emit

# Sent after the backlog, so the resumed range sits in the middle of what the room keeps.
TAIL_MESSAGES = 10


async def _fill(ws_url: str, count: int) -> tuple[str, int]:
    """Post ``count`` messages, each acknowledged before the next: the epoch and newest offset."""
    async with open_websocket_url(ws_url) as ws:
        hello = orjson.loads(await ws.get_message())
        offset = 0
        for i in range(count):
            await ws.send_message(orjson.dumps({"type": "message", "text": f"m{i}", "client_id": f"f{i}"}).decode())
            while (frame := orjson.loads(await ws.get_message()))["type"] != "ack":
                pass
            offset = frame["offset"]
        return hello["epoch"], offset


async def _timed_entry(url: str, replayed: int) -> tuple[float, dict[str, Any]]:
    """Milliseconds from dialling ``url`` to the ``replayed``-th replayed message, and the hello."""
    started = time.perf_counter()
    async with open_websocket_url(url) as ws:
        hello = orjson.loads(await ws.get_message())
        got = 0
        while got < replayed:
            if orjson.loads(await ws.get_message()).get("replayed"):
                got += 1
        elapsed = (time.perf_counter() - started) * 1000
    return elapsed, hello


async def _run(args: argparse.Namespace) -> dict[str, Any]:
    base = args.urls[0]
    async with httpx.AsyncClient(timeout=REST_TIMEOUT_SECONDS) as http:
        body = room_body(0, 20, args.expiry) | {"preferences": {"destroy_on_owner_offline": False}}
        created = (await http.post(f"{base}/rooms/", json=body)).json()
        joined = (await http.post(f"{base}/rooms/{created['room_id']}/join", json={"display_name": "back"})).json()
    epoch, newest = await _fill(created["ws_url"], args.backlog + TAIL_MESSAGES)
    member_url = with_display_name(joined["ws_url"], "back")
    resumed, newcomer = [], []
    with trio.fail_after(args.secs + 60):
        for _ in range(args.resumes):
            since = newest - args.backlog
            elapsed, hello = await _timed_entry(f"{member_url}&since={since}&epoch={epoch}", args.backlog)
            if hello.get("recovered") is not True:
                raise RuntimeError(f"resume not recovered: {hello}")
            resumed.append(elapsed)
        for _ in range(args.resumes):
            elapsed, _hello = await _timed_entry(member_url, min(args.backlog, args.history_size))
            newcomer.append(elapsed)
    return {
        "scenario": "resume",
        "backlog": args.backlog,
        "resumes": args.resumes,
        **percentiles(resumed, "resume_"),
        **percentiles(newcomer, "newcomer_"),
    }


def resume(args: argparse.Namespace) -> None:
    emit(args, trio.run(_run, args))
