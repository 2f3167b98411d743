"""``python -m benchmarks.history_cost [--count N]``: what history costs Redis's CPU.

Sends N chat messages into one room through a RedisBus against a private redis-server
(started here on a free loopback port, persistence off, stopped at the end), three ways:
plain PUBLISH (the path without positions), and the POST script with HISTORY_SIZE=50 and
with HISTORY_SIZE=0 (offsets only). The room has one subscription on the same bus, so
Redis delivers every frame as it does for an instance with members. Two pacings: a burst
(everything queued at once; the publisher pipelines up to 512 a batch) and lockstep (the
next message only once the previous one came back: one command a batch, as a quiet room
sends). Redis CPU is used_cpu_sys + used_cpu_user of ``INFO cpu`` before and after; one
JSON line per reading, Redis CPU ms per 1,000 messages, then one with the median of the
repetitions (the modes alternate within each, as the machine's load drifts).
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Callable

import redis
import trio
import trio_asyncio

from chat import clock, protocol
from chat.bus import RoomRecord
from chat.bus.redis import RedisBus

ROOM_ID = "Zq3x_9-AbCdEfGhIjKlM"
MODES = ("publish", "post-history-50", "post-history-0")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def redis_cpu_seconds(client: redis.Redis) -> float:
    cpu = client.info("cpu")
    return float(cpu["used_cpu_sys"]) + float(cpu["used_cpu_user"])


def message(i: int) -> str:
    """A chat message as the server builds one (about 220 bytes), without its offset."""
    return protocol.chat_message(ROOM_ID, "c0ffee12345678", "Ann", f"message number {i}, a short line of chat")


async def send(bus: RedisBus, mode: str, i: int) -> None:
    if mode == "publish":
        await bus.publish(ROOM_ID, message(i))
    else:
        await bus.post(ROOM_ID, message(i))


async def measure(url: str, mode: str, count: int, lockstep: bool) -> dict[str, object]:
    history_size = 0 if mode.endswith("-0") else 50
    client = redis.Redis.from_url(url, decode_responses=True)
    async with trio_asyncio.open_loop() as loop, trio.open_nursery() as nursery:
        bus = RedisBus(url, loop=loop, history_size=history_size)
        await nursery.start(bus.run)
        now = clock.now()
        await bus.create_room(RoomRecord(ROOM_ID, None, "Ann", None, 20, now, now + 3600))
        async with bus.subscribe(ROOM_ID) as frames:

            async def run(n: int, first: int) -> None:
                if lockstep:
                    for i in range(first, first + n):
                        await send(bus, mode, i)
                        await frames.receive()
                    return
                async with trio.open_nursery() as senders:

                    async def queue_all() -> None:
                        for i in range(first, first + n):
                            await send(bus, mode, i)

                    senders.start_soon(queue_all)
                    for _ in range(n):
                        await frames.receive()

            await run(min(1000, count), 0)  # Warm-up: connections, script cache, stream nodes.
            client.config_resetstat()
            cpu_before, started = redis_cpu_seconds(client), time.perf_counter()
            await run(count, 1000)
            cpu_after, seconds = redis_cpu_seconds(client), time.perf_counter() - started
            # The command's own time, without reading and writing sockets: less noisy.
            command = client.info("commandstats")["cmdstat_" + ("publish" if mode == "publish" else "evalsha")]
        nursery.cancel_scope.cancel()
    client.close()
    return {
        "scenario": "history_cost",
        "mode": mode,
        "pacing": "lockstep" if lockstep else "burst",
        "messages": count,
        "redis_cpu_ms_per_1000": round((cpu_after - cpu_before) * 1000 / count * 1000, 2),
        "command_ms_per_1000": round(int(command["usec"]) / count, 2),
        "messages_per_second": round(count / seconds),
    }


async def with_redis(work: Callable[[str], Awaitable[None]]) -> None:
    port = free_port()
    server = await trio.lowlevel.open_process(
        [shutil.which("redis-server") or "redis-server", "--port", str(port), "--bind", "127.0.0.1",
         "--save", "", "--appendonly", "no", "--dir", tempfile.gettempdir()],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        url = f"redis://127.0.0.1:{port}/0"
        probe = redis.Redis.from_url(url)
        for _ in range(100):
            try:
                probe.ping()
                break
            except redis.ConnectionError:
                await trio.sleep(0.05)
        probe.close()
        await work(url)
    finally:
        server.terminate()
        with trio.CancelScope(shield=True):
            await server.wait()


async def main_async(args: argparse.Namespace) -> None:
    readings: dict[tuple[str, bool], list[float]] = {}
    commands: dict[tuple[str, bool], list[float]] = {}
    for _ in range(args.repeat):
        for lockstep in (False, True):
            for mode in MODES:

                async def one(url: str, mode: str = mode, lockstep: bool = lockstep) -> None:
                    result = await measure(url, mode, args.count, lockstep)
                    print(json.dumps(result), flush=True)
                    readings.setdefault((mode, lockstep), []).append(float(result["redis_cpu_ms_per_1000"]))
                    commands.setdefault((mode, lockstep), []).append(float(result["command_ms_per_1000"]))

                await with_redis(one)  # A fresh server each: no reading inherits another's keys.
    for (mode, lockstep), values in readings.items():
        summary = {"scenario": "history_cost", "mode": mode, "pacing": "lockstep" if lockstep else "burst"}
        summary |= {"messages": args.count, "median_redis_cpu_ms_per_1000": statistics.median(values), "all": values}
        summary["median_command_ms_per_1000"] = statistics.median(commands[mode, lockstep])
        print(json.dumps(summary), flush=True)


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.history_cost", description=__doc__)
    p.add_argument("--count", type=int, default=20_000, help="messages per reading (at most 200,000)")
    p.add_argument("--repeat", type=int, default=3, help="repetitions (at most 10)")
    args = p.parse_args()
    args.repeat = max(1, min(args.repeat, 10))
    args.count = max(1, min(args.count, 200_000))
    trio.run(main_async, args)


if __name__ == "__main__":
    main()
