"""Fan-out under pressure: a member that stops reading, rooms that come and go by the thousand,
and backlogs joined into one write."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager

import httpx
import trio
import trio.testing
from trio_websocket import ConnectionClosed, WebSocketConnection, open_websocket_url

from chat import protocol
from chat.__main__ import hypercorn_config
from chat.bus import ROOM_END, with_count
from chat.bus.memory import MemoryBus
from chat.nursery import FAN_OUT_FRAMES, PRESENCE_LINGER_MEMBERS, PRESENCE_LINGER_SECONDS, LiveRoom
from chat.ws.member import SLOW_CONSUMER, Member

from .fakes import frames_in, recording_member, room_of_recording_members
from .support import Client, Server, connect, create_room, join_room, running_app, settings

PAD = "x" * 3_900


async def flood_until_dropped(sender: Client, healthy: Client, stalled_id: str) -> int:
    """Sends padded messages until the healthy member hears the stalled one go offline.

    The sender waits for its own echo, so the members who read keep up. Checks that the
    healthy member got every message in order; returns how many were sent.
    """
    received: list[int] = []
    sent = 0
    with trio.fail_after(60):
        while True:
            assert sent < 20_000, "the stalled member was never dropped"
            await sender.ws.send_message(f"{sent}:{PAD}")
            echo = await sender.receive_until(type="message")
            assert echo["text"].startswith(f"{sent}:")
            sent += 1
            frame = await healthy.receive()
            if frame["type"] == "message":
                received.append(int(frame["text"].partition(":")[0]))
                continue
            assert (frame["event"], frame["connection_id"]) == ("user_offline", stalled_id)
            break
        await sender.say("-1:after")
        while (frame := await healthy.receive())["type"] == "message":
            received.append(int(frame["text"].partition(":")[0]))
            if received[-1] == -1:
                break
    # Nothing lost, nothing duplicated, nothing out of order for the member who kept up.
    assert received == [*range(sent), -1]
    return sent


StalledRoom = tuple[httpx.AsyncClient, str, WebSocketConnection]


@asynccontextmanager
async def room_with_a_stalled_member(server: Server) -> AsyncIterator[StalledRoom]:
    """A room whose sender flooded it until its stalled member was dropped: the REST client,
    the room id, and the stalled member's socket (not read since its hello)."""
    async with server.client() as http:
        room = await create_room(http, owner_name="sender")
        rid = room["room_id"]
        healthy_url = (await join_room(http, rid, "healthy"))["ws_url"]
        stalled_url = (await join_room(http, rid, "stalled"))["ws_url"]
        async with connect(room["ws_url"]) as sender, connect(healthy_url) as healthy:
            # message_queue_size=1: once we stop calling get_message, TCP backpressure does the rest.
            async with open_websocket_url(stalled_url, message_queue_size=1) as stalled_ws:
                stalled_id = (await Client(stalled_ws).receive())["connection_id"]
                await healthy.receive_until(event="user_online", display_name="stalled")
                await sender.receive_until(event="user_online", display_name="stalled")
                await flood_until_dropped(sender, healthy, stalled_id)
                yield http, rid, stalled_ws


async def close_code_after_backlog(ws: WebSocketConnection) -> tuple[int, str | None]:
    """Reads what piled up until the connection ends; how it ended."""
    with trio.fail_after(30):
        try:
            while True:
                await ws.get_message()
        except ConnectionClosed as closed:
            return closed.reason.code, closed.reason.reason


async def test_a_member_that_stops_reading_is_dropped_and_the_room_carries_on(server: Server) -> None:
    async with room_with_a_stalled_member(server) as (http, rid, stalled_ws):
        # The stalled member, once it reads again, finds a clear close reason after its backlog.
        assert await close_code_after_backlog(stalled_ws) == (1008, SLOW_CONSUMER)
        details = (await http.get(f"/rooms/{rid}")).json()
        assert [u["display_name"] for u in details["online_users"]] == ["sender", "healthy"]


async def test_a_member_that_never_reads_again_is_cut_off(autojump_clock: trio.testing.MockClock) -> None:
    """Hypercorn cannot cancel a write stuck on a full socket; the grace period ends it anyway."""
    # The flood is counted in messages, not time: no rate limit may refuse it, however
    # little virtual time passes meanwhile.
    config = settings(messages_per_second=100_000, message_burst=100_000)
    async with running_app(config) as server, room_with_a_stalled_member(server) as (_, _, stalled_ws):
        app = server.app
        assert app is not None
        assert app.hub.socket_count == 3  # its writer is still stuck in a send
        await trio.sleep(app.settings.stalled_grace_seconds + 1)
        assert app.hub.socket_count == 2
        # Cut, not closed: it never read the close frame.
        assert (await close_code_after_backlog(stalled_ws))[0] == 1006


def all_tasks() -> Iterator[trio.lowlevel.Task]:
    def walk(task: trio.lowlevel.Task) -> Iterator[trio.lowlevel.Task]:
        yield task
        for nursery in task.child_nurseries:
            for child in nursery.child_tasks:
                yield from walk(child)

    return walk(trio.lowlevel.current_root_task())


def count_tasks() -> int:
    return sum(1 for _ in all_tasks())


def writer_tasks() -> int:
    """Members' writer tasks: they exist only while a socket lags behind."""
    return sum(1 for task in all_tasks() if task.name.endswith("Member._write"))


def live_objects(*kinds: type) -> int:
    gc.collect()
    return sum(1 for obj in gc.get_objects() if isinstance(obj, kinds))


async def test_a_thousand_rooms_come_and_go_leaving_nothing_behind(autojump_clock: trio.testing.MockClock) -> None:
    bus = MemoryBus()
    async with running_app(settings(rooms_per_minute=10_000), bus=bus) as server:
        app = server.app
        assert app is not None
        async with server.client() as http:
            await create_room(http)  # Warm up: first-request state is not a leak.
        # A kept-alive connection's timer outlives its client's close by up to the keep-alive
        # timeout (Hypercorn's rule): let the warm-up connection's run out before counting.
        await trio.sleep(hypercorn_config(app.settings).keep_alive_timeout + 1)
        await trio.testing.wait_all_tasks_blocked()
        tasks_before = count_tasks()
        async with server.client() as http:
            for _ in range(1_000):
                room = await create_room(http)
                async with connect(room["ws_url"]) as owner:
                    await owner.say("hello")
                    await owner.receive_until(type="message")
                    assert len(app.hub.rooms) == 1
        # Hypercorn ends a closed socket's ping task at its next tick: one ping interval at most.
        await trio.sleep(app.settings.ws_ping_seconds + 1)
        await trio.testing.wait_all_tasks_blocked()
        assert app.hub.rooms == {}
        assert len(bus.room_ids) == 1  # only the warm-up room, never joined, is left
        assert bus.subscribed_room_ids == frozenset()
        assert live_objects(LiveRoom, Member) == 0
        assert count_tasks() == tasks_before


async def test_unjoined_rooms_are_swept_at_expiry(autojump_clock: trio.testing.MockClock) -> None:
    bus = MemoryBus()
    async with running_app(settings(rooms_per_minute=10_000), bus=bus) as server, server.client() as http:
        for i in range(1_000):
            await create_room(http, expiry_seconds=60 + i % 7)
        assert len(bus.room_ids) == 1_000
        await trio.sleep(120)
        assert bus.room_ids == frozenset() and bus.pending_expiries == 0


async def test_a_member_that_falls_behind_and_catches_up_gets_everything_in_order() -> None:
    """Frames go straight to the socket while it keeps up, through the outbox while it does
    not, and straight again once it has caught up: never out of order, never twice, and
    nothing of the lag left running."""
    # Outboxes roomy enough for the whole lag: this member falls behind, it does not stall.
    config = settings(message_max_chars=20_000, outbox_frames=1_000, outbox_bytes=8 * 1024 * 1024)
    async with running_app(config) as server, server.client() as http:
        room = await create_room(http, owner_name="sender")
        late_url = (await join_room(http, room["room_id"], "late"))["ws_url"]
        async with connect(room["ws_url"]) as sender:
            async with open_websocket_url(late_url, message_queue_size=1) as late_ws:
                late = Client(late_ws)
                await late.receive()  # hello
                await late.receive()  # its own user_online
                await sender.receive_until(event="user_online", display_name="late")
                total = 300
                for i in range(total):  # ~5 MB: more than the socket buffers hold
                    await sender.ws.send_message(f"{i}:" + "y" * 16_000)
                    await sender.receive_until(type="message")
                with trio.fail_after(30):
                    got = [int((await late.receive())["text"].partition(":")[0]) for _ in range(total)]
                assert got == list(range(total))
                await sender.say(f"{total}:after")
                assert (await late.receive())["text"] == f"{total}:after"
                # Caught up, members write straight to their sockets again: no writer is left.
                await trio.testing.wait_all_tasks_blocked()
                assert writer_tasks() == 0


async def test_a_backlog_reaches_each_member_in_one_write_in_order() -> None:
    """Frames that pile up while the room's subscriber is busy go out joined: one socket
    write per member for many frames, in order, capped so one write stays bounded."""
    async with room_of_recording_members() as (bus, hub, sockets):
        texts = [f"message {i}" for i in range(FAN_OUT_FRAMES + 10)]
        # Queued without a checkpoint in between (MemoryBus hands a frame to a subscription
        # with room for it without yielding): the subscriber finds them all waiting.
        assert bus.subscribed_room_ids == {"r1"}
        for text in texts:
            await bus.publish("r1", text)
        await trio.testing.wait_all_tasks_blocked()
        for socket in sockets:
            assert [len(frames_in(w)) for w in socket.writes] == [FAN_OUT_FRAMES, 10]
            assert [t for w in socket.writes for t in frames_in(w)] == texts

        # The room's end stops the backlog where it stands: what came before still arrives.
        for socket in sockets:
            socket.writes.clear()
        for text in ("last", ROOM_END, "never"):
            await bus.publish("r1", text)
        await trio.testing.wait_all_tasks_blocked()
        for socket in sockets:
            assert [t for w in socket.writes for t in frames_in(w)] == ["last"]
            assert socket.closed == (1000, "Room closed")
        assert hub.rooms == {}


async def test_frames_arriving_round_after_round_share_one_write() -> None:
    """A sender's frames reach the room one scheduling round apart (its socket's reader and
    its session each yield in between): the subscriber waits while they keep coming, so each
    member gets them joined, in order, instead of one write per frame."""
    async with room_of_recording_members() as (bus, _, sockets):
        texts = [f"message {i}" for i in range(30)]
        for text in texts:
            await bus.publish("r1", text)
            await trio.lowlevel.checkpoint()
        await trio.testing.wait_all_tasks_blocked()
        for socket in sockets:
            assert [t for w in socket.writes for t in frames_in(w)] == texts
            assert len(socket.writes) <= 2, [len(frames_in(w)) for w in socket.writes]


def online(name: str) -> str:
    return with_count(protocol.presence("r1", "user_online", f"c-{name}", name), 1)


async def test_presence_in_a_big_room_arrives_together_in_order(mock_clock: trio.testing.MockClock) -> None:
    """Arrivals a moment apart in a big room reach each member in one write, in the order
    they happened, once the linger is over; a member seated in between hears only what came
    after it; a message goes out at once, behind the presence waiting."""
    async with (
        trio.open_nursery() as nursery,  # The late member's: it outlives the room.
        room_of_recording_members(count=PRESENCE_LINGER_MEMBERS) as (bus, hub, sockets),
    ):
        ann, bob, cy = online("ann"), online("bob"), online("cy")
        await bus.publish("r1", ann)
        await trio.testing.wait_all_tasks_blocked()
        late, late_socket = recording_member("late", nursery)
        await hub.add(hub.rooms["r1"].record, late)
        await bus.publish("r1", bob)
        await trio.testing.wait_all_tasks_blocked()
        assert all(socket.writes == [] for socket in [*sockets, late_socket])

        mock_clock.jump(PRESENCE_LINGER_SECONDS)
        await trio.testing.wait_all_tasks_blocked()
        for socket in sockets:
            assert [frames_in(w) for w in socket.writes] == [[ann, bob]]
        assert [frames_in(w) for w in late_socket.writes] == [[bob]]

        await bus.publish("r1", cy)
        await trio.testing.wait_all_tasks_blocked()
        await bus.publish("r1", "a message")
        await trio.testing.wait_all_tasks_blocked()
        for socket in [*sockets, late_socket]:
            assert frames_in(socket.writes[-1]) == [cy, "a message"]


async def test_presence_in_a_small_room_goes_out_at_once() -> None:
    async with room_of_recording_members(count=PRESENCE_LINGER_MEMBERS - 1) as (bus, _, sockets):
        ann = online("ann")
        await bus.publish("r1", ann)
        await trio.testing.wait_all_tasks_blocked()
        for socket in sockets:
            assert socket.texts() == [ann]


async def test_presence_waiting_goes_out_before_the_room_ends(mock_clock: trio.testing.MockClock) -> None:
    async with room_of_recording_members(count=PRESENCE_LINGER_MEMBERS) as (bus, hub, sockets):
        ann = online("ann")
        await bus.publish("r1", ann)
        await bus.publish("r1", ROOM_END)
        await trio.testing.wait_all_tasks_blocked()
        for socket in sockets:
            assert socket.texts() == [ann] and socket.closed == (1000, "Room closed")
        assert hub.rooms == {}
