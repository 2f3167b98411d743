"""``python -m benchmarks.bus_trip [--redis-url URL]``: a frame's trip through the bus, in process.

Publishes one frame (or a burst) into a room and waits until the room's subscription holds it,
again and again, on MemoryBus and (given a Redis) on RedisBus: what the bus alone adds to every
delivery, without sockets or a load generator. One JSON line per backend and burst size.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import trio
import trio_asyncio

from chat.bus import Bus
from chat.bus.memory import MemoryBus
from chat.bus.redis import RedisBus

FRAME = '{"type":"message","text":"' + "x" * 100 + '"}'


async def trips(bus: Bus, count: int, burst: int) -> list[float]:
    seconds: list[float] = []
    async with trio.open_nursery() as nursery:
        await nursery.start(bus.run)
        async with bus.subscribe("bench-room") as frames:
            for _ in range(count):
                started = time.perf_counter()
                for _ in range(burst):
                    await bus.publish("bench-room", FRAME)
                for _ in range(burst):
                    await frames.receive()
                seconds.append(time.perf_counter() - started)
        nursery.cancel_scope.cancel()
    return seconds


@asynccontextmanager
async def memory_bus() -> AsyncIterator[Bus]:
    yield MemoryBus()


def redis_bus(url: str) -> Callable[[], AbstractAsyncContextManager[Bus]]:
    @asynccontextmanager
    async def opened() -> AsyncIterator[Bus]:
        async with trio_asyncio.open_loop() as loop:
            yield RedisBus(url, loop=loop)

    return opened


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


async def run(args: argparse.Namespace) -> None:
    backends: dict[str, Callable[[], AbstractAsyncContextManager[Bus]]] = {"memory": memory_bus}
    if args.redis_url:
        backends["redis"] = redis_bus(args.redis_url)
    for name, open_bus in backends.items():
        for burst in (1, 10):
            async with open_bus() as bus:
                await trips(bus, 100, burst)  # warm-up
                seconds = await trips(bus, args.count, burst)
            ms = [s * 1000 for s in seconds]
            result = {"scenario": "bus_trip", "backend": name, "burst": burst, "trips": args.count}
            result |= {f"p{p}_ms": round(percentile(ms, p), 3) for p in (50, 90, 99)}
            print(json.dumps(result), flush=True)


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.bus_trip", description=__doc__)
    p.add_argument("--redis-url", default="", help="a Redis to measure RedisBus on (a scratch database)")
    p.add_argument("--count", type=int, default=2000, help="trips per backend and burst size")
    trio.run(run, p.parse_args())


if __name__ == "__main__":
    main()
