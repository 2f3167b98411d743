"""The room domain's rules, on a MemoryBus: no HTTP, no sockets.

What the room hears is read off the bus, as every instance's live side reads it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest
import trio
import trio.testing

from chat import protocol
from chat.bus import ROOM_END
from chat.bus.memory import MemoryBus
from chat.config import Settings
from chat.protocol import Said
from chat.rooms import (
    CannotRemoveOwner,
    Entry,
    Forbidden,
    InvalidRoom,
    MemberNotFound,
    NameTaken,
    NewRoom,
    RateLimited,
    Removed,
    RoomError,
    RoomFull,
    RoomNotFound,
    Rooms,
    WrongPassword,
)

from .support import settings


def new_room(owner: str = "Ann", **fields: Any) -> NewRoom:
    values: dict[str, Any] = {
        "name": "Lobby",
        "owner_name": owner,
        "password": None,
        "expiry_seconds": None,
        "max_users": None,
        "destroy_on_owner_offline": True,
    }
    values.update(fields)
    return NewRoom(**values)


@asynccontextmanager
async def open_rooms(config: Settings | None = None) -> AsyncIterator[Rooms]:
    config = config or settings()
    async with trio.open_nursery() as nursery:
        bus = MemoryBus(history_size=config.history_size, history_bytes=config.history_bytes)
        await nursery.start(bus.run)
        yield Rooms(bus, config)
        nursery.cancel_scope.cancel()


def heard(frames: trio.MemoryReceiveChannel[str]) -> list[Any]:
    """What the room has heard since the last call: decoded frames, and controls (ROOM_END...) as is."""
    got: list[Any] = []
    while True:
        try:
            frame = frames.receive_nowait()
        except trio.WouldBlock:
            return got
        got.append(frame if frame.startswith("\x00") else orjson.loads(frame))


def refusal(error: pytest.ExceptionInfo[RoomError]) -> tuple[int, str]:
    return error.value.status, error.value.detail


# Creating and joining


async def test_a_room_is_created_with_the_defaults_from_settings() -> None:
    config = settings(default_expiry_seconds=900, default_max_users=7)
    async with open_rooms(config) as rooms:
        room, owner_token = await rooms.create(new_room(destroy_on_owner_offline=False))
        assert (room.max_users, room.expires_at - room.created_at) == (7, 900)
        assert (room.name, room.owner_name, room.password_hash) == ("Lobby", "Ann", None)
        assert room.destroy_on_owner_offline is False
        assert await rooms.find(room.room_id) == room
        entry, _ = await rooms.admit(room.room_id, owner_token, "whoever")
        assert (entry.member.display_name, entry.member.is_owner) == ("Ann", True)


@pytest.mark.parametrize(
    ("field", "value"),
    [("expiry_seconds", 9), ("expiry_seconds", 3601), ("max_users", 0), ("max_users", 51)],
)
async def test_expiry_and_seats_outside_the_bounds_are_refused(field: str, value: int) -> None:
    config = settings(min_expiry_seconds=10, max_expiry_seconds=3600, max_users_limit=50)
    async with open_rooms(config) as rooms:
        with pytest.raises(InvalidRoom) as refused:
            await rooms.create(new_room(**{field: value}))
        status, detail = refusal(refused)
        assert status == 422 and detail.startswith(f"{field} must be between")
        assert rooms.bus.room_ids == frozenset()  # type: ignore[attr-defined]


async def test_the_bounds_themselves_are_accepted() -> None:
    config = settings(min_expiry_seconds=10, max_expiry_seconds=3600, max_users_limit=50)
    async with open_rooms(config) as rooms:
        short, _ = await rooms.create(new_room(expiry_seconds=10, max_users=1))
        long, _ = await rooms.create(new_room(expiry_seconds=3600, max_users=50))
        assert (short.expires_at - short.created_at, short.max_users) == (10, 1)
        assert (long.expires_at - long.created_at, long.max_users) == (3600, 50)


async def test_join_checks_the_password() -> None:
    async with open_rooms() as rooms:
        room, _ = await rooms.create(new_room(password="s3cret"))
        assert room.password_hash is not None and "s3cret" not in room.password_hash
        for given, detail in ((None, "Password required"), ("", "Password required"), ("wrong", "Invalid password")):
            with pytest.raises(WrongPassword) as refused:
                await rooms.join(room.room_id, "Jane", given)
            assert refusal(refused) == (401, detail)
        _, token = await rooms.join(room.room_id, "Jane", "s3cret")
        entry, _ = await rooms.admit(room.room_id, token, "ignored")
        assert (entry.member.display_name, entry.member.is_owner) == ("Jane", False)


async def test_join_checks_for_a_free_seat_but_takes_none() -> None:
    async with open_rooms() as rooms:
        room, _ = await rooms.create(new_room(max_users=1))
        tokens = [(await rooms.join(room.room_id, name, None))[1] for name in ("Jane", "Joe")]
        assert await rooms.bus.members(room.room_id) == []
        await rooms.admit(room.room_id, tokens[0], "")
        with pytest.raises(RoomFull) as refused:
            await rooms.join(room.room_id, "Jim", None)
        assert refusal(refused) == (409, "Room is full")


async def test_joining_or_finding_a_room_that_does_not_exist_says_not_found() -> None:
    async with open_rooms() as rooms:
        for room_id in ("0123456789abcdef", "x" * 10_000):
            for look in (rooms.find(room_id), rooms.join(room_id, "Jane", None), rooms.details(room_id, None)):
                with pytest.raises(RoomNotFound) as refused:
                    await look
                assert refusal(refused) == (404, "Room not found")


# Admission: a socket's member takes a seat


async def test_admit_seats_up_to_max_users_and_not_one_more() -> None:
    async with open_rooms() as rooms:
        room, owner_token = await rooms.create(new_room(max_users=3))
        _, jane_token = await rooms.join(room.room_id, "Jane", None)
        counts = [
            (await rooms.admit(room.room_id, owner_token, ""))[1],
            (await rooms.admit(room.room_id, jane_token, ""))[1],
            (await rooms.admit(room.room_id, None, "Guest"))[1],
        ]
        assert counts == [1, 2, 3]
        for token, name in ((owner_token, ""), (None, "Late")):
            with pytest.raises(RoomFull) as refused:
                await rooms.admit(room.room_id, token, name)
            assert refusal(refused) == (409, "Room is full")
        assert [m.display_name for m in await rooms.bus.members(room.room_id)] == ["Ann", "Jane", "Guest"]


async def test_a_token_says_who_enters_not_the_name_given() -> None:
    async with open_rooms() as rooms:
        room, owner_token = await rooms.create(new_room(owner="Ann"))
        _, jane_token = await rooms.join(room.room_id, "Jane", None)
        owner, _ = await rooms.admit(room.room_id, owner_token, "Mallory")
        jane, _ = await rooms.admit(room.room_id, jane_token, "Ann")
        guest, _ = await rooms.admit(room.room_id, None, "Mallory")
        seated = [(e.member.display_name, e.member.is_owner) for e in (owner, jane, guest)]
        assert seated == [("Ann", True), ("Jane", False), ("Mallory", False)]
        assert len({e.member.connection_id for e in (owner, jane, guest)}) == 3
        with pytest.raises(NameTaken):  # The owner's name is never a guest's.
            await rooms.admit(room.room_id, None, "Ann")


async def test_a_name_alone_enters_only_rooms_without_a_password() -> None:
    async with open_rooms() as rooms:
        room, _ = await rooms.create(new_room(password="s3cret"))
        with pytest.raises(WrongPassword) as refused:
            await rooms.admit(room.room_id, None, "Eve")
        status, detail = refusal(refused)
        assert status == 401 and "join it first" in detail
        assert await rooms.bus.members(room.room_id) == []


async def test_a_bad_token_is_refused_but_a_gone_room_says_not_found() -> None:
    async with open_rooms() as rooms:
        room, owner_token = await rooms.create(new_room())
        other, other_token = await rooms.create(new_room())
        tampered = owner_token[:-2] + ("AA" if owner_token[-2:] != "AA" else "BB")
        for token in (tampered, other_token, "not-a-token"):
            with pytest.raises(Forbidden) as refused:
                await rooms.admit(room.room_id, token, "")
            status, detail = refusal(refused)
            assert status == 403 and "join the room again" in detail
        await rooms.close_by_owner(room.room_id, owner_token)
        for token in (tampered, owner_token, None):
            with pytest.raises(RoomNotFound):
                await rooms.admit(room.room_id, token, "Jane")
        assert (await rooms.admit(other.room_id, other_token, ""))[1] == 1


# What the room hears: arrive, say, depart


async def test_arrive_say_and_depart_publish_the_documented_frames() -> None:
    async with open_rooms() as rooms:
        room, owner_token = await rooms.create(new_room(owner="Ann"))
        rid = room.room_id
        async with rooms.bus.subscribe(rid) as frames:
            ann, count = await rooms.admit(rid, owner_token, "")
            await rooms.arrive(ann, count)
            jane, count = await rooms.admit(rid, None, "Jane")
            await rooms.arrive(jane, count)
            receipt = RecordingReceipt()
            await rooms.say(jane, Said("Hello"), receipt)
            await rooms.depart(jane)
            online, other_online, message, offline = heard(frames)

        def who(frame: dict[str, Any]) -> tuple[Any, ...]:
            return frame["type"], frame.get("event"), frame["display_name"], frame["connection_id"], frame["room_id"]

        assert who(online) == ("presence", "user_online", "Ann", ann.member.connection_id, rid)
        assert (who(other_online), other_online["online_count"]) == (
            ("presence", "user_online", "Jane", jane.member.connection_id, rid),
            2,
        )
        assert online["online_count"] == 1
        assert who(message) == ("message", None, "Jane", jane.member.connection_id, rid)
        assert message["text"] == "Hello" and message["id"]
        assert message["offset"] == 1 and receipt.offsets == [1]
        assert (who(offline), offline["online_count"]) == (
            ("presence", "user_offline", "Jane", jane.member.connection_id, rid),
            1,
        )
        for frame in (online, other_online, message, offline):
            assert frame["timestamp"].endswith("Z")


@dataclass
class RecordingReceipt:
    offsets: list[int] = field(default_factory=list)
    lost_count: int = 0

    def posted(self, offset: int) -> None:
        self.offsets.append(offset)

    def lost(self) -> None:
        self.lost_count += 1


async def test_messages_are_numbered_kept_and_posted_once_however_often_resent() -> None:
    async with open_rooms(settings(history_size=3)) as rooms:
        room, owner_token = await rooms.create(new_room(owner="Ann"))
        rid = room.room_id
        ann, _ = await rooms.admit(rid, owner_token, "")
        receipts = [RecordingReceipt() for _ in range(6)]
        async with rooms.bus.subscribe(rid) as frames:
            for i, receipt in enumerate(receipts[:5]):
                await rooms.say(ann, Said(f"m{i}", client_id=f"c{i}"), receipt)
            # The same client_id again, from a new socket with the same token: no second post.
            again, _ = await rooms.admit(rid, owner_token, "")
            await rooms.say(again, Said("m1", client_id="c1"), receipts[5])
            texts = [(f["offset"], f["text"]) for f in heard(frames)]
        assert texts == [(1, "m0"), (2, "m1"), (3, "m2"), (4, "m3"), (5, "m4")]
        assert [r.offsets for r in receipts] == [[1], [2], [3], [4], [5], [2]]
        newest = await rooms.history(rid)
        assert newest.position.offset == 5 and newest.complete is False  # m0 and m1 are no longer kept
        assert [orjson.loads(f)["text"] for f in newest.frames] == ["m2", "m3", "m4"]
        resumed = await rooms.history(rid, since=3, epoch=newest.position.epoch)
        assert resumed.complete and [orjson.loads(f)["offset"] for f in resumed.frames] == [4, 5]
        assert not (await rooms.history(rid, since=1, epoch=newest.position.epoch)).complete
        assert not (await rooms.history(rid, since=3, epoch="another")).complete
        await rooms.close_by_owner(rid, owner_token)
        with pytest.raises(RoomNotFound):
            await rooms.history(rid)
        await rooms.say(ann, Said("too late"), receipts[0])
        assert receipts[0].lost_count == 1


async def test_a_member_departs_once() -> None:
    async with open_rooms() as rooms:
        room, _ = await rooms.create(new_room())
        jane, _ = await rooms.admit(room.room_id, None, "Jane")
        async with rooms.bus.subscribe(room.room_id) as frames:
            await rooms.depart(jane)
            await rooms.depart(jane)
            assert [f["event"] for f in heard(frames)] == ["user_offline"]
        assert await rooms.bus.members(room.room_id) == []


# The owner rule: the owner's departure ends the room


async def seated_owner_and_guest(rooms: Rooms, **fields: Any) -> tuple[str, Entry, Entry, str]:
    room, owner_token = await rooms.create(new_room(owner="Ann", **fields))
    owner, _ = await rooms.admit(room.room_id, owner_token, "")
    guest, _ = await rooms.admit(room.room_id, None, "Jane")
    return room.room_id, owner, guest, owner_token


async def test_the_owner_going_offline_ends_the_room() -> None:
    async with open_rooms() as rooms:
        rid, owner, _, _ = await seated_owner_and_guest(rooms)
        async with rooms.bus.subscribe(rid) as frames:
            await rooms.depart(owner)
            offline, notice, end = heard(frames)
        assert (offline["event"], offline["display_name"], offline["online_count"]) == ("user_offline", "Ann", 1)
        assert (notice["type"], notice["message"]) == ("system", "Room owner went offline shutting down room")
        assert end == ROOM_END
        with pytest.raises(RoomNotFound):
            await rooms.find(rid)


async def test_the_room_outlives_its_owner_when_asked_to() -> None:
    async with open_rooms() as rooms:
        rid, owner, guest, _ = await seated_owner_and_guest(rooms, destroy_on_owner_offline=False)
        async with rooms.bus.subscribe(rid) as frames:
            await rooms.depart(owner)
            await rooms.say(guest, Said("still here"), RecordingReceipt())
            assert [f["type"] for f in heard(frames)] == ["presence", "message"]
        assert [m.display_name for m in await rooms.bus.members(rid)] == ["Jane"]


async def test_the_room_stays_while_another_owner_seat_is_online() -> None:
    async with open_rooms() as rooms:
        rid, owner, _, owner_token = await seated_owner_and_guest(rooms)
        second_tab, _ = await rooms.admit(rid, owner_token, "")
        async with rooms.bus.subscribe(rid) as frames:
            await rooms.depart(owner)
            assert [f["event"] for f in heard(frames)] == ["user_offline"]
            await rooms.find(rid)
            await rooms.depart(second_tab)
            assert heard(frames)[-1] == ROOM_END
        with pytest.raises(RoomNotFound):
            await rooms.find(rid)


async def test_a_draining_instance_does_not_end_rooms_for_their_owners() -> None:
    """Server shutdown closes the owner's socket too; the room must survive for a reconnect."""
    async with open_rooms() as rooms:
        rid, owner, _, _ = await seated_owner_and_guest(rooms)
        async with rooms.bus.subscribe(rid) as frames:
            await rooms.depart(owner, owner_rule=False)
            assert [f["event"] for f in heard(frames)] == ["user_offline"]
        await rooms.find(rid)


# Closing by the owner


async def test_close_by_owner_needs_the_owner_token() -> None:
    async with open_rooms() as rooms:
        rid, _, _, _ = await seated_owner_and_guest(rooms)
        _, member_token = await rooms.join(rid, "Joe", None)
        _, foreign_owner_token = await rooms.create(new_room(owner="Ann"))
        for token in (None, "", member_token, foreign_owner_token, "forged.token"):
            with pytest.raises(Forbidden) as refused:
                await rooms.close_by_owner(rid, token)
            status, detail = refusal(refused)
            assert status == 403 and "owner_token" in detail
        await rooms.find(rid)


async def test_close_by_owner_ends_the_room_for_everyone() -> None:
    async with open_rooms() as rooms:
        rid, _, guest, owner_token = await seated_owner_and_guest(rooms)
        async with rooms.bus.subscribe(rid) as frames:
            await rooms.close_by_owner(rid, owner_token)
            notice, end = heard(frames)
            assert (notice["type"], notice["message"], notice["room_id"]) == (
                "system",
                "Room has been closed by owner",
                rid,
            )
            assert end == ROOM_END
            # The members' sockets then depart a room that is gone: nothing more is said.
            await rooms.depart(guest)
            assert heard(frames) == []
        assert await rooms.bus.members(rid) == []
        for again in (rooms.close_by_owner(rid, owner_token), rooms.join(rid, "Joe", None)):
            with pytest.raises(RoomNotFound):
                await again


async def test_a_room_ends_once() -> None:
    async with open_rooms() as rooms:
        room, _ = await rooms.create(new_room())
        async with rooms.bus.subscribe(room.room_id) as frames:
            assert await rooms.end(room, protocol.CLOSED_BY_OWNER) is True
            assert await rooms.end(room, protocol.OWNER_OFFLINE) is False
            assert [f if f == ROOM_END else f["message"] for f in heard(frames)] == [protocol.CLOSED_BY_OWNER, ROOM_END]


# Time: expiry and rate limits


async def test_an_expired_room_cannot_be_found_or_entered(autojump_clock: trio.testing.MockClock) -> None:
    async with open_rooms() as rooms:
        room, owner_token = await rooms.create(new_room(expiry_seconds=60))
        _, jane_token = await rooms.join(room.room_id, "Jane", None)
        await trio.sleep(59.9)
        await rooms.find(room.room_id)
        await trio.sleep(0.2)
        for look in (rooms.find(room.room_id), rooms.join(room.room_id, "Joe", None)):
            with pytest.raises(RoomNotFound):
                await look
        for token in (owner_token, jane_token, None):
            with pytest.raises(RoomNotFound):
                await rooms.admit(room.room_id, token, "Joe")


async def test_too_many_requests_from_one_address_get_429_until_the_minute_is_over(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_rooms() as rooms:
        for _ in range(3):
            await rooms.allow("create", "203.0.113.7", per_minute=3)
        await trio.sleep(20)
        with pytest.raises(RateLimited) as refused:
            await rooms.allow("create", "203.0.113.7", per_minute=3)
        assert refused.value.status == 429
        assert refused.value.retry_after == pytest.approx(40)
        assert "at most 3 a minute" in refused.value.detail and "try again in 40 s" in refused.value.detail
        await rooms.allow("create", "198.51.100.1", per_minute=3)  # another address
        await rooms.allow("join", "203.0.113.7", per_minute=3)  # another action
        await trio.sleep(40)
        await rooms.allow("create", "203.0.113.7", per_minute=3)


# Names: unique among the members, the owner's reserved for the owner


async def test_a_name_is_taken_whatever_its_case_or_width_until_its_member_leaves() -> None:
    async with open_rooms() as rooms:
        room, owner_token = await rooms.create(new_room(owner="Ann"))
        rid = room.room_id
        _, jane_token = await rooms.join(rid, "Jane", None)
        jane, _ = await rooms.admit(rid, jane_token, "")
        for taken in ("jane", "\uff2a\uff21\uff2e\uff25", "ANN", "\uff41nn"):
            with pytest.raises(NameTaken) as refused:
                await rooms.join(rid, taken, None)
            status, detail = refusal(refused)
            assert status == 409 and f"\u201c{taken}\u201d is already taken" in detail
            with pytest.raises(NameTaken):
                await rooms.admit(rid, None, taken)
        # A second socket of the same member is the same member; a second join is not.
        second_tab, _ = await rooms.admit(rid, jane_token, "")
        await rooms.depart(jane)
        with pytest.raises(NameTaken):
            await rooms.admit(rid, None, "JANE")
        await rooms.depart(second_tab)
        newcomer, _ = await rooms.admit(rid, None, "JANE")
        assert newcomer.member.display_name == "JANE"
        # The owner's name stays the owner's while the owner is offline.
        owner, _ = await rooms.admit(rid, owner_token, "")
        await rooms.depart(owner, owner_rule=False)
        with pytest.raises(NameTaken):
            await rooms.join(rid, "ann", None)
        assert (await rooms.admit(rid, owner_token, ""))[0].member.is_owner


async def test_two_who_join_with_one_name_are_two_and_only_one_gets_in() -> None:
    async with open_rooms() as rooms:
        room, _ = await rooms.create(new_room(owner="Ann"))
        first = (await rooms.join(room.room_id, "Jane", None))[1]
        second = (await rooms.join(room.room_id, "jane", None))[1]
        assert first != second
        await rooms.admit(room.room_id, first, "")
        with pytest.raises(NameTaken):
            await rooms.admit(room.room_id, second, "")


# The owner's hand


async def test_the_owner_removes_a_member_whose_token_is_then_refused() -> None:
    async with open_rooms() as rooms:
        room, owner_token = await rooms.create(new_room(owner="Ann"))
        rid = room.room_id
        _, jane_token = await rooms.join(rid, "Jane", None)
        owner, _ = await rooms.admit(rid, owner_token, "")
        jane, _ = await rooms.admit(rid, jane_token, "")
        cid = jane.member.connection_id
        for token in (None, "", jane_token, "not-a-token"):
            with pytest.raises(Forbidden):
                await rooms.remove_member(rid, cid, token)
        with pytest.raises(MemberNotFound) as unknown:
            await rooms.remove_member(rid, "no-such-member", owner_token)
        assert refusal(unknown)[0] == 404
        with pytest.raises(CannotRemoveOwner) as themself:
            await rooms.remove_member(rid, owner.member.connection_id, owner_token)
        assert refusal(themself)[0] == 409
        with pytest.raises(RoomNotFound):
            await rooms.remove_member("0123456789abcdef", cid, owner_token)
        async with rooms.bus.subscribe(rid) as frames:
            removed = await rooms.remove_member(rid, cid, owner_token)
            assert removed.display_name == "Jane"
            await trio.testing.wait_all_tasks_blocked()
            control, line, offline = heard(frames)
            assert control == "\x00remove " + jane.sender
            assert line["type"] == "system" and line["message"] == "Jane was removed by the room owner"
            assert (offline["event"], offline["display_name"], offline["online_count"]) == ("user_offline", "Jane", 1)
            await rooms.depart(jane)  # Its socket's own departure: already gone, nothing heard.
            await trio.testing.wait_all_tasks_blocked()
            assert heard(frames) == []
        for again in (rooms.admit(rid, jane_token, ""), rooms.join(rid, "Jane", None, jane_token)):
            with pytest.raises(Removed) as refused:
                await again
            assert refusal(refused) == (403, "You were removed from this room by its owner")
        with pytest.raises(Removed):
            await rooms.admit(rid, jane_token, "", since=0)
