"""The live side's rules: the Hub starts a LiveRoom with its first member and ends it with
its last, at its expiry, when the room ends on the bus, or when the instance drains.

Members' sockets are fakes that record what they are sent (tests/fakes.py); the bus is a
MemoryBus. Backlogs and slow members are in tests/test_fanout.py.
"""

from __future__ import annotations

import orjson
import trio
import trio.testing

from chat import clock, protocol
from chat.bus import NO_POSITION, ROOM_END, History, MemberRecord, Position, offset_of
from chat.bus.memory import MemoryBus
from chat.nursery import LiveRoom
from chat.rooms import Rooms
from chat.ws import wire
from chat.ws.member import Member

from .fakes import RecordingSocket, recording_member, room_of_recording_members, room_record, running_hub
from .support import settings
from .test_rooms import new_room


def room_tasks() -> list[trio.lowlevel.Task]:
    """Every running task that is a LiveRoom's own."""
    found = []
    pending = [trio.lowlevel.current_root_task()]
    while pending:
        task = pending.pop()
        if task.name.endswith("LiveRoom.run"):
            found.append(task)
        pending.extend(child for nursery in task.child_nurseries for child in nursery.child_tasks)
    return found


def system_messages(socket: RecordingSocket) -> list[str]:
    return [frame["message"] for frame in map(orjson.loads, socket.texts()) if frame["type"] == "system"]


async def test_the_first_member_starts_the_room_subscribed() -> None:
    async with running_hub() as (bus, hub, nursery):
        record = room_record()
        await bus.create_room(record)
        member, socket = recording_member("ann", nursery)
        room = await hub.add(record, member)
        # No wait in between: the room subscribed before add returned.
        await bus.publish(record.room_id, "first frame")
        await trio.testing.wait_all_tasks_blocked()
        assert socket.texts() == ["first frame"]
        assert hub.rooms == {record.room_id: room} and len(room_tasks()) == 1


async def test_messages_still_on_their_way_reach_an_entering_member_once() -> None:
    """Bob's history is read while messages published before it are still on their way to
    his room (in its subscription, not fanned out yet): he gets each once, from history."""
    async with running_hub() as (bus, hub, nursery):
        record = room_record()
        await bus.create_room(record)
        await hub.add(record, recording_member("ann", nursery)[0])
        bob = Member(MemberRecord("c-bob", "bob", clock.now(), False), outbox_frames=8, held=True)
        socket = RecordingSocket()
        bob.attach(socket, nursery, socket.write_now)
        room = await hub.add(record, bob)
        for text in ("one", "two"):
            await bus.post(record.room_id, protocol.chat_message(record.room_id, "c-ann", "ann", text))
        # No checkpoint since the posts: the room has not fanned them out yet.
        history = await bus.history(record.room_id, None, None, 50)
        assert [offset_of(frame) for frame in history.frames] == [1, 2] and room.newest == 0
        first = [wire.text_frame(protocol.replayed(frame)) for frame in history.frames]
        room.release(bob, first, history.position.offset)
        await bus.post(record.room_id, protocol.chat_message(record.room_id, "c-ann", "ann", "three"))
        await trio.testing.wait_all_tasks_blocked()
        got = [(f["offset"], f["text"], "replayed" in f) for f in map(orjson.loads, socket.texts())]
        assert got == [(1, "one", True), (2, "two", True), (3, "three", False)]


class PostsAsTheRoomLooks(MemoryBus):
    """A MemoryBus on which ``texts`` are posted to a room just as a room, subscribed, first
    looks where its messages stand: they are in that position, and still on their way to it."""

    def __init__(self, texts: list[str]) -> None:
        super().__init__()
        self._texts = texts

    async def history(self, room_id: str, since: int | None, epoch: str | None, limit: int) -> History:
        texts, self._texts = self._texts, []
        for text in texts:
            await self.post(room_id, protocol.chat_message(room_id, "c-ann", "ann", text))
        return await super().history(room_id, since, epoch, limit)


async def test_messages_posted_as_the_room_subscribes_reach_its_first_member_once() -> None:
    """Bob is the room's first member here. "one" and "two" are posted after the room
    subscribed and before it looked where the room stands: his history has them, and so does
    the subscription. He gets each once, from history."""
    async with running_hub(PostsAsTheRoomLooks(["one", "two"])) as (bus, hub, nursery):
        record = room_record()
        await bus.create_room(record)
        bob = Member(MemberRecord("c-bob", "bob", clock.now(), False), outbox_frames=8, held=True)
        socket = RecordingSocket()
        bob.attach(socket, nursery, socket.write_now)
        room = await hub.add(record, bob)
        assert room.newest == 2  # Where the room stands, with both still on their way.
        history = await bus.history(record.room_id, 0, room.epoch, 50)
        first = [wire.text_frame(protocol.replayed(frame)) for frame in history.frames]
        room.release(bob, first, history.position.offset)
        await bus.post(record.room_id, protocol.chat_message(record.room_id, "c-ann", "ann", "three"))
        await trio.testing.wait_all_tasks_blocked()
        got = [(f["offset"], f["text"], "replayed" in f) for f in map(orjson.loads, socket.texts())]
        assert got == [(1, "one", True), (2, "two", True), (3, "three", False)]


async def test_later_members_join_the_same_room() -> None:
    async with room_of_recording_members(count=3) as (bus, hub, sockets):
        assert list(hub.rooms) == ["r1"] and len(room_tasks()) == 1
        await bus.publish("r1", "to all")
        await trio.testing.wait_all_tasks_blocked()
        assert [socket.texts() for socket in sockets] == [["to all"]] * 3


async def test_the_last_member_removed_ends_the_room() -> None:
    async with running_hub() as (bus, hub, nursery):
        record = room_record()
        await bus.create_room(record)
        ann, ann_socket = recording_member("ann", nursery)
        bob, bob_socket = recording_member("bob", nursery)
        room = await hub.add(record, ann)
        await hub.add(record, bob)
        room.remove(ann)
        await bus.publish(record.room_id, "for bob")
        await trio.testing.wait_all_tasks_blocked()
        assert (ann_socket.texts(), bob_socket.texts()) == ([], ["for bob"])
        assert hub.rooms == {record.room_id: room}
        room.remove(bob)
        await trio.testing.wait_all_tasks_blocked()
        assert hub.rooms == {} and room.ended
        assert room_tasks() == [] and bus.subscribed_room_ids == frozenset()
        # Removing is not closing: the member's own socket handler closes it.
        assert (ann_socket.closed, bob_socket.closed) == (None, None)
        # The room on the bus lives on; the next member starts a new LiveRoom.
        carl, _ = recording_member("carl", nursery)
        again = await hub.add(record, carl)
        assert again is not room and hub.rooms == {record.room_id: again}


async def test_a_room_ends_at_its_expiry_for_every_member(autojump_clock: trio.testing.MockClock) -> None:
    async with room_of_recording_members(count=3, life=300) as (bus, hub, sockets):
        start = trio.current_time()
        await trio.sleep(299.9)
        assert [socket.closed for socket in sockets] == [None] * 3
        for socket in sockets:
            await socket.closed_event.wait()
        assert 299.9 < trio.current_time() - start <= 300.1
        for socket in sockets:
            assert system_messages(socket) == [protocol.EXPIRED]
            assert socket.closed == (1000, "Room expired")
        assert hub.rooms == {} and await bus.get_room("r1") is None


async def test_a_room_closed_by_its_owner_closes_every_member() -> None:
    """The end reaches each local member as its final message, then close 1000."""
    async with running_hub() as (bus, hub, nursery):
        rooms = Rooms(bus, settings())
        record, owner_token = await rooms.create(new_room())
        sockets = []
        for name in ("ann", "bob"):
            member, socket = recording_member(name, nursery)
            await hub.add(record, member)
            sockets.append(socket)
        await rooms.close_by_owner(record.room_id, owner_token)
        for socket in sockets:
            with trio.fail_after(1):
                await socket.closed_event.wait()
            assert system_messages(socket) == [protocol.CLOSED_BY_OWNER]
            assert socket.closed == (1000, "Room closed")
        assert hub.rooms == {} and room_tasks() == []


async def test_a_member_added_to_a_room_closed_meanwhile_is_told_it_is_gone() -> None:
    """A close that lands between a member's admission and its room's subscription."""
    async with running_hub() as (bus, hub, nursery):
        record = room_record()
        await bus.create_room(record)
        member, socket = recording_member("ann", nursery)
        await bus.delete_room(record.room_id)  # closed on another instance, say
        await hub.add(record, member)
        with trio.fail_after(1):
            await socket.closed_event.wait()
        assert socket.closed == (1008, "Room not found")
        assert hub.rooms == {} and room_tasks() == []


async def test_drain_closes_every_member_with_1001_and_waits_for_their_sockets(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with running_hub() as (bus, hub, nursery):
        sockets = []
        for room_id in ("r1", "r2"):
            record = room_record(room_id)
            await bus.create_room(record)
            for name in ("ann", "bob"):
                member, socket = recording_member(f"{name}-{room_id}", nursery)
                await hub.add(record, member)
                sockets.append(socket)

        async def socket_open_until_closed(socket: RecordingSocket) -> None:
            with hub.serving():
                await socket.closed_event.wait()

        async def socket_that_never_finishes() -> None:
            with hub.serving():
                await trio.sleep(10)

        for socket in sockets:
            nursery.start_soon(socket_open_until_closed, socket)
        await trio.testing.wait_all_tasks_blocked()
        assert hub.socket_count == 4
        start = trio.current_time()
        await hub.drain(grace_seconds=5)
        assert trio.current_time() == start  # every socket closed at once: no grace used
        assert hub.draining and hub.rooms == {} and hub.socket_count == 0
        for socket in sockets:
            assert system_messages(socket) == [protocol.SHUTTING_DOWN]
            assert socket.closed == (1001, "Server shutting down")

        # A socket that does not finish holds the drain no longer than the grace period.
        nursery.start_soon(socket_that_never_finishes)
        await trio.testing.wait_all_tasks_blocked()
        start = trio.current_time()
        await hub.drain(grace_seconds=5)
        assert trio.current_time() - start == 5 and hub.socket_count == 1


async def test_end_is_idempotent() -> None:
    async with room_of_recording_members(count=2) as (bus, hub, sockets):
        room: LiveRoom = hub.rooms["r1"]
        room.end(protocol.CLOSE_GOING_AWAY, "Server shutting down", protocol.system("r1", protocol.SHUTTING_DOWN))
        room.end(protocol.CLOSE_NORMAL, "Room closed", protocol.system("r1", protocol.EXPIRED))
        await bus.publish("r1", ROOM_END)
        for member in list(room.members.values()):
            room.remove(member)
        await trio.testing.wait_all_tasks_blocked()
        for socket in sockets:
            assert system_messages(socket) == [protocol.SHUTTING_DOWN]
            assert socket.closed == (1001, "Server shutting down")
        assert hub.rooms == {} and room_tasks() == []


async def test_a_room_tells_whether_a_history_read_before_a_member_came_leaves_no_gap() -> None:
    """A member's history may be read with its seat, before it is added to the room here: it
    leaves no gap while the room has fanned out no message past it (those still to come
    reach the member), and is read again otherwise."""
    async with running_hub() as (bus, hub, nursery):
        record = room_record()
        await bus.create_room(record)
        room = await hub.add(record, recording_member("ann", nursery)[0])
        for text in ("one", "two"):
            await bus.post(record.room_id, protocol.chat_message(record.room_id, "c-ann", "ann", text))
        read = (await bus.history(record.room_id, None, None, 50)).position
        assert read.offset == 2 and room.still_ahead_of(read)  # Not fanned out yet, or just so.
        await trio.testing.wait_all_tasks_blocked()
        assert room.newest == 2 and room.still_ahead_of(read)
        await bus.post(record.room_id, protocol.chat_message(record.room_id, "c-ann", "ann", "three"))
        assert room.still_ahead_of(read)  # Posted, still on its way here.
        await trio.testing.wait_all_tasks_blocked()
        assert not room.still_ahead_of(read)  # Fanned out: a member added now would miss it.
        assert not room.still_ahead_of(Position("another-epoch", 3))
        assert not room.still_ahead_of(NO_POSITION)
