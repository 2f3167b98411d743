"""``python -m benchmarks.entry_cost --redis-url URL``: what a socket's entry costs on RedisBus.

Opens members one after another in one room as a client does, the backend's part only: the
REST join (``Rooms.join``, counted as the client's), then the socket's seat (``Rooms.admit``)
and the history unless the seat brought it; reports the wall and CPU time per member, without
sockets or a load generator. Every Redis round
trip through trio-asyncio costs hundreds of microseconds of CPU here, so this counts them.
Runs from any checkout of the repository, older ones included, so two commits can be compared.
"""

from __future__ import annotations

import argparse
import json
import time

import trio
import trio_asyncio

from chat.bus.redis import RedisBus
from chat.config import Settings
from chat.rooms import NewRoom, Rooms


async def enter_many(url: str, count: int) -> tuple[float, float]:
    settings = Settings(redis_url=url, secret_key="bench", max_users_limit=count + 1, joins_per_minute=10**9)
    async with trio_asyncio.open_loop() as loop, trio.open_nursery() as nursery:
        bus = RedisBus(url, loop=loop)
        await nursery.start(bus.run)
        rooms = Rooms(bus, settings)
        room, _ = await rooms.create(NewRoom("bench", "owner", None, 600, count + 1, destroy_on_owner_offline=False))
        started, cpu = time.perf_counter(), time.process_time()
        for i in range(count):
            _, token = await rooms.join(room.room_id, f"m{i}", None, address="127.0.0.1")
            entry, _ = await rooms.admit(room.room_id, token, f"m{i}")
            if getattr(entry, "history", None) is None:
                await rooms.history(room.room_id)
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
        nursery.cancel_scope.cancel()
    return seconds / count, cpu / count


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.entry_cost", description=__doc__)
    p.add_argument("--redis-url", required=True, help="a Redis to measure on (a scratch database)")
    p.add_argument("--count", type=int, default=1000, help="members seated, one after another")
    args = p.parse_args()
    wall, cpu = trio.run(enter_many, args.redis_url, args.count)
    result = {"scenario": "entry_cost", "members": args.count, "wall_us": round(wall * 1e6), "cpu_us": round(cpu * 1e6)}
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
