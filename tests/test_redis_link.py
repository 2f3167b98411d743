"""The Redis link's time bound: it times Redis, not the instance's own queue of callers."""

from __future__ import annotations

import trio
import trio_asyncio

from chat.bus.link import POOL_CONNECTIONS, RedisLink

from .redis_server import open_redis_server

# Redis runs each call for about 10 ms; one Redis runs one at a time.
BUSY = """
local t = redis.call('TIME')
local start = t[1] * 1000000 + t[2]
repeat
  local n = redis.call('TIME')
until n[1] * 1000000 + n[2] - start >= 10000
return 1
"""


async def test_a_burst_of_callers_waits_its_turn_instead_of_reading_as_a_silent_redis() -> None:
    """Twenty-five times more callers than connections (a reconnect storm's admissions): the
    last of them are answered seconds after they asked, yet every command Redis got was
    answered well within the bound, so the link stays up and every caller gets its answer."""
    callers = 25 * POOL_CONNECTIONS  # 2 s of Redis's time at 10 ms each, against a 0.5 s bound
    async with open_redis_server() as server, trio_asyncio.open_loop() as loop:
        link = RedisLink(server.url, loop, client_name="ephemeralchat-test", command_timeout_seconds=0.5)

        async def idle_session(nursery: trio.Nursery) -> None:
            nursery.start_soon(trio.sleep_forever)  # A session lasts while its tasks do.

        async with trio.open_nursery() as nursery:
            await nursery.start(link.run, idle_session)
            assert link.ready
            answers: list[int] = []

            async def one() -> None:
                answers.append(await link.call(link.client.eval, BUSY, 0))

            started = trio.current_time()
            async with trio.open_nursery() as burst:
                for _ in range(callers):
                    burst.start_soon(one)
            assert trio.current_time() - started > 1.0  # The queue was real: longer than the bound.
            assert answers == [1] * callers and link.ready and link.reconnects == 0
            nursery.cancel_scope.cancel()
