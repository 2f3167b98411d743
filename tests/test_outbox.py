"""Slow consumers bounded in bytes: a member's own limit (OUTBOX_BYTES), the instance's
(OUTBOX_TOTAL_BYTES), and the gauge of what is queued."""

from __future__ import annotations

import trio
import trio.testing

from chat.bus.memory import MemoryBus
from chat.nursery import Hub
from chat.ws import wire
from chat.ws.member import SLOW_CONSUMER, Member

from .fakes import RecordingSocket, StalledSocket, member_on, room_record, running_hub
from .support import running_app, settings
from .test_fanout import close_code_after_backlog, room_with_a_stalled_member
from .test_metrics import scrape, value

TEXT = "x" * 1_000
FRAME = len(wire.text_frame(TEXT))


async def publish(bus: MemoryBus, count: int) -> None:
    """``count`` frames of FRAME bytes, each its own fan-out."""
    for _ in range(count):
        await bus.publish("r1", TEXT)
        await trio.testing.wait_all_tasks_blocked()


def queued_gauge(hub: Hub) -> float:
    return value(scrape(hub.metrics), "ephemeralchat_outbox_bytes")


async def add(hub: Hub, nursery: trio.Nursery, socket: RecordingSocket, name: str, **limits: int) -> Member:
    member = member_on(socket, name, nursery, hub.outboxes, **limits)
    await hub.add(room_record("r1"), member)
    return member


async def test_a_member_whose_socket_takes_nothing_is_closed_past_its_bytes() -> None:
    limit = 64 * 1024
    fit = limit // FRAME  # Well under the 256 frames an outbox may hold: bytes trip first.
    async with running_hub() as (bus, hub, nursery):
        await bus.create_room(room_record("r1"))
        healthy = [RecordingSocket() for _ in range(2)]
        for i, socket in enumerate(healthy):
            await add(hub, nursery, socket, f"h{i}", outbox_bytes=limit)
        stalled_socket = StalledSocket()
        stalled = await add(hub, nursery, stalled_socket, "stalled", outbox_bytes=limit)

        await publish(bus, fit)
        assert not stalled.closing
        # The first frame is in a send that cannot finish; it counts until it does.
        assert stalled.queued_bytes == hub.queued_bytes == fit * FRAME

        await publish(bus, 1)
        assert (stalled.closing, stalled.close_code, stalled.close_reason) == (True, 1008, SLOW_CONSUMER)
        # Its backlog is freed at once; only the write in flight is left.
        assert stalled.queued_bytes == hub.queued_bytes == FRAME
        await publish(bus, 3)
        for socket in healthy:
            assert socket.texts() == [TEXT] * (fit + 4) and socket.closed is None

        # Should its peer read again, it finds the frame in flight, then the close with the reason.
        stalled_socket.resume()
        await stalled_socket.closed_event.wait()
        assert stalled_socket.texts() == [TEXT]
        assert stalled_socket.closed == (1008, SLOW_CONSUMER)
        assert hub.queued_bytes == 0


async def test_a_writer_cut_in_a_send_leaves_nothing_counted() -> None:
    """What a connection cut under a stuck write (STALLED_GRACE_SECONDS) held goes with it."""
    async with running_hub() as (bus, hub, nursery):
        await bus.create_room(room_record("r1"))
        await add(hub, nursery, RecordingSocket(), "healthy")
        async with trio.open_nursery() as writers:
            stalled = await add(hub, writers, StalledSocket(), "stalled")
            await publish(bus, 10)
            assert hub.queued_bytes == stalled.queued_bytes == 10 * FRAME
            writers.cancel_scope.cancel()
        assert hub.queued_bytes == stalled.queued_bytes == 0


async def test_past_the_instance_cap_the_member_furthest_behind_is_closed() -> None:
    cap = 40 * FRAME
    async with running_hub(outbox_total_bytes=cap) as (bus, hub, nursery):
        hub.metrics.watch(hub, bus)
        await bus.create_room(room_record("r1"))
        healthy = RecordingSocket()
        await add(hub, nursery, healthy, "healthy")
        far_socket, near_socket = StalledSocket(), StalledSocket(stalled=False)
        far = await add(hub, nursery, far_socket, "far")
        near = await add(hub, nursery, near_socket, "near")

        await publish(bus, 20)
        assert queued_gauge(hub) == far.queued_bytes == 20 * FRAME
        near_socket.stall()
        # Both fall further behind; the frame that crosses the cap is queued for both.
        await publish(bus, 10)
        assert queued_gauge(hub) == 40 * FRAME and not far.closing
        await publish(bus, 1)
        assert far.close_reason == SLOW_CONSUMER and not near.closing
        # The closed one keeps only its write in flight.
        assert queued_gauge(hub) == FRAME + 11 * FRAME == far.queued_bytes + near.queued_bytes
        assert value(scrape(hub.metrics), "ephemeralchat_slow_consumer_disconnects_total") == 1

        far_socket.resume()
        near_socket.resume()
        await publish(bus, 1)
        assert near_socket.texts() == healthy.texts() == [TEXT] * 32
        assert far_socket.closed == (1008, SLOW_CONSUMER)
        assert queued_gauge(hub) == 0


async def test_a_peer_that_stops_reading_is_closed_for_its_bytes_over_real_sockets() -> None:
    """Over Hypercorn, with room for far more frames than it gets: the bytes close it."""
    config = settings(outbox_frames=1_000_000, outbox_bytes=256 * 1024)
    async with running_app(config) as server, room_with_a_stalled_member(server) as (_, _, stalled_ws):
        assert server.app is not None
        assert await close_code_after_backlog(stalled_ws) == (1008, SLOW_CONSUMER)
        await trio.testing.wait_all_tasks_blocked()
        assert server.app.hub.queued_bytes == 0
        assert value(scrape(server.app.metrics), "ephemeralchat_outbox_bytes") == 0
