"""One contract, two backends: every test here runs on MemoryBus and on RedisBus."""

from __future__ import annotations

import json
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partial

import pytest
import trio
import trio.testing
import trio_asyncio
from redis.crc import key_slot

from chat import clock, protocol
from chat.bus import (
    ENDED_SECONDS,
    ROOM_END,
    ROOM_RESYNC,
    SUBSCRIPTION_FRAMES,
    Admission,
    Bus,
    BusUnavailable,
    Departure,
    History,
    MemberRecord,
    Position,
    Reading,
    RoomRecord,
    keys,
    memory,
    offset_of,
    scripts,
)
from chat.bus.memory import MemoryBus
from chat.bus.redis import RedisBus

from .redis_cluster import ClusterKeys, SharedCluster
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
async def redis_bus(
    url: str, history_size: int = 50, history_bytes: int = 262_144, cluster_nodes: str = "", **options: float
) -> AsyncIterator[RedisBus]:
    """A RedisBus on its own trio-asyncio loop, as ``open_bus`` gives the server one; on the
    cluster of ``cluster_nodes`` when given."""
    async with trio_asyncio.open_loop() as loop:
        bus = RedisBus(
            url,
            loop=loop,
            presence_timeout_seconds=options.get("presence", PRESENCE_TIMEOUT),
            command_timeout_seconds=options.get("command_timeout", COMMAND_TIMEOUT),
            history_size=history_size,
            history_bytes=history_bytes,
            cluster_nodes=cluster_nodes,
        )
        async with running(bus):
            assert bus.ready
            yield bus


BACKENDS = ["memory", "redis", "cluster"]
# A backend's name, and the shared cluster its "cluster" runs on.
Kind = tuple[str, SharedCluster]


@pytest.fixture(params=BACKENDS)
async def backend(request: pytest.FixtureRequest, shared_cluster: SharedCluster) -> AsyncIterator[Backend]:
    if request.param == "memory":
        async with running(MemoryBus()) as bus:
            yield Backend(bus)
        return
    if request.param == "cluster":
        cluster = await shared_cluster.get()
        async with redis_bus("", cluster_nodes=cluster.seeds) as bus:
            yield Backend(bus, ClusterKeys(cluster))
        return
    async with open_redis_server() as server, redis_bus(server.url) as bus:
        yield Backend(bus, server)


@pytest.fixture(params=BACKENDS)
def kind(request: pytest.FixtureRequest, shared_cluster: SharedCluster) -> Kind:
    return str(request.param), shared_cluster


@asynccontextmanager
async def bus_of(
    kind: Kind, history_size: int = 50, history_bytes: int = 262_144
) -> AsyncIterator[Bus]:
    """A bus of ``kind`` with the given history settings (the ``backend`` fixture's are the defaults)."""
    name, shared = kind
    if name == "memory":
        async with running(MemoryBus(history_size=history_size, history_bytes=history_bytes)) as bus:
            yield bus
        return
    if name == "cluster":
        cluster = await shared.get()
        async with redis_bus("", history_size, history_bytes, cluster_nodes=cluster.seeds) as bus:
            yield bus
        return
    async with open_redis_server() as server, redis_bus(server.url, history_size, history_bytes) as bus:
        yield bus


class Told:
    """A post's receipt, as a sender keeps it."""

    def __init__(self) -> None:
        self.offsets: list[int] = []
        self.losses = 0
        self.done = trio.Event()

    def posted(self, offset: int) -> None:
        self.offsets.append(offset)
        self.done.set()

    def lost(self) -> None:
        self.losses += 1
        self.done.set()

    async def wait(self) -> None:
        with trio.fail_after(10):
            await self.done.wait()


def chat(text: str) -> str:
    return json.dumps({"type": "message", "text": text}, separators=(",", ":"), ensure_ascii=False)


def texts(frames: list[str]) -> list[str]:
    return [json.loads(frame)["text"] for frame in frames]


async def post_all(bus: Bus, room_id: str, *messages: str) -> list[int]:
    """Post one after another, each told before the next is sent: their offsets."""
    offsets = []
    for message in messages:
        told = Told()
        await bus.post(room_id, message, told)
        await told.wait()
        assert told.losses == 0
        offsets += told.offsets
    return offsets


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
    assert await bus.occupancy(room.room_id) == (room, 0, False)
    admitted = await bus.admit(room.room_id, first)
    assert (admitted.online_count, admitted.room) == (1, room)
    assert (await bus.admit(room.room_id, second)).status is Admission.ADMITTED
    assert await bus.occupancy(room.room_id) == (room, 2, False)
    full = await bus.admit(room.room_id, third)
    assert (full.status, full.online_count, full.room) == (Admission.FULL, 2, None)
    assert (await bus.admit("no-such-room", third)).status is Admission.NO_ROOM
    assert await bus.occupancy("no-such-room") is None
    listed = sorted(await bus.members(room.room_id), key=lambda m: m.display_name)
    assert listed == [first, second]


async def test_a_count_and_a_look_at_the_room_in_one_step(backend: Backend) -> None:
    bus = backend.bus
    room = new_room()._replace(owner_key="bob")
    await bus.create_room(room)
    await bus.admit(room.room_id, member("Jane"), "tJane", "jane")
    key = f"join:{secrets.token_hex(8)}"
    (hits, left), found = await bus.count_and_occupancy(key, 60, room.room_id, "jane")
    assert hits == 1 and 0 < left <= 60 and found == (room, 1, True)
    (hits, _), found = await bus.count_and_occupancy(key, 60, room.room_id, "ann")
    assert hits == 2 and found == (room, 1, False)
    (hits, _), found = await bus.count_and_occupancy(key, 60, "no-such-room")
    assert hits == 3 and found is None


async def test_a_count_and_a_creation_in_one_step_create_only_within_the_limit(backend: Backend) -> None:
    bus = backend.bus
    key = f"create:{secrets.token_hex(8)}"
    first, second = new_room(), new_room()
    hits, left = await bus.count_and_create(key, 60, first, 1)
    assert hits == 1 and 0 < left <= 60
    assert await bus.get_room(first.room_id) == first
    hits, _ = await bus.count_and_create(key, 60, second, 1)
    assert hits == 2
    assert await bus.get_room(second.room_id) is None  # over the limit: counted, not created


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


async def test_concurrent_creations_counts_and_admissions_each_get_their_own_answer(backend: Backend) -> None:
    """Many requests at once (on Redis their commands share round trips): every room is
    created whole with its expiry, every count and seat is its own caller's."""
    bus = backend.bus
    rooms = [new_room(max_users=3, name=f"Room {i}") for i in range(40)]
    hits: dict[str, list[int]] = {}
    seated: dict[str, list[int]] = {}

    async def open_room(room: RoomRecord) -> None:
        hits.setdefault(room.room_id, []).append((await bus.count(f"create:{room.room_id}", 60))[0])
        await bus.create_room(room)
        found = await bus.occupancy(room.room_id)
        assert found == (room, 0, False)
        seated[room.room_id] = []

    async with trio.open_nursery() as nursery:
        for room in rooms:
            nursery.start_soon(open_room, room)
    assert all(counts == [1] for counts in hits.values()) and len(hits) == len(rooms)

    async def knock(room: RoomRecord) -> None:
        admitted = await bus.admit(room.room_id, member())
        seated[room.room_id].append(admitted.online_count if admitted.status is Admission.ADMITTED else 0)
        if admitted.room is not None:
            assert admitted.room == room

    async with trio.open_nursery() as nursery:
        for room in rooms:
            for _ in range(4):
                nursery.start_soon(knock, room)
    for room in rooms:
        assert sorted(seated[room.room_id]) == [0, 1, 2, 3]
        assert await bus.get_room(room.room_id) == room
    if backend.redis is not None:
        for room in rooms[:3]:
            assert 0 < await backend.redis.command("PTTL", keys.room_meta(room.room_id)) <= 600_000


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


async def test_presence_says_how_many_are_online_as_it_goes_out(backend: Backend) -> None:
    """Ann is seated, then Bob, and Bob's arrival is told first, as when their sockets enter
    on two instances and Bob's is subscribed sooner: each frame counts the members online
    when it is published, so the newest frame a member has says the room's count."""
    bus = backend.bus
    room = new_room()
    await bus.create_room(room)
    ann, bob = member("Ann", owner=True), member("Bob")

    def told(who: MemberRecord, event: str) -> str:
        return protocol.presence(room.room_id, event, who.connection_id, who.display_name, who.is_owner)

    async with bus.subscribe(room.room_id) as frames:
        for who in (ann, bob):
            await bus.admit(room.room_id, who)
        bobs, anns = told(bob, "user_online"), told(ann, "user_online")
        await bus.announce(room.room_id, bobs)
        await bus.announce(room.room_id, anns)
        with trio.fail_after(10):
            got = [json.loads(await frames.receive()) for _ in range(2)]
        await bus.depart(room.room_id, bob.connection_id)
        await bus.announce(room.room_id, told(bob, "user_offline"))
        with trio.fail_after(10):
            got.append(json.loads(await frames.receive()))
    assert [(f["display_name"], f["event"], f["online_count"]) for f in got] == [
        ("Bob", "user_online", 2),
        ("Ann", "user_online", 2),
        ("Bob", "user_offline", 1),
    ]
    # The frame as encoded, with the count added and nothing else changed.
    assert got[0] == {**json.loads(bobs), "online_count": 2}
    assert got[1] == {**json.loads(anns), "online_count": 2}


async def test_a_name_is_one_senders_until_its_last_seat_departs(backend: Backend) -> None:
    bus = backend.bus
    room = new_room()._replace(owner_key="bob")
    await bus.create_room(room)
    rid = room.room_id
    jane, tab, other = member("Jane"), member("Jane"), member("JANE")
    assert (await bus.admit(rid, jane, "tJane", "jane")).status is Admission.ADMITTED
    assert (await bus.admit(rid, tab, "tJane", "jane")).status is Admission.ADMITTED  # Same sender.
    assert (await bus.admit(rid, other, "tOther", "jane")).status is Admission.NAME_TAKEN
    # The first look a REST join takes sees it too, without listing the members.
    assert await bus.occupancy(rid, "jane") == (room, 2, True)
    assert await bus.occupancy(rid, "ann") == (room, 2, False)
    # The owner's name is the owner's alone, whether or not the owner is online.
    assert (await bus.admit(rid, member("BOB"), "tBob?", "bob")).status is Admission.NAME_TAKEN
    assert (await bus.admit(rid, member("Bob", owner=True), "tBob", "bob")).status is Admission.ADMITTED
    await bus.depart(rid, jane.connection_id)
    assert (await bus.admit(rid, other, "tOther", "jane")).status is Admission.NAME_TAKEN
    await bus.depart(rid, tab.connection_id)
    assert await bus.occupancy(rid, "jane") == (room, 1, False)
    assert (await bus.admit(rid, other, "tOther", "jane")).status is Admission.ADMITTED


async def test_a_revoked_sender_is_refused_and_cannot_claim_its_seat(backend: Backend) -> None:
    bus = backend.bus
    room = new_room()
    await bus.create_room(room)
    rid = room.room_id
    jane = member("Jane")
    await bus.admit(rid, jane, "tJane", "jane")
    assert await bus.revoke(rid, "no-such-member") is None
    assert not await bus.revoked(rid, "tJane")
    assert await bus.revoke(rid, jane.connection_id) == "tJane"
    assert await bus.revoked(rid, "tJane") and not await bus.revoked(rid, "tAnn")
    assert await bus.drop(rid, jane.connection_id, "tJane") is not None
    assert await bus.claim(rid, "tJane") is None
    assert (await bus.admit(rid, member("Jane"), "tJane", "jane")).status is Admission.REMOVED
    await bus.depart(rid, jane.connection_id)
    assert (await bus.admit(rid, member("Jane"), "tNew", "jane")).status is Admission.ADMITTED
    await bus.delete_room(rid)
    assert not await bus.revoked(rid, "tJane")


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


async def test_memory_bus_has_no_ghosts(autojump_clock: trio.testing.MockClock) -> None:
    """One process never orphans a member: however long a seated member sits, no sweep hands it back."""
    async with running(MemoryBus()) as bus:
        room = new_room(life=7 * 86_400)
        await bus.create_room(room)
        await bus.admit(room.room_id, member("Bob", owner=True))
        # A day: far longer than any presence sweep interval.
        with trio.move_on_after(86_400) as waited:
            ghosts = await bus.reap()
            raise AssertionError(f"reap() returned {ghosts!r} on a single process")
        assert waited.cancelled_caught
        assert [m.display_name for m in await bus.members(room.room_id)] == ["Bob"]


# Redis only: what a shared store must add to the contract.


@pytest.mark.parametrize("room_id", ["Zq3x_9-AbCdEfGhIjKlM", "odd}{id:with:colons"])
def test_a_rooms_keys_and_channel_share_one_cluster_slot(room_id: str) -> None:
    room_keys = [keys.room_meta(room_id), keys.room_users(room_id), keys.room_channel(room_id)]
    room_keys += [*keys.room_history(room_id), keys.room_ended(room_id)]
    room_keys += [keys.room_dropped(room_id), keys.room_read(room_id), keys.conn(room_id, "c1")]
    room_keys += [keys.room_names(room_id), keys.room_revoked(room_id)]
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
        await post_all(bus, room.room_id, chat("kept"))
        told = Told()
        await bus.post(room.room_id, chat("deduplicated"), told, dedupe="Bob:1")
        await told.wait()
        assert await bus.mark_read(room.room_id, owner.connection_id, 1) == 1
        ann = member("Ann")
        await bus.admit(room.room_id, ann, "tAnn", "ann")
        assert await bus.revoke(room.room_id, ann.connection_id) == "tAnn"
        backend = Backend(bus, server)
        found = await backend.our_keys(room.room_id, owner.connection_id, bus.instance_id)
        room_keys = {keys.room_meta(room.room_id), keys.room_users(room.room_id), *keys.room_history(room.room_id)}
        room_keys |= {keys.room_read(room.room_id), keys.room_names(room.room_id), keys.room_revoked(room.room_id)}
        assert room_keys | {keys.conn(room.room_id, owner.connection_id)} <= set(found)
        fields = await server.command("HGETALL", keys.conn(room.room_id, owner.connection_id))
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
                await bus.admit(room.room_id, who, "t" + who.display_name, who.display_name.casefold())
                names.append(who.connection_id)
            assert await bus.revoke(room.room_id, names[-1]) == "tAnn"  # The revoked senders too.
            names.append(room.room_id)
            # Its history, its positions and its senders' dedupe keys go with it too.
            told = Told()
            await bus.post(room.room_id, chat("hello"), told, dedupe="Ann:1")
            await told.wait()
            assert told.offsets == [1]
            assert await bus.mark_read(room.room_id, names[-2], 1) == 1  # Read offsets too.
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


async def restarted_empty(server: RedisServer, bus: RedisBus, room_id: str) -> None:
    """Restart ``server`` with nothing in it; return once ``bus`` has put ``room_id`` back."""
    await server.stop()
    await server.start()

    async def restored() -> bool:
        return bus.ready and await bus.get_room(room_id) is not None

    await wait_until(restored, 10)


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


async def test_redis_indexes_each_admitted_member_and_no_refused_one() -> None:
    """The instance's index (which a survivor reaps from) gets a member with its seat, in
    the same round trip on one Redis, and never one its room refused."""
    async with open_redis_server() as server, redis_bus(server.url) as bus:
        room = new_room(max_users=1)
        await bus.create_room(room)
        ann, bob = member("Ann"), member("Bob")
        assert (await bus.admit(room.room_id, ann)).status is Admission.ADMITTED
        assert (await bus.admit(room.room_id, bob)).status is Admission.FULL
        assert (await bus.admit("no-such-room", bob)).status is Admission.NO_ROOM
        index = await server.command("HGETALL", keys.instance_conns(bus.instance_id))
        assert index == {ann.connection_id: room.room_id}
        assert bus.instance_id in await server.command("SMEMBERS", keys.INSTANCES)
        ttl_ms = await server.command("PTTL", keys.instance_conns(bus.instance_id))
        assert 0 < ttl_ms <= (room.expires_at - clock.now()) * 1000 + 1000


async def test_redis_reaps_an_instance_that_emptied_and_filled_again() -> None:
    """Its last member's departure took it out of the registry: its next member puts it back,
    or a reaper would never find that member once the instance dies."""
    async with open_redis_server() as server, redis_bus(server.url) as survivor:
        room = new_room()
        await survivor.create_room(room)
        rid = room.room_id
        ghost = member("Bob")
        async with redis_bus(server.url) as doomed:
            first = member("Ann")
            await doomed.admit(rid, first)
            await doomed.depart(rid, first.connection_id)
            await doomed.admit(rid, ghost)
        with trio.fail_after(PRESENCE_TIMEOUT * 4):
            while not (ours := [g for g in await survivor.reap() if g.room_id == rid]):
                pass
        assert [g.member for g in ours] == [ghost]


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


async def test_redis_requests_waiting_when_redis_stops_answering_fail_and_later_ones_succeed() -> None:
    """Creations, counts and admissions sent together while Redis stops answering all fail
    (the server answers 503), none hangs; once Redis is back the same steps work."""
    bound = 0.3
    async with open_redis_server(private=True) as server, redis_bus(server.url, command_timeout=bound) as bus:
        room = new_room()
        await bus.create_room(room)
        failures: list[str] = []

        async def expect_unavailable(name: str, step: Callable[[], Awaitable[object]]) -> None:
            with pytest.raises(BusUnavailable):
                await step()
            failures.append(name)

        server.pause()
        try:
            with trio.fail_after(bound * 10):
                async with trio.open_nursery() as nursery:
                    for i in range(5):
                        nursery.start_soon(expect_unavailable, f"create {i}", partial(bus.create_room, new_room()))
                        nursery.start_soon(expect_unavailable, f"count {i}", partial(bus.count, "create:x", 60))
                        nursery.start_soon(expect_unavailable, f"admit {i}", partial(bus.admit, room.room_id, member()))
            assert len(failures) == 15
            assert not bus.ready
        finally:
            server.resume()

        async def answering() -> bool:
            return bus.ready

        await wait_until(answering, 10)
        later = new_room()
        await bus.create_room(later)
        assert await bus.occupancy(later.room_id) == (later, 0, False)
        assert (await bus.admit(later.room_id, member())).status is Admission.ADMITTED


async def test_redis_steps_go_on_after_its_scripts_are_flushed() -> None:
    """A Redis whose scripts were flushed under a running instance (NOSCRIPT): counts and
    admissions load them again and answer, in the same session."""
    async with open_redis_server(private=True) as server, redis_bus(server.url) as bus:
        room = new_room()
        await bus.create_room(room)
        assert (await bus.count("join:a", 60))[0] == 1
        await server.command("SCRIPT", "FLUSH")
        async with trio.open_nursery() as nursery:
            nursery.start_soon(bus.count, "join:a", 60)
            nursery.start_soon(bus.admit, room.room_id, member())
        assert (await bus.count("join:a", 60))[0] == 3
        assert (await bus.occupancy(room.room_id)) == (room, 1, False)
        assert bus.ready and bus.reconnects == 0


async def test_redis_presence_goes_out_after_its_scripts_are_flushed() -> None:
    """Presence has nobody to tell it was lost: with Redis's scripts flushed under a running
    instance, the next arrival still reaches the room, counted."""
    async with open_redis_server(private=True) as server, redis_bus(server.url) as bus:
        room, ann = new_room(), member("Ann")
        await bus.create_room(room)
        await bus.admit(room.room_id, ann)
        async with bus.subscribe(room.room_id) as frames:
            await server.command("SCRIPT", "FLUSH")
            arrival = protocol.presence(room.room_id, "user_online", ann.connection_id, "Ann")
            await bus.announce(room.room_id, arrival)
            with trio.fail_after(10):
                assert json.loads(await frames.receive()) == {**json.loads(arrival), "online_count": 1}


async def test_redis_runs_each_command_of_a_step_once_when_some_of_its_scripts_were_flushed() -> None:
    """Redis knows a step's first script but not the next (flushed, and loaded again by
    another instance in between): the seat is taken once, and the member is in, not told
    its own seat filled the room."""
    async with open_redis_server(private=True) as server, redis_bus(server.url) as bus:
        room = new_room(max_users=1)
        await bus.create_room(room)
        await server.command("SCRIPT", "FLUSH")
        await server.command("SCRIPT", "LOAD", scripts.ADMIT)
        admitted = await bus.admit(room.room_id, member(), read=Reading(None, None, 50))
        assert (admitted.status, admitted.online_count) == (Admission.ADMITTED, 1)
        assert (await bus.occupancy(room.room_id)) == (room, 1, False)
        refused = await bus.admit(room.room_id, member("Cy"))
        assert (refused.status, refused.online_count) == (Admission.FULL, 1)


async def test_redis_sends_no_script_it_has_not_loaded() -> None:
    """Scripts go to Redis before the first step that calls them in a session: two instances
    starting together on one Redis never run half of a step (see the test above), and
    Redis refuses none of their steps' commands NOSCRIPT."""
    async with open_redis_server(private=True) as server:
        async with redis_bus(server.url) as one, redis_bus(server.url) as other:
            before = await _noscript_errors(server)
            room = new_room(max_users=40)
            await one.create_room(room)
            async with trio.open_nursery() as nursery:
                for bus in (one, other) * 10:
                    nursery.start_soon(partial(bus.admit, room.room_id, member(), read=Reading(None, None, 50)))
                    nursery.start_soon(bus.count_and_occupancy, "join:a", 60, room.room_id)
            assert (await one.occupancy(room.room_id)) == (room, 20, False)
            assert await _noscript_errors(server) == before


async def _noscript_errors(server: RedisServer) -> int:
    errors: dict[str, dict[str, int]] = await server.command("INFO", "errorstats")
    return errors.get("errorstat_NOSCRIPT", {}).get("count", 0)


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
    # The frame behind must be queued before Redis's silence ends the session (a publish
    # then is refused at once): a bound of a second leaves a loaded machine room for that.
    bound = 1.0
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
        # The subscription is told it was subscribed again, before anything published after.
        assert received[0] == ROOM_RESYNC
        # Redis may still have read the frame in doubt off the old connection.
        assert received[1:] in (["queued"], ["in doubt", "queued"])
        assert not queued_lost.is_set()


# Positions and history: the same contract on both buses.


async def test_posts_get_consecutive_offsets_in_delivery_order(backend: Backend) -> None:
    """Two senders post at once: every subscriber sees offsets 1, 2, 3... with no gap, in
    the order of the offsets; each post's receipt names its frame's offset; a plain frame
    published between a sender's posts keeps its place among them and carries no offset."""
    bus = backend.bus
    room = new_room()
    await bus.create_room(room)
    receipts: dict[str, Told] = {}

    async def sender(tag: str) -> None:
        for i in range(100):
            receipts[f"{tag}{i}"] = told = Told()
            await bus.post(room.room_id, chat(f"{tag}{i}"), told)
            if i == 50:
                await bus.publish(room.room_id, f'{{"type":"presence","who":"{tag}"}}')

    async with bus.subscribe(room.room_id) as first, bus.subscribe(room.room_id) as second:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(sender, "a")
            nursery.start_soon(sender, "b")
        seen = []
        for frames in (first, second):
            with trio.fail_after(10):
                seen.append([await frames.receive() for _ in range(202)])
    assert seen[0] == seen[1]
    messages = [f for f in seen[0] if offset_of(f) is not None]
    assert [offset_of(f) for f in messages] == list(range(1, 201))
    assert all(f.startswith(f'{{"offset":{offset_of(f)},"type":"message"') for f in messages)
    for tag in "ab":
        mine = [f for f in seen[0] if f'"{tag}' in f]
        plain = [i for i, f in enumerate(mine) if offset_of(f) is None]
        assert plain == [51] and texts(mine[:51] + mine[52:]) == [f"{tag}{i}" for i in range(100)]
    for told in receipts.values():
        await told.wait()
    assert {text: told.offsets for text, told in receipts.items()} == {
        json.loads(f)["text"]: [offset_of(f)] for f in messages
    }


async def test_history_is_oldest_first_and_capped_by_count_and_bytes(kind: Kind) -> None:
    async with bus_of(kind, history_size=5) as bus:
        room = new_room()
        await bus.create_room(room)
        empty = await bus.history(room.room_id, None, None, 50)
        assert empty.position.epoch and empty.position.offset == 0
        assert (empty.frames, empty.complete) == ([], True)
        assert await post_all(bus, room.room_id, *(chat(f"m{i}") for i in range(1, 9))) == list(range(1, 9))
        newest = await bus.history(room.room_id, None, None, 50)
        assert newest.position == Position(empty.position.epoch, 8)
        assert (texts(newest.frames), newest.complete) == (["m4", "m5", "m6", "m7", "m8"], False)
        assert newest.frames[0] == '{"offset":4,"type":"message","text":"m4"}'
        assert texts((await bus.history(room.room_id, None, None, 2)).frames) == ["m7", "m8"]
        # A burst (one call on Redis) that ends on a resend is still capped.
        burst = [Told() for _ in range(5)]
        for i, told in enumerate(burst):
            await bus.post(room.room_id, chat(f"m{min(i, 3) + 9}"), told, dedupe=f"k{min(i, 3)}")
        for told in burst:
            await told.wait()
        assert [told.offsets for told in burst] == [[9], [10], [11], [12], [12]]
        assert texts((await bus.history(room.room_id, None, None, 50)).frames) == ["m8", "m9", "m10", "m11", "m12"]
        assert not (await bus.history(room.room_id, 6, empty.position.epoch, 50)).complete
    # Bytes, not characters: three of these frames fit, not six.
    wide = chat("é" * 40)
    cap = 3 * len(f'{{"offset":1,{wide[1:]}'.encode())
    async with bus_of(kind, history_size=50, history_bytes=cap) as bus:
        room = new_room()
        await bus.create_room(room)
        await post_all(bus, room.room_id, *[wide] * 7)
        kept = await bus.history(room.room_id, None, None, 50)
        assert [offset_of(f) for f in kept.frames] == [5, 6, 7] and not kept.complete
        small = await bus.history(room.room_id, 4, kept.position.epoch, 50)
        assert [offset_of(f) for f in small.frames] == [5, 6, 7] and small.complete


async def test_a_resume_gets_exactly_what_it_missed_or_is_told_it_cannot(kind: Kind) -> None:
    async with bus_of(kind, history_size=5) as bus:
        room = new_room()
        await bus.create_room(room)
        await post_all(bus, room.room_id, *(chat(f"m{i}") for i in range(1, 11)))
        epoch = (await bus.history(room.room_id, None, None, 0)).position.epoch

        async def resume(since: int | None, at: str | None = epoch, limit: int = 50) -> tuple[list[int | None], bool]:
            got: History = await bus.history(room.room_id, since, at, limit)
            assert got.position.epoch == epoch and got.position.offset == 10
            return [offset_of(f) for f in got.frames], got.complete

        assert await resume(7) == ([8, 9, 10], True)
        assert await resume(10) == ([], True)
        assert await resume(5) == ([6, 7, 8, 9, 10], True)  # The oldest kept is the next one.
        assert await resume(5, limit=2) == ([6, 7], True)  # Pages: the rest is still kept.
        assert await resume(4) == ([], False)  # 5 is no longer kept: nothing, never a gap.
        assert await resume(0) == ([], False)
        assert await resume(7, at="another-epoch") == ([], False)
        assert await resume(7, at=None) == ([], False)
        assert await resume(11) == ([], False)  # Ahead of the room: not this room's epoch.
        gone = await bus.history("no-such-room", 3, epoch, 50)
        assert (gone.position.epoch, gone.position.offset, gone.frames, gone.complete) == ("", 0, [], False)


async def test_an_admission_may_bring_the_history_as_history_reads_it(kind: Kind) -> None:
    """On one Redis the seat comes with the history asked for (one round trip); other
    backends leave it to ``history``. What comes is what ``history`` reads."""
    async with bus_of(kind, history_size=5) as bus:
        room = new_room()
        await bus.create_room(room)
        await post_all(bus, room.room_id, *(chat(f"m{i}") for i in range(1, 5)))
        epoch = (await bus.history(room.room_id, None, None, 0)).position.epoch
        for read in (Reading(None, None, 3), Reading(2, epoch, 50), Reading(2, "another-epoch", 50)):
            admitted = await bus.admit(room.room_id, member(), read=read)
            assert admitted.status is Admission.ADMITTED
            if kind[0] == "redis":
                assert admitted.history == await bus.history(room.room_id, read.since, read.epoch, read.limit)
            else:
                assert admitted.history is None
        refused = await bus.admit("no-such-room", member(), read=Reading(None, None, 3))
        assert (refused.status, refused.history) == (Admission.NO_ROOM, None)


async def test_without_history_offsets_are_still_assigned_and_published(kind: Kind) -> None:
    async with bus_of(kind, history_size=0) as bus:
        room = new_room()
        await bus.create_room(room)
        async with bus.subscribe(room.room_id) as frames:
            assert await post_all(bus, room.room_id, chat("one"), chat("two"), "{}") == [1, 2, 3]
            with trio.fail_after(10):
                got = [await frames.receive() for _ in range(3)]
        assert got[2] == '{"offset":3}' and texts(got[:2]) == ["one", "two"]
        nothing = await bus.history(room.room_id, None, None, 50)
        assert (nothing.position.offset, nothing.frames, nothing.complete) == (3, [], False)
        epoch = nothing.position.epoch
        assert (await bus.history(room.room_id, 3, epoch, 50)).complete
        assert not (await bus.history(room.room_id, 2, epoch, 50)).complete


async def test_a_post_to_a_room_that_is_gone_is_lost_and_not_published(backend: Backend) -> None:
    bus = backend.bus
    room, expired = new_room(), new_room(life=-1)
    for each in (room, expired):
        await bus.create_room(each)
    async with bus.subscribe(room.room_id) as frames, bus.subscribe("no-such-room") as nowhere:
        assert await post_all(bus, room.room_id, chat("before")) == [1]
        await bus.delete_room(room.room_id)
        for room_id in (room.room_id, "no-such-room", expired.room_id):
            told = Told()
            await bus.post(room_id, chat("after"), told)
            await told.wait()
            assert (told.offsets, told.losses) == ([], 1)
            await bus.publish(room_id, "marker")
        with trio.fail_after(10):
            assert texts([await frames.receive()]) == ["before"]
            assert await frames.receive() == "marker"
            assert await nowhere.receive() == "marker"


async def test_redis_instances_on_one_redis_agree_on_the_order() -> None:
    async with open_redis_server() as server, redis_bus(server.url) as one, redis_bus(server.url) as two:
        room = new_room()
        await one.create_room(room)

        async def sender(bus: RedisBus, tag: str) -> None:
            for i in range(150):
                await bus.post(room.room_id, chat(f"{tag}{i}"))

        async with one.subscribe(room.room_id) as here, two.subscribe(room.room_id) as there:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(sender, one, "a")
                nursery.start_soon(sender, two, "b")
            with trio.fail_after(10):
                seen = [[await frames.receive() for _ in range(300)] for frames in (here, there)]
        assert seen[0] == seen[1]
        assert [offset_of(f) for f in seen[0]] == list(range(1, 301))
        for tag in "ab":
            assert [t for t in texts(seen[0]) if t[0] == tag] == [f"{tag}{i}" for i in range(150)]
        kept = await two.history(room.room_id, None, None, 50)
        assert kept.frames == seen[0][-50:] and kept.position.offset == 300


async def test_redis_restarted_empty_gives_the_room_a_new_epoch() -> None:
    """History lost with Redis: the restored room starts a new epoch, so a resume from the
    old one is told it is incomplete instead of getting a silent gap."""
    async with open_redis_server(private=True) as server, redis_bus(server.url) as bus:
        room = new_room()
        await bus.create_room(room)
        await bus.admit(room.room_id, member("Bob", owner=True))  # What this instance restores.
        await post_all(bus, room.room_id, chat("one"), chat("two"))
        before = (await bus.history(room.room_id, None, None, 50)).position
        await restarted_empty(server, bus, room.room_id)
        after = await bus.history(room.room_id, 2, before.epoch, 50)
        assert after.position.epoch != before.epoch and after.position.offset == 0
        assert (after.frames, after.complete) == ([], False)
        assert await post_all(bus, room.room_id, chat("three")) == [1]
        fresh = await bus.history(room.room_id, 0, after.position.epoch, 50)
        assert (texts(fresh.frames), fresh.complete) == (["three"], True)


async def test_redis_restarted_empty_keeps_names_taken_and_removed_members_out() -> None:
    """The instances put back who holds which name and whom the owner removed, so a Redis
    restart is no way to take a name in use or to come back after being removed."""
    async with open_redis_server(private=True) as server, redis_bus(server.url) as bus:
        room = new_room()
        rid = room.room_id
        await bus.create_room(room)
        await bus.admit(rid, member("Bob", owner=True), "tBob", "bob")
        jane = member("Jane")
        assert (await bus.admit(rid, jane, "tJane", "jane")).status is Admission.ADMITTED
        mallory = member("Mallory")
        await bus.admit(rid, mallory, "tMallory", "mallory")
        assert await bus.revoke(rid, mallory.connection_id) == "tMallory"
        await bus.depart(rid, mallory.connection_id)
        await restarted_empty(server, bus, rid)
        assert (await bus.admit(rid, member("JANE"), "tOther", "jane")).status is Admission.NAME_TAKEN
        assert (await bus.admit(rid, member("Mallory"), "tMallory", "mallory")).status is Admission.REMOVED
        assert await bus.revoked(rid, "tMallory")
        # Jane's own second seat is still hers, and once she has left her name is free again.
        assert (await bus.admit(rid, member("Jane"), "tJane", "jane")).status is Admission.ADMITTED
        for m in await bus.members(rid):
            if m.display_name == "Jane":
                await bus.depart(rid, m.connection_id)
        assert (await bus.admit(rid, member("Jane"), "tOther", "jane")).status is Admission.ADMITTED


async def test_redis_restarted_empty_keeps_a_removal_made_before_this_instance_had_the_room() -> None:
    """The owner removed Mallory while only another instance served the room; that instance
    has gone. The one left learned of the removal when it admitted its first member there."""
    async with open_redis_server(private=True) as server, redis_bus(server.url) as bus:
        room = new_room()
        rid = room.room_id
        async with redis_bus(server.url) as first:
            await first.create_room(room)
            await first.admit(rid, member("Bob", owner=True), "tBob", "bob")
            mallory = member("Mallory")
            await first.admit(rid, mallory, "tMallory", "mallory")
            assert await first.revoke(rid, mallory.connection_id) == "tMallory"
            await first.depart(rid, mallory.connection_id)
            assert (await bus.admit(rid, member("Ann"), "tAnn", "ann")).status is Admission.ADMITTED
        await restarted_empty(server, bus, rid)
        assert (await bus.admit(rid, member("Mallory"), "tMallory", "mallory")).status is Admission.REMOVED


async def test_redis_tells_a_post_in_doubt_it_may_be_lost() -> None:
    bound = 0.3
    async with open_redis_server(private=True) as server, redis_bus(server.url, command_timeout=bound) as bus:
        room = new_room()
        await bus.create_room(room)
        assert await post_all(bus, room.room_id, chat("before")) == [1]
        server.pause()
        try:
            told = Told()
            await bus.post(room.room_id, chat("in doubt"), told)
            await told.wait()
            assert (told.offsets, told.losses) == ([], 1)
            assert not bus.ready
        finally:
            server.resume()


async def test_redis_refusing_one_post_loses_that_post_only() -> None:
    """Scripts flushed under a running instance: the post Redis refuses is told it is lost,
    the session goes on (no reconnect: the subscription keeps its frames), the next posts
    are numbered on from the last one stored."""
    async with open_redis_server(private=True) as server, redis_bus(server.url) as bus:
        room = new_room()
        await bus.create_room(room)
        async with bus.subscribe(room.room_id) as frames:
            assert await post_all(bus, room.room_id, chat("one")) == [1]
            connections = await connections_of(server, bus)
            await server.command("SCRIPT", "FLUSH")
            refused = Told()
            await bus.post(room.room_id, chat("refused"), refused)
            await refused.wait()
            assert (refused.offsets, refused.losses) == ([], 1)
            assert await post_all(bus, room.room_id, chat("two")) == [2]
            assert bus.ready
            with trio.fail_after(10):
                assert texts([await frames.receive() for _ in range(2)]) == ["one", "two"]
            assert await connections_of(server, bus) >= connections  # The same session's.


async def connections_of(server: RedisServer, bus: RedisBus) -> set[str]:
    listed: str = await server.command("CLIENT", "LIST")
    name = f"name=ephemeralchat-{bus.instance_id}"
    return {line.split()[0] for line in listed.splitlines() if name in line}


async def test_a_resent_post_is_stored_and_delivered_once(backend: Backend) -> None:
    """The same dedupe key twice (a client resending what it was not sure went out): one
    offset, one frame, and both receipts name that offset."""
    bus = backend.bus
    room = new_room()
    await bus.create_room(room)
    async with bus.subscribe(room.room_id) as frames:
        first, again, other = Told(), Told(), Told()
        await bus.post(room.room_id, chat("hello"), first, dedupe="Ann:c1")
        await bus.post(room.room_id, chat("hello"), again, dedupe="Ann:c1")
        await bus.post(room.room_id, chat("hello"), other, dedupe="Bob:c1")
        for told in (first, again, other):
            await told.wait()
        assert (first.offsets, again.offsets, other.offsets) == ([1], [1], [2])
        await bus.publish(room.room_id, "marker")
        with trio.fail_after(10):
            got = [await frames.receive() for _ in range(3)]
    assert [offset_of(f) for f in got] == [1, 2, None]
    kept = await bus.history(room.room_id, None, None, 50)
    assert [offset_of(f) for f in kept.frames] == [1, 2]


async def test_dedupe_keys_are_kept_for_the_rooms_last_offsets(kind: Kind) -> None:
    """A room remembers a dedupe key while its post is among the last max(HISTORY_SIZE, 100)
    offsets (Redis forgets in steps of 32, so maybe a little longer): a resend within them
    is caught, one well older than that is a new message."""
    async with bus_of(kind, history_size=0) as bus:
        room = new_room()
        await bus.create_room(room)
        for i in range(140):
            told = Told()
            await bus.post(room.room_id, chat(f"m{i}"), told, dedupe=f"Ann:{i}")
            await told.wait()
        for key, offset in (("Ann:45", 46), ("Ann:139", 140), ("Ann:0", 141)):
            told = Told()
            await bus.post(room.room_id, chat("again"), told, dedupe=key)
            await told.wait()
            assert told.offsets == [offset], key


# The end's reason, for members who arrive just after a room ended.


async def test_a_room_that_ended_tells_latecomers_why(backend: Backend) -> None:
    bus = backend.bus
    closed, quiet = new_room(), new_room()
    for room in (closed, quiet):
        await bus.create_room(room)
    why = '{"type":"system","message":"Room has been closed by owner"}'
    assert await bus.ended(closed.room_id) is None  # Still open.
    assert await bus.delete_room(closed.room_id, why)
    assert not await bus.delete_room(closed.room_id, '{"type":"system","message":"second"}')
    assert await bus.delete_room(quiet.room_id)
    assert await bus.ended(closed.room_id) == why  # The winner's reason, not the loser's.
    assert await bus.ended(quiet.room_id) is None
    assert await bus.ended("no-such-room") is None
    if backend.redis is not None:
        ttl_ms = await backend.redis.command("PTTL", keys.room_ended(closed.room_id))
        assert 0 < ttl_ms <= 60_000


async def test_memory_forgets_why_rooms_ended_after_a_minute_and_keeps_few(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with running(MemoryBus()) as bus:
        rooms = [new_room() for _ in range(memory.ENDED_ROOMS + 1)]
        for room in rooms:
            await bus.create_room(room)
            await bus.delete_room(room.room_id, f"ended {room.room_id}")
        assert await bus.ended(rooms[0].room_id) is None  # The oldest made way.
        assert await bus.ended(rooms[-1].room_id) == f"ended {rooms[-1].room_id}"
        await trio.sleep(ENDED_SECONDS)
        assert await bus.ended(rooms[-1].room_id) is None


async def test_a_burst_of_posts_keeps_every_rooms_order_and_receipts(backend: Backend) -> None:
    """Posts queued back to back (RedisBus sends a run of posts to one room as one call):
    a plain frame keeps its place between them, resends within the burst are caught, each
    room numbers its own, and a room that is gone loses only its own posts."""
    bus = backend.bus
    one, two, gone = new_room(), new_room(), new_room()
    for room in (one, two):
        await bus.create_room(room)
    sent: list[tuple[str, Told]] = []  # (text, receipt)
    async with bus.subscribe(one.room_id) as first, bus.subscribe(two.room_id) as second:
        for i in range(120):
            room, name = ((one, "one"), (one, "one"), (two, "two"), (gone, "gone"))[i % 4]
            resend = i % 8 == 1  # Room one's post before, again.
            text = f"{name}{i - 1 if resend else i}"
            sent.append((text, receipt := Told()))
            await bus.post(room.room_id, chat(text), receipt, dedupe=f"Ann:{text}")
            if i == 60:
                await bus.publish(one.room_id, "plain")
        for _, receipt in sent:
            await receipt.wait()
        with trio.fail_after(10):
            got_one = [await first.receive() for _ in range(60 - 15 + 1)]
            got_two = [await second.receive() for _ in range(30)]
    assert got_one[got_one.index("plain") - 1 : got_one.index("plain") + 2] == [
        '{"offset":23,"type":"message","text":"one60"}',
        "plain",
        '{"offset":24,"type":"message","text":"one61"}',
    ]
    numbered = [f for f in got_one if f != "plain"]
    assert [offset_of(f) for f in numbered] == list(range(1, 46))
    assert [offset_of(f) for f in got_two] == list(range(1, 31))
    assert texts(numbered) == [f"one{i}" for i in range(120) if i % 4 == 0 or i % 8 == 5]
    offsets = {json.loads(f)["text"]: offset_of(f) for f in numbered + got_two}
    for text, receipt in sent:
        if text.startswith("gone"):
            assert (receipt.offsets, receipt.losses) == ([], 1)
        else:
            assert (receipt.offsets, receipt.losses) == ([offsets[text]], 0), text


# Seats held for lost sockets: drop, claim, depart_dropped.


async def test_a_dropped_seat_stays_until_its_sender_claims_it_or_it_departs(backend: Backend) -> None:
    bus = backend.bus
    room = new_room(max_users=2)
    await bus.create_room(room)
    owner, ann = member("Bob", owner=True), member("Ann")
    for who in (owner, ann):
        await bus.admit(room.room_id, who)
    first_hold = await bus.drop(room.room_id, ann.connection_id, "sender-ann")
    assert first_hold is not None
    # Held: still online, still counted against max_users.
    assert {m.connection_id for m in await bus.members(room.room_id)} == {owner.connection_id, ann.connection_id}
    assert (await bus.admit(room.room_id, member("Eve"))).status is Admission.FULL
    assert await bus.claim(room.room_id, "someone-else") is None
    claim = await bus.claim(room.room_id, "sender-ann")
    assert claim is not None and (claim.member, claim.online_count) == (ann, 2)
    assert claim.room.room_id == room.room_id
    # Claimed: no longer held, so neither a second claim nor the grace's departure takes it.
    assert await bus.claim(room.room_id, "sender-ann") is None
    assert await bus.depart_dropped(room.room_id, ann.connection_id, first_hold) is None
    assert len(await bus.members(room.room_id)) == 2
    # Its new socket lost too: held again, and the first hold's late timer cannot free it.
    second_hold = await bus.drop(room.room_id, ann.connection_id, "sender-ann")
    assert second_hold is not None and second_hold != first_hold
    assert await bus.depart_dropped(room.room_id, ann.connection_id, first_hold) is None
    assert len(await bus.members(room.room_id)) == 2
    # Not claimed: the grace's departure frees it, owner rule inputs included.
    owner_hold = await bus.drop(room.room_id, owner.connection_id, "sender-bob")
    assert owner_hold is not None
    assert await bus.depart_dropped(room.room_id, owner.connection_id, owner_hold) == Departure(1, False)
    assert await bus.claim(room.room_id, "sender-bob") is None
    # A seat that is gone cannot be held.
    assert await bus.drop(room.room_id, owner.connection_id, "sender-bob") is None
    await bus.delete_room(room.room_id)
    assert await bus.drop(room.room_id, ann.connection_id, "sender-ann") is None
    assert await bus.claim(room.room_id, "sender-ann") is None


async def test_a_claim_takes_the_senders_newest_held_seat(backend: Backend) -> None:
    bus = backend.bus
    room = new_room()
    await bus.create_room(room)
    first, second = member("Ann"), member("Ann")
    holds = []
    for who in (first, second):
        await bus.admit(room.room_id, who)
        holds.append(await bus.drop(room.room_id, who.connection_id, "sender-ann"))
    # Another sender whose id starts like this one's holds nothing of it.
    assert await bus.claim(room.room_id, "sender-an") is None
    claim = await bus.claim(room.room_id, "sender-ann")
    assert claim is not None and claim.member == second
    assert holds[0] is not None
    assert await bus.depart_dropped(room.room_id, first.connection_id, holds[0]) == Departure(1, False)


async def test_redis_a_seat_claimed_on_another_instance_leaves_with_that_instance() -> None:
    async with open_redis_server() as server, redis_bus(server.url) as survivor:
        backend = Backend(survivor, server)
        room = new_room()
        await survivor.create_room(room)
        ann = member("Ann")
        async with redis_bus(server.url) as doomed:
            await doomed.admit(room.room_id, ann)
            hold = await doomed.drop(room.room_id, ann.connection_id, "sender-ann")
            assert hold is not None
            claim = await survivor.claim(room.room_id, "sender-ann")
            assert claim is not None and claim.member == ann
            # The instance that lost the socket no longer answers for the seat.
            assert await doomed.depart_dropped(room.room_id, ann.connection_id, hold) is None
        # ``doomed`` is gone: its seat moved, so no sweep calls it a ghost; it leaves with survivor.
        assert [m.connection_id for m in await survivor.members(room.room_id)] == [ann.connection_id]
        assert await survivor.depart(room.room_id, ann.connection_id) == Departure(0, False)
        await survivor.delete_room(room.room_id)
        assert await backend.our_keys(room.room_id, ann.connection_id) == []


async def test_read_offsets_only_move_forward_and_end_with_the_room(backend: Backend) -> None:
    bus = backend.bus
    room = new_room()
    await bus.create_room(room)
    rid, ann, bob = room.room_id, member("Ann"), member("Bob")
    for who in (ann, bob):
        await bus.admit(rid, who)
    assert await bus.mark_read(rid, ann.connection_id, 1) is None  # No message yet to have read.
    await post_all(bus, rid, chat("a"), chat("b"), chat("c"))
    assert await bus.mark_read(rid, ann.connection_id, 2) == 2
    assert await bus.mark_read(rid, ann.connection_id, 1) is None
    assert await bus.mark_read(rid, ann.connection_id, 2) is None
    assert await bus.mark_read(rid, ann.connection_id, 10**18) == 3  # No further than the newest.
    assert await bus.mark_read(rid, bob.connection_id, 1) == 1
    # Kept for the room's life, also once the member left.
    await bus.depart(rid, bob.connection_id)
    assert await bus.read_offsets(rid) == {ann.connection_id: 3, bob.connection_id: 1}
    assert await bus.mark_read("no-such-room", ann.connection_id, 1) is None
    await bus.delete_room(rid)
    assert await bus.read_offsets(rid) == {}
    assert await bus.mark_read(rid, ann.connection_id, 3) is None
    if backend.redis is not None:
        assert await backend.our_keys(rid, ann.connection_id, bob.connection_id) == []


async def test_redis_a_seat_left_on_an_instance_that_died_is_its_senders_to_take_back() -> None:
    async with open_redis_server(private=True) as server, redis_bus(server.url) as survivor:
        room = new_room()
        await survivor.create_room(room)
        ann, other = member("Ann"), member("Olga")
        async with redis_bus(server.url) as doomed:
            await doomed.admit(room.room_id, ann, "sender-ann")
            await doomed.admit(room.room_id, other, "sender-olga")
            # While its instance lives, the seat is not to be had.
            assert await survivor.claim(room.room_id, "sender-ann") is None
        # ``doomed`` stopped without departing anyone, like a killed process; its heartbeat
        # key lapses with it.
        await server.command("DEL", keys.instance_alive(doomed.instance_id))
        claim = await survivor.claim(room.room_id, "sender-ann")
        assert claim is not None and (claim.member, claim.online_count) == (ann, 2)
        # The sweep reaps what was left behind, but not the seat taken back.
        with trio.fail_after(PRESENCE_TIMEOUT * 4):
            while not (ghosts := [g for g in await survivor.reap() if g.room_id == room.room_id]):
                pass
        assert [g.member for g in ghosts] == [other]
