"""``python -m benchmarks.batch_cost --redis-url URL``: what a room creation's Redis step costs, in process.

RedisBus sends requests' commands in batches (``chat/bus/batches.py``): concurrent requests
share one round trip and one crossing to asyncio. A creation's Redis CPU is therefore a share
of a batch's fixed cost plus a job's own. Here ``conc`` tasks create rooms back to back
through ``RedisBus.count_and_create`` (no HTTP), and each line gives, per room and per batch,
this process's CPU and Redis's (from INFO), and the rooms a batch carried (Redis's reads).

Then the primitives that fixed cost is made of, each timed on trio-asyncio and on a plain
asyncio loop: a Trio task waking an asyncio task that wakes it back (the handoff to the
sender), and a read of data already sent to a stream (the sender's wait for Redis's answer).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any

import redis
import trio
import trio_asyncio

from chat import clock
from chat.bus import RoomRecord
from chat.bus.redis import RedisBus

from .history_cost import redis_cpu_seconds

ROUNDS = 20_000  # of each primitive


def redis_counters(client: redis.Redis) -> tuple[float, int]:
    """Redis's CPU seconds so far, and the reads it has processed (one per batch)."""
    return redis_cpu_seconds(client), int(client.info("stats")["total_reads_processed"])


async def create_rooms(bus: RedisBus, count: int) -> None:
    for _ in range(count):
        now = clock.now()
        room = RoomRecord(secrets.token_hex(8), None, "bench", None, 20, now, now + 60)
        await bus.count_and_create("bench-batch-cost", 60, room, 10**9)


async def creations(url: str, rooms: int, concurrency: list[int]) -> None:
    client = redis.Redis.from_url(url)
    async with trio_asyncio.open_loop() as loop, trio.open_nursery() as nursery:
        bus = RedisBus(url, loop=loop)
        await nursery.start(bus.run)
        await create_rooms(bus, 200)  # warm-up: scripts loaded, connections open
        for conc in concurrency:
            count = rooms // conc * conc
            redis_before, reads_before = redis_counters(client)
            cpu_before = time.process_time()
            async with trio.open_nursery() as creators:
                for _ in range(conc):
                    creators.start_soon(create_rooms, bus, count // conc)
            cpu = time.process_time() - cpu_before
            redis_after, reads_after = redis_counters(client)
            batches = max(1, reads_after - reads_before - 1)  # less INFO's own read
            result = {
                "scenario": "batch_cost",
                "conc": conc,
                "rooms": count,
                "rooms_per_batch": round(count / batches, 2),
                "server_us_per_room": round(cpu / count * 1e6, 1),
                "server_us_per_batch": round(cpu / batches * 1e6, 1),
                "redis_us_per_room": round((redis_after - redis_before) / count * 1e6, 1),
            }
            print(json.dumps(result), flush=True)
        nursery.cancel_scope.cancel()
    client.close()


class Relay:
    """A Trio task and an asyncio task waking each other in turn, as the gatherer hands the
    sender a batch and the sender tells the jobs they are answered."""

    def __init__(self) -> None:
        self.ready = trio.Event()
        self.answered = trio.Event()
        self.handoff: asyncio.Future[None] | None = None

    async def sender(self) -> None:
        loop = asyncio.get_running_loop()
        for _ in range(ROUNDS):
            self.handoff = loop.create_future()
            self.ready.set()
            await self.handoff
            self.answered.set()

    async def gatherer(self) -> None:
        for _ in range(ROUNDS):
            await self.ready.wait()
            self.ready, self.answered = trio.Event(), trio.Event()
            assert self.handoff is not None
            self.handoff.set_result(None)
            await self.answered.wait()


async def stream_reads() -> float:
    """CPU per read of a byte already written to the other end, through asyncio streams."""
    ours, theirs = socket.socketpair()
    reader, writer = await asyncio.open_connection(sock=ours)
    started = time.process_time()
    for _ in range(ROUNDS):
        theirs.send(b"x")
        await reader.read(100)
    seconds = time.process_time() - started
    writer.close()
    theirs.close()
    return seconds / ROUNDS


async def plain_wakeups() -> float:
    """The relay's asyncio half on a plain loop: a future resolved by a callback, awaited."""
    loop = asyncio.get_running_loop()
    started = time.process_time()
    for _ in range(ROUNDS):
        future = loop.create_future()
        loop.call_soon(future.set_result, None)
        await future
    return (time.process_time() - started) / ROUNDS


def on_plain_asyncio(work: Callable[[], Awaitable[float]]) -> float:
    loop = asyncio.SelectorEventLoop()  # not the policy's: trio-asyncio installs its own
    try:
        return loop.run_until_complete(work())
    finally:
        loop.close()


async def on_trio_asyncio() -> tuple[float, float]:
    async with trio_asyncio.open_loop():
        relay = Relay()
        started = time.process_time()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(relay.gatherer)
            await trio_asyncio.aio_as_trio(relay.sender)()
        handoff = (time.process_time() - started) / ROUNDS
        return handoff, await trio_asyncio.aio_as_trio(stream_reads)()


def primitives() -> None:
    handoff, read = trio.run(on_trio_asyncio)
    results: list[dict[str, Any]] = [
        {"primitive": "trio_to_asyncio_and_back", "loop": "trio-asyncio", "us": handoff},
        {"primitive": "future_wakeup", "loop": "asyncio", "us": on_plain_asyncio(plain_wakeups)},
        {"primitive": "stream_read", "loop": "trio-asyncio", "us": read},
        {"primitive": "stream_read", "loop": "asyncio", "us": on_plain_asyncio(stream_reads)},
    ]
    for result in results:
        result["us"] = round(result["us"] * 1e6, 1)
        print(json.dumps({"scenario": "batch_cost_primitive"} | result), flush=True)


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.batch_cost", description=__doc__)
    p.add_argument("--redis-url", required=True, help="a Redis to create rooms in (a scratch database)")
    p.add_argument("--rooms", type=int, default=8000, help="rooms created at each concurrency")
    p.add_argument("--conc", default="1,2,4,8,16,64", help="concurrent creators, comma-separated")
    args = p.parse_args()
    trio.run(creations, args.redis_url, args.rooms, [int(c) for c in args.conc.split(",")])
    primitives()


if __name__ == "__main__":
    main()
