"""One contract, two backends: every test here runs on MemoryBus and on RedisBus."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import pytest
import trio
import trio.testing
import trio_asyncio
from redis.crc import key_slot

from chat import clock
from chat.bus import (
    ROOM_END,
    SUBSCRIPTION_FRAMES,
    Admission,
    Bus,
    BusUnavailable,
    Departure,
    MemberRecord,
    RoomRecord,
    keys,
)
from chat.bus.memory import MemoryBus
from chat.bus.redis import RedisBus

from .redis_server import RedisServer, open_redis_server, wait_until

PRESENCE_TIMEOUT = 0.9
COMMAND_TIMEOUT = 5.0


@dataclass
class Backend:
    bus: Bus
    redis: RedisServer | None = None

    async def our_keys(self, *names: str) -> list[str]:
        assert self.redis is not None
        return await self.redis.leftovers(*names)


@asynccontextmanager
async def running(bus: Bus) -> AsyncIterator[Bus]:
    async with trio.open_nursery() as nursery:
        await nursery.start(bus.run)
        yield bus
        nursery.cancel_scope.cancel()


@asynccontextmanager
async def redis_bus(url: str, **options: float) -> AsyncIterator[RedisBus]:
    """A RedisBus on its own trio-asyncio loop, as ``open_bus`` gives the server one."""
    async with trio_asyncio.open_loop() as loop:
        bus = RedisBus(
            url,
            loop=loop,
            presence_timeout_seconds=options.get("presence", PRESENCE_TIMEOUT),
            command_timeout_seconds=options.get("command_timeout", COMMAND_TIMEOUT),
        )
        async with running(bus):
            assert bus.ready
            yield bus


@pytest.fixture(params=["memory", "redis"])
async def backend(request: pytest.FixtureRequest) -> AsyncIterator[Backend]:
    if request.param == "memory":
        async with running(MemoryBus()) as bus:
            yield Backend(bus)
        return
    async with open_redis_server() as server, redis_bus(server.url) as bus:
        yield Backend(bus, server)


def new_room(max_users: int = 20, life: float = 600, **extra: object) -> RoomRecord:
    now = clock.now()
    return RoomRecord(
        room_id=secrets.token_urlsafe(12),
        name=extra.get("name", "Lobby"),  # type: ignore[arg-type]
        owner_name="Bob",
        password_hash=extra.get("password_hash"),  # type: ignore[arg-type]
        max_users=max_users,
        created_at=now,
        expires_at=now + life,
        destroy_on_owner_offline=bool(extra.get("destroy_on_owner_offline", True)),
    )


def member(name: str = "Ann", owner: bool = False) -> MemberRecord:
    return MemberRecord(secrets.token_hex(8), name, clock.now(), owner)


async def test_create_get_and_one_winner_deletes(backend: Backend) -> None:
    bus = backend.bus
    room = new_room(name=None, password_hash="$argon2id$hash", destroy_on_owner_offline=False)
    await bus.create_room(room)
    assert await bus.get_room(room.room_id) == room
    assert await bus.get_room("no-such-room") is None
    wins: list[bool] = []

    async def delete() -> None:
        wins.append(await bus.delete_room(room.room_id))

    async with trio.open_nursery() as nursery:
        for _ in range(10):
            nursery.start_soon(delete)
    assert sorted(wins) == [False] * 9 + [True]
    assert await bus.get_room(room.room_id) is None
    assert await bus.members(room.room_id) == []


async def test_admit_until_full_and_not_into_missing_rooms(backend: Backend) -> None:
    bus = backend.bus
    room = new_room(max_users=2)
    await bus.create_room(room)
    first, second, third = member("Ann"), member("Bob", owner=True), member("Cid")
    assert await bus.occupancy(room.room_id) == (room, 0)
    admitted = await bus.admit(room.room_id, first)
    assert (admitted.online_count, admitted.room) == (1, room)
    assert (await bus.admit(room.room_id, second)).status is Admission.ADMITTED
    assert await bus.occupancy(room.room_id) == (room, 2)
    full = await bus.admit(room.room_id, third)
    assert (full.status, full.online_count, full.room) == (Admission.FULL, 2, None)
    assert (await bus.admit("no-such-room", third)).status is Admission.NO_ROOM
    assert await bus.occupancy("no-such-room") is None
    listed = sorted(await bus.members(room.room_id), key=lambda m: m.display_name)
    assert listed == [first, second]


async def test_admission_is_atomic_under_a_race(backend: Backend) -> None:
    bus = backend.bus
    room = new_room(max_users=20)
    await bus.create_room(room)
    outcomes: list[Admission] = []

    async def knock() -> None:
        outcomes.append((await bus.admit(room.room_id, member())).status)

    async with trio.open_nursery() as nursery:
        for _ in range(60):
            nursery.start_soon(knock)
    assert outcomes.count(Admission.ADMITTED) == 20
    assert outcomes.count(Admission.FULL) == 40
    assert len(await bus.members(room.room_id)) == 20


async def test_depart_counts_and_tracks_the_owner(backend: Backend) -> None:
    bus = backend.bus
    room = new_room()
    await bus.create_room(room)
    owner, ann, cid = member("Bob", owner=True), member("Ann"), member("Cid")
    for who in (owner, ann, cid):
        await bus.admit(room.room_id, who)
    assert await bus.depart(room.room_id, ann.connection_id) == Departure(2, True)
    assert await bus.depart(room.room_id, ann.connection_id) is None
    assert await bus.depart(room.room_id, owner.connection_id) == Departure(1, False)
    assert [m.connection_id for m in await bus.members(room.room_id)] == [cid.connection_id]
    await bus.delete_room(room.room_id)
    assert await bus.depart(room.room_id, cid.connection_id) is None


async def test_expired_rooms_are_gone(backend: Backend) -> None:
    bus = backend.bus
    room = new_room(life=-1)
    await bus.create_room(room)
    assert await bus.get_room(room.room_id) is None
    assert await bus.occupancy(room.room_id) is None
    assert (await bus.admit(room.room_id, member())).status is Admission.NO_ROOM
    assert await bus.members(room.room_id) == []


async def test_counters_count_per_key_within_their_window(backend: Backend) -> None:
    bus = backend.bus
    key, other = f"create:{secrets.token_hex(4)}", f"create:{secrets.token_hex(4)}"
    seen = [await bus.count(key, 60) for _ in range(5)]
    assert [hits for hits, _ in seen] == [1, 2, 3, 4, 5]
    assert all(0 < left <= 60 for _, left in seen)
    assert (await bus.count(other, 60))[0] == 1


async def test_memory_counters_start_again_with_a_new_window(autojump_clock: trio.testing.MockClock) -> None:
    async with running(MemoryBus()) as bus:
        assert (await bus.count("k", 60))[0] == 1
        assert (await bus.count("k", 60))[0] == 2
        await trio.sleep(61)
        hits, left = await bus.count("k", 60)
        assert (hits, left) == (1, 60)


async def test_publish_reaches_every_subscriber_in_order_per_publisher(backend: Backend) -> None:
    bus = backend.bus
    room, other = new_room(), new_room()
    async with bus.subscribe(room.room_id) as first, bus.subscribe(room.room_id) as second:
        async with bus.subscribe(other.room_id) as elsewhere:

            async def publisher(tag: str) -> None:
                for i in range(200):
                    await bus.publish(room.room_id, f"{tag}{i}")

            async with trio.open_nursery() as nursery:
                nursery.start_soon(publisher, "a")
                nursery.start_soon(publisher, "b")
                for frames in (first, second):
                    with trio.fail_after(10):
                        got = [await frames.receive() for _ in range(400)]
                    assert [f for f in got if f[0] == "a"] == [f"a{i}" for i in range(200)]
                    assert [f for f in got if f[0] == "b"] == [f"b{i}" for i in range(200)]
            await bus.publish(other.room_id, ROOM_END)
            with trio.fail_after(10):
                assert await elsewhere.receive() == ROOM_END
            # Frames carry through unchanged, whatever they hold.
            odd = '{"text":"héllo \\u0000 ✓"}'
            await bus.publish(room.room_id, odd)
            with trio.fail_after(10):
                assert await first.receive() == odd


async def test_a_burst_to_several_rooms_arrives_whole_and_in_order(backend: Backend) -> None:
    """Frames published back to back (RedisBus pipelines them in batches) arrive one by one
    and unchanged, each room's in order; one room's end reaches that room alone."""
    bus = backend.bus
    one, two = new_room(), new_room()
    async with bus.subscribe(one.room_id) as first, bus.subscribe(two.room_id) as second:
        sent: dict[str, list[str]] = {one.room_id: [], two.room_id: []}
        for i in range(100):
            room_id = one.room_id if i % 3 else two.room_id
            frame = f"\x01{i}" if i == 7 else f'{{"n":{i},"text":"a\nb, ✓"}}'
            sent[room_id].append(frame)
            await bus.publish(room_id, frame)
        await bus.publish(two.room_id, ROOM_END)
        with trio.fail_after(10):
            assert [await first.receive() for _ in sent[one.room_id]] == sent[one.room_id]
            assert [await second.receive() for _ in sent[two.room_id]] == sent[two.room_id]
            assert await second.receive() == ROOM_END
        assert first.statistics().current_buffer_used == 0


async def test_a_subscriber_far_behind_still_gets_every_frame_in_order(backend: Backend) -> None:
    """More frames than a subscription holds arrive while nobody reads: the bus waits for
    the reader instead of dropping any (on Redis, the reader waits and Redis buffers)."""
    bus = backend.bus
    room, other = new_room(), new_room()
    count = SUBSCRIPTION_FRAMES + 100
    async with bus.subscribe(room.room_id) as frames, bus.subscribe(other.room_id) as elsewhere:

        async def publisher() -> None:
            for i in range(count):
                await bus.publish(room.room_id, str(i))
            await bus.publish(other.room_id, "after")

        async def full() -> bool:
            return frames.statistics().current_buffer_used == SUBSCRIPTION_FRAMES

        async with trio.open_nursery() as nursery:
            nursery.start_soon(publisher)
            await wait_until(full, 10)
            with trio.fail_after(10):
                got = [await frames.receive() for _ in range(count)]
                assert await elsewhere.receive() == "after"
    assert got == [str(i) for i in range(count)]


async def test_unsubscribed_rooms_get_nothing_and_can_subscribe_again(backend: Backend) -> None:
    bus = backend.bus
    room = new_room()
    async with bus.subscribe(room.room_id) as frames:
        await bus.publish(room.room_id, "one")
        with trio.fail_after(10):
            assert await frames.receive() == "one"
    # Nobody listens: publishing must neither fail nor wait for anyone.
    with trio.fail_after(10):
        for i in range(50):
            await bus.publish(room.room_id, f"lost{i}")
    async with bus.subscribe(room.room_id) as frames:
        await bus.publish(room.room_id, "two")
        # Frames published just before a subscription began may still reach it (Redis
        # publishes them asynchronously); everything published after it begins must.
        with trio.fail_after(10):
            while (frame := await frames.receive()) != "two":
                assert frame.startswith("lost")


async def test_memory_bus_has_no_ghosts() -> None:
    async with running(MemoryBus()) as bus, trio.open_nursery() as nursery:
        nursery.start_soon(bus.reap)
        await trio.testing.wait_all_tasks_blocked()
        nursery.cancel_scope.cancel()  # Still waiting: one process never orphans a member.


# Redis only: what a shared store must add to the contract.


@pytest.mark.parametrize("room_id", ["Zq3x_9-AbCdEfGhIjKlM", "odd}{id:with:colons"])
def test_a_rooms_keys_and_channel_share_one_cluster_slot(room_id: str) -> None:
    room_keys = [keys.room_meta(room_id), keys.room_users(room_id), keys.room_channel(room_id)]
    room_keys += [*keys.room_history(room_id), keys.room_ended(room_id)]
    assert len(set(room_keys)) == len(room_keys)
    assert {key_slot(key.encode()) for key in room_keys} == {key_slot(keys.room_meta(room_id).encode())}
    assert all(key.startswith(f"room:{{{room_id}}}:") for key in room_keys)
    assert keys.room_of_channel(keys.room_channel(room_id)) == room_id


async def test_redis_keys_live_no_longer_than_the_room() -> None:
    async with open_redis_server() as server, redis_bus(server.url) as bus:
        room = new_room(life=120)
        await bus.create_room(room)
        owner = member("Bob", owner=True)
        await bus.admit(room.room_id, owner)
        backend = Backend(bus, server)
        found = await backend.our_keys(room.room_id, owner.connection_id, bus.instance_id)
        assert {keys.room_meta(room.room_id), keys.room_users(room.room_id), keys.conn(owner.connection_id)} <= set(
            found
        )
        fields = await server.command("HGETALL", keys.conn(owner.connection_id))
        assert fields["instance"] == bus.instance_id and fields["display_name"] == "Bob"
        for key in found:
            ttl_ms = await server.command("PTTL", key)
            assert 0 < ttl_ms <= 120_000, (key, ttl_ms)


async def test_redis_leaves_no_key_once_rooms_end() -> None:
    async with open_redis_server() as server, redis_bus(server.url) as bus:
        backend = Backend(bus, server)
        closed, departed, expired = new_room(), new_room(), new_room(life=0.3)
        names = [bus.instance_id]
        for room in (closed, departed, expired):
            await bus.create_room(room)
            for who in (member("Bob", owner=True), member("Ann")):
                await bus.admit(room.room_id, who)
                names.append(who.connection_id)
            names.append(room.room_id)
        await bus.delete_room(closed.room_id)
        for who in await bus.members(departed.room_id):
            await bus.depart(departed.room_id, who.connection_id)
        await bus.delete_room(departed.room_id)
        # The expired room's members leave after Redis expired the room, as sockets do.
        leavers = await bus.members(expired.room_id)

        async def room_expired() -> bool:
            return await bus.get_room(expired.room_id) is None

        await wait_until(room_expired, 5)
        for who in leavers:
            assert await bus.depart(expired.room_id, who.connection_id) is None
        assert await backend.our_keys(*names) == []


async def test_redis_reaps_the_members_of_a_dead_instance() -> None:
    async with open_redis_server() as server, redis_bus(server.url) as survivor:
        room = new_room()
        await survivor.create_room(room)
        alive = member("Ann")
        await survivor.admit(room.room_id, alive)
        ghost = member("Bob", owner=True)
        async with redis_bus(server.url) as doomed:
            await doomed.admit(room.room_id, ghost)
        # ``doomed`` stopped without departing anyone, like a killed process.
        with trio.fail_after(PRESENCE_TIMEOUT * 4):
            # A shared Redis may also hold the ghosts of other tests' buses: skip those.
            while not (ours := [g for g in await survivor.reap() if g.room_id == room.room_id]):
                pass
        assert [g.member for g in ours] == [ghost]
        assert await survivor.depart(room.room_id, ghost.connection_id) == Departure(1, False)
        assert [m.connection_id for m in await survivor.members(room.room_id)] == [alive.connection_id]


async def test_a_redis_that_stops_answering_counts_as_down_until_it_answers_again() -> None:
    bound = 0.3
    async with open_redis_server(private=True) as server, redis_bus(server.url, command_timeout=bound) as bus:
        room = new_room()
        await bus.create_room(room)
        server.pause()
        try:
            with trio.fail_after(bound * 10):
                with pytest.raises(BusUnavailable):
                    await bus.get_room(room.room_id)
            assert not bus.ready
            with pytest.raises(BusUnavailable):  # Fails fast now, without waiting again.
                await bus.admit(room.room_id, member())
        finally:
            server.resume()

        async def answering() -> bool:
            return bus.ready

        await wait_until(answering, 10)
        fetched = await bus.get_room(room.room_id)
        assert fetched is not None and fetched.room_id == room.room_id


async def test_redis_tells_the_sender_when_a_frame_it_took_may_be_lost() -> None:
    """Redis stops answering with a frame in the publisher's hands: nobody can say whether
    it went out, so its sender is told; it is not lost in silence."""
    bound = 0.3
    async with open_redis_server(private=True) as server, redis_bus(server.url, command_timeout=bound) as bus:
        room = new_room()
        await bus.create_room(room)
        told = trio.Event()
        async with bus.subscribe(room.room_id) as frames:
            await bus.publish(room.room_id, "before", told.set)
            assert await frames.receive() == "before"
            assert not told.is_set()
            server.pause()
            try:
                await bus.publish(room.room_id, "lost?", told.set)
                with trio.fail_after(bound * 10):
                    await told.wait()
                assert not bus.ready
            finally:
                server.resume()


async def test_redis_publishes_frames_queued_behind_a_lost_batch_once_it_is_back() -> None:
    """Frames still waiting for the publisher when Redis went away are not lost: the next
    session publishes them, and their sender is not told otherwise."""
    bound = 0.3
    async with open_redis_server(private=True) as server, redis_bus(server.url, command_timeout=bound) as bus:
        room = new_room()
        await bus.create_room(room)
        in_doubt, queued_lost = trio.Event(), trio.Event()
        async with bus.subscribe(room.room_id) as frames:
            server.pause()
            try:
                await bus.publish(room.room_id, "in doubt", in_doubt.set)
                # Once everything waits, that frame is with Redis and this one waits behind it.
                await trio.testing.wait_all_tasks_blocked()
                await bus.publish(room.room_id, "queued", queued_lost.set)
                with trio.fail_after(bound * 10):
                    await in_doubt.wait()
            finally:
                server.resume()
            with trio.fail_after(10):
                received = [await frames.receive()]
                while received[-1] != "queued":
                    received.append(await frames.receive())
        # Redis may still have read the frame in doubt off the old connection.
        assert received in (["queued"], ["in doubt", "queued"])
        assert not queued_lost.is_set()
