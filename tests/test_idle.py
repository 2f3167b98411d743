"""The keep-alive sweep (chat.idle): a connection waiting for its next request head too long is
cancelled, within one sweep of its time; one that has its head is left alone."""

from __future__ import annotations

import trio
import trio.testing

from chat.idle import SWEEP_SECONDS, IdleConnections


async def test_a_wait_past_its_time_is_cancelled_within_a_sweep_and_a_busy_one_never(
    autojump_clock: trio.testing.MockClock,
) -> None:
    idle = IdleConnections()
    cancelled_at: dict[str, float] = {}

    async def connection(name: str, head_after: float | None) -> None:
        with trio.CancelScope() as waiting:
            idle.waiting(waiting, 5.0)
            if head_after is not None:
                await trio.sleep(head_after)
                idle.busy(waiting)  # its head came: the answer may take as long as it takes
            await trio.sleep(60)
        if waiting.cancelled_caught:
            cancelled_at[name] = trio.current_time()

    started = trio.current_time()
    async with trio.open_nursery() as nursery:
        await nursery.start(idle.run)
        async with trio.open_nursery() as connections:
            connections.start_soon(connection, "silent", None)
            connections.start_soon(connection, "asked in time", 4.9)
        nursery.cancel_scope.cancel()

    assert list(cancelled_at) == ["silent"]
    assert 5.0 <= cancelled_at["silent"] - started <= 5.0 + SWEEP_SECONDS
    assert len(idle) == 0  # nothing kept of either
