"""RedisBus: the shared state and pub/sub of every instance of one deployment, in Redis.

redis-py's asyncio client runs on a trio-asyncio loop that the caller opens around the
server's whole life and hands in; nothing outside ``chat.bus`` sees asyncio. Room state
follows the original document's keys (see ``keys``), each with a TTL no longer than the
room's life; every multi-key step is one Lua script (see ``scripts``).

Presence entries carry the id of the instance that holds the socket. Each instance with
members refreshes a heartbeat key; when an instance dies its key expires, and ``reap``
on any survivor returns its members so the room rules can say goodbye for them.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import trio
import trio_asyncio
from redis.commands.core import AsyncScript

from .. import clock
from ..config import DEFAULT_HISTORY_BYTES, DEFAULT_HISTORY_SIZE, parse_cluster_nodes
from . import (
    ENDED_SECONDS,
    NO_POSITION,
    ROOM_END,
    ROOM_REMOVE,
    Admission,
    AdmitResult,
    BusUnavailable,
    Claim,
    Departure,
    Ghost,
    History,
    MemberRecord,
    Position,
    Reading,
    Receipt,
    RoomRecord,
    keys,
    new_hold,
    scripts,
)
from .batches import Batches, Command, Unbatched
from .channels import RoomChannels
from .cluster import ClusterLink, ShardedChannels
from .held import HeldRooms, Seat
from .history import new_epoch
from .instances import InstanceIndex
from .link import COMMAND_TIMEOUT_SECONDS, LOST, RedisLink
from .posts import RedisPosts

DEFAULT_PRESENCE_TIMEOUT_SECONDS = 30.0
CLIENT_NAME_PREFIX = "ephemeralchat-"


def _ms(epoch_seconds: float) -> int:
    return int(epoch_seconds * 1000)


def _flag(value: bool) -> str:
    return "1" if value else "0"


def _room_fields(room: RoomRecord) -> list[str | int]:
    """The room's hash as HSET takes it: field, value, field, value (built flat: it is on
    every creation's path)."""
    fields: list[str | int] = [
        "owner_name", room.owner_name,
        "max_users", room.max_users,
        "created_at", repr(room.created_at),
        "expires_at", repr(room.expires_at),
        "expires_ms", _ms(room.expires_at),
        "destroy_on_owner_offline", _flag(room.destroy_on_owner_offline),
        "owners_online", 0,
    ]  # fmt: skip
    if room.owner_key:
        fields += ("owner_key", room.owner_key)
    if room.name is not None:
        fields += ("name", room.name)
    if room.password_hash is not None:
        fields += ("password_hash", room.password_hash)
    if room.e2e:
        fields += ("e2e", "1")
    if room.e2e_salt is not None:
        fields += ("e2e_salt", room.e2e_salt)
    return fields


def _room(room_id: str, fields: dict[str, str]) -> RoomRecord:
    return RoomRecord(
        room_id=room_id,
        name=fields.get("name"),
        owner_name=fields["owner_name"],
        password_hash=fields.get("password_hash"),
        max_users=int(fields["max_users"]),
        created_at=float(fields["created_at"]),
        expires_at=float(fields["expires_at"]),
        destroy_on_owner_offline=fields["destroy_on_owner_offline"] == "1",
        e2e=fields.get("e2e") == "1",
        e2e_salt=fields.get("e2e_salt"),
        owner_key=fields.get("owner_key", ""),
    )


class RedisBus:
    def __init__(
        self,
        url: str,
        *,
        loop: trio_asyncio.TrioEventLoop,
        presence_timeout_seconds: float = DEFAULT_PRESENCE_TIMEOUT_SECONDS,
        instance_id: str | None = None,
        command_timeout_seconds: float = COMMAND_TIMEOUT_SECONDS,
        history_size: int = DEFAULT_HISTORY_SIZE,
        history_bytes: int = DEFAULT_HISTORY_BYTES,
        cluster_nodes: str = "",
        password: str = "",
    ) -> None:
        """On one Redis at ``url``, or, given ``cluster_nodes`` (host:port,...), on a Redis Cluster."""
        self.instance_id = instance_id or secrets.token_hex(6)
        name = f"{CLIENT_NAME_PREFIX}{self.instance_id}"
        if cluster_nodes:
            cluster = ClusterLink(
                parse_cluster_nodes(cluster_nodes),
                loop,
                password=password,
                client_name=name,
                command_timeout_seconds=command_timeout_seconds,
            )
            posts = RedisPosts(history_size, history_bytes, sharded=True)
            self._link: RedisLink = cluster
            self._channels: RoomChannels = ShardedChannels(cluster, posts, self._on_control)
            # A job's commands may span slots, and so nodes: each goes out on its own.
            self._batches: Batches | Unbatched = Unbatched(cluster)
        else:
            self._link = RedisLink(url, loop, client_name=name, command_timeout_seconds=command_timeout_seconds)
            self._channels = RoomChannels(self._link, RedisPosts(history_size, history_bytes), self._on_control)
            # Requests' steps (rate counts, creations, joins' looks, admissions), batched.
            self._batches = Batches(self._link)
        # Heartbeat every third of the timeout; the key lives two thirds, so one late beat
        # is forgiven, and a sweep every third finds a dead instance within the timeout.
        self._beat_seconds = presence_timeout_seconds / 3
        self._alive_ms = max(1, int(presence_timeout_seconds * 2000 / 3))
        self._ready_at = float("inf")
        self._index = InstanceIndex(self._link, self._batches, self.instance_id, self._alive_ms)
        # Members (room id, connection id) whose departure failed: the next sweep hands them back.
        self._orphans: set[tuple[str, str]] = set()
        self._held = HeldRooms()
        client = self._link.client
        self._admit = client.register_script(scripts.ADMIT)
        self._depart = client.register_script(scripts.DEPART)
        self._drop = client.register_script(scripts.DROP)
        self._claim = client.register_script(scripts.CLAIM)
        self._sender_instances = client.register_script(scripts.SENDER_INSTANCES)
        self._depart_dropped = client.register_script(scripts.DEPART_DROPPED)
        self._delete = client.register_script(scripts.DELETE_ROOM)
        self._members = client.register_script(scripts.MEMBERS)
        self._records = client.register_script(scripts.RECORDS)
        self._restore_room = client.register_script(scripts.RESTORE)
        self._count = client.register_script(scripts.COUNT)
        self._count_and_create = client.register_script(scripts.COUNT_AND_CREATE)
        self._history = client.register_script(scripts.HISTORY)
        self._mark_read = client.register_script(scripts.MARK_READ)
        self._revoke = client.register_script(scripts.REVOKE)

    @property
    def ready(self) -> bool:
        return self._link.ready

    async def until_ready(self) -> None:
        await self._link.until_ready()

    @property
    def reconnects(self) -> int:
        return self._link.reconnects

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        await self._link.run(self._session, task_status=task_status)

    async def _session(self, nursery: trio.Nursery) -> None:
        await self._restore()
        await self._channels.session(nursery)
        self._batches.session(nursery)
        await nursery.start(self._beat)
        self._ready_at = trio.current_time()

    async def _beat(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        await self._index.beat()
        task_status.started()
        while True:
            await trio.sleep(self._beat_seconds)
            try:
                await self._index.beat()
            except LOST as error:
                # One Redis: this ends the session (this task with it). A cluster: one node
                # failed, and the next beat may find this instance's keys on its replica.
                self._link.lost(error)

    async def create_room(self, room: RoomRecord) -> None:
        meta = keys.room_meta(room.room_id)
        # One transaction: a room's record never exists without its expiry.
        await self._batches.run(
            ("MULTI",), ("HSET", meta, *_room_fields(room)), ("PEXPIREAT", meta, _ms(room.expires_at)), ("EXEC",)
        )

    async def count_and_create(self, key: str, window: float, room: RoomRecord, limit: int) -> tuple[int, float]:
        if not isinstance(self._batches, Batches):  # A cluster: the counter lives on another node.
            counted = await self.count(key, window)
            if counted[0] <= limit:
                await self.create_room(room)
            return counted
        hits, ttl_ms = await self._batches.script(
            self._count_and_create,
            [keys.counter(key), keys.room_meta(room.room_id)],
            [_window_ms(window), limit, _ms(room.expires_at), *_room_fields(room)],
        )
        return int(hits), max(0, int(ttl_ms)) / 1000

    async def get_room(self, room_id: str) -> RoomRecord | None:
        return _live_room(room_id, await self._link.call(self._link.client.hgetall, keys.room_meta(room_id)))

    async def occupancy(self, room_id: str, name_key: str = "") -> tuple[RoomRecord, int, bool] | None:
        return _occupancy(room_id, await self._batches.run(*_occupancy_commands(room_id, name_key)))

    async def count_and_occupancy(
        self, key: str, window_seconds: float, room_id: str, name_key: str = ""
    ) -> tuple[tuple[int, float], tuple[RoomRecord, int, bool] | None]:
        if not isinstance(self._batches, Batches):  # A cluster: the counter lives on another node.
            return await self.count(key, window_seconds), await self.occupancy(room_id, name_key)
        counted = self._batches.evalsha(self._count, [keys.counter(key)], [_window_ms(window_seconds)])
        (hits, ttl_ms), *look = await self._batches.run(counted, *_occupancy_commands(room_id, name_key))
        return (int(hits), max(0, int(ttl_ms)) / 1000), _occupancy(room_id, look)

    async def delete_room(self, room_id: str, final_frame: str | None = None) -> bool:
        expired = _ms(clock.now()) >= _expires_ms(self._held.meta(room_id))
        self._held.forget(room_id)
        room_keys = [keys.room_meta(room_id), keys.room_users(room_id), *keys.room_history(room_id)]
        room_keys += [keys.room_ended(room_id), keys.room_dropped(room_id), keys.room_read(room_id)]
        room_keys += [keys.room_names(room_id), keys.room_revoked(room_id)]
        try:
            removed, *flat = await self._link.call(
                self._delete,
                keys=room_keys,
                args=[keys.conn_prefix(room_id), final_frame or "", _ms(ENDED_SECONDS)],
            )
        except BusUnavailable:
            if expired:  # Its keys expire inside Redis on their own: nothing is left undone.
                return False
            raise
        served: dict[str, list[str]] = {}
        for cid, instance in _rows(flat, 2):
            served.setdefault(instance or self.instance_id, []).append(cid)
        try:
            for instance, cids in served.items():
                await self._index.forget(instance, cids)
        except BusUnavailable:
            pass  # The room is gone; index entries left behind expire, or a sweep clears them.
        return bool(removed)

    async def ended(self, room_id: str) -> str | None:
        frame: str | None = await self._link.call(self._link.client.get, keys.room_ended(room_id))
        return frame

    def _on_control(self, room_id: str, frame: str) -> None:
        if frame == ROOM_END:
            self._held.forget(room_id)
        elif frame.startswith(ROOM_REMOVE):
            self._held.removed(room_id, frame[len(ROOM_REMOVE) :])

    async def _restore(self) -> None:
        rooms = self._held.restore_args(self.instance_id, keys.conn_prefix)
        for room_id, args, cids in rooms:
            room_keys = [
                keys.room_meta(room_id),
                keys.room_users(room_id),
                keys.room_names(room_id),
                keys.room_revoked(room_id),
            ]
            expires_ms = int(await self._link.command(self._restore_room, keys=room_keys, args=args))
            if expires_ms:
                await self._index.enlist(((cid, room_id) for cid in cids), expires_ms, session=True)

    async def admit(
        self, room_id: str, member: MemberRecord, sender: str = "", name_key: str = "", read: Reading | None = None
    ) -> AdmitResult:
        cid = member.connection_id
        admit_keys = [
            keys.room_meta(room_id),
            keys.room_users(room_id),
            keys.conn(room_id, cid),
            keys.room_names(room_id),
            keys.room_revoked(room_id),
        ]
        admit_args = [
            keys.conn_prefix(room_id),
            cid,
            room_id,
            member.display_name,
            repr(member.connected_at),
            _flag(member.is_owner),
            self.instance_id,
            sender,
            name_key,
        ]
        batches = self._batches
        enlisted_until = 0
        read_reply: list[Any] = []
        if isinstance(batches, Batches):
            # One Redis: the seat, its entry in this instance's index and (asked for) the
            # room's history, in one round trip.
            commands = [
                batches.evalsha(self._admit, admit_keys, admit_args),
                self._index.enlist_seated(batches, room_id, cid),
            ]
            if read is not None:
                commands.append(self._read_history(batches, room_id, read))
            try:
                (status, count, *meta), enlisted_until, *read_reply = await batches.run(*commands)
            except BusUnavailable:
                self._orphans.add((room_id, cid))  # Seated or not: the next sweep finds out.
                raise
        else:
            status, count, *meta = await batches.script(self._admit, admit_keys, admit_args)
        outcomes = (Admission.NO_ROOM, Admission.FULL, Admission.ADMITTED, Admission.REMOVED, Admission.NAME_TAKEN)
        outcome = outcomes[int(status)]
        if outcome is not Admission.ADMITTED:
            return AdmitResult(outcome, int(count))
        # The removals so far too: this instance may be the only one left to put them back.
        self._held.seat(room_id, meta[0], Seat(member, sender, name_key), removed=meta[1])
        await self._enlist(room_id, cid, meta[0], int(enlisted_until))
        history = _history(read_reply[0]) if read_reply else None
        return AdmitResult(outcome, int(count), _room(room_id, _fields(meta[0])), history)

    async def _enlist(self, room_id: str, connection_id: str, meta: list[str], enlisted_until: int = 0) -> None:
        """Into this instance's index (``enlisted_until``: it is already, in a room ending then)."""
        try:
            if enlisted_until:
                await self._index.registered(enlisted_until)
            else:
                await self._index.enlist([(connection_id, room_id)], int(_expires_ms(meta)))
        except BusUnavailable:
            # Seated, but out of the index: the next sweep hands it back, so it still leaves.
            self._held.let_go(room_id, connection_id)
            self._orphans.add((room_id, connection_id))
            raise

    async def depart(self, room_id: str, connection_id: str) -> Departure | None:
        return await self._departure(self._depart, room_id, connection_id)

    async def depart_dropped(self, room_id: str, connection_id: str, hold: str) -> Departure | None:
        return await self._departure(self._depart_dropped, room_id, connection_id, hold)

    async def _departure(
        self, script: AsyncScript, room_id: str, connection_id: str, *extra: str
    ) -> Departure | None:
        self._held.let_go(room_id, connection_id)
        try:
            result = await self._link.call(
                script,
                keys=[
                    keys.room_meta(room_id),
                    keys.room_users(room_id),
                    keys.conn(room_id, connection_id),
                    keys.room_dropped(room_id),
                    keys.room_names(room_id),
                ],
                args=[keys.conn_prefix(room_id), connection_id, *extra],
            )
        except BusUnavailable:
            # Its socket is gone but its seat is not: the next sweep hands it back as a
            # ghost, so the room still hears it left. One entry per member we served.
            self._orphans.add((room_id, connection_id))
            raise
        if result is None:  # Not held any more (claimed meanwhile): someone else's now.
            return None
        instance, *rest = result
        try:
            await self._index.forget(instance or self.instance_id, [connection_id])
        except BusUnavailable:
            pass  # It left its room; the entry left behind is cleared with its instance.
        if not rest:
            return None
        online_count, owner_online = rest
        return Departure(int(online_count), bool(owner_online))

    async def drop(self, room_id: str, connection_id: str, sender: str) -> str | None:
        # A held seat is not put back after Redis returns empty: its resume then takes a new one.
        self._held.let_go(room_id, connection_id)
        hold = new_hold()
        held = await self._link.call(
            self._drop,
            keys=[keys.room_meta(room_id), keys.room_users(room_id), keys.room_dropped(room_id)],
            args=[keys.conn_prefix(room_id), connection_id, f"{sender} {hold}"],
        )
        return hold if held else None

    async def claim(self, room_id: str, sender: str) -> Claim | None:
        # Seats of instances that died are the sender's to take back: which of those holding
        # its seats are alive, the index says (those keys live outside the room's slot).
        holders = await self._link.call(
            self._sender_instances,
            keys=[keys.room_meta(room_id), keys.room_users(room_id)],
            args=[keys.conn_prefix(room_id), sender],
        )
        alive = await self._index.alive(holders)
        found = await self._link.call(
            self._claim,
            keys=[
                keys.room_meta(room_id),
                keys.room_users(room_id),
                keys.room_dropped(room_id),
                keys.room_revoked(room_id),
            ],
            args=[keys.conn_prefix(room_id), sender, self.instance_id, *alive],
        )
        if not found:
            return None
        cid, name, connected_at, is_owner, online_count, meta, held_by, name_key = found
        member = MemberRecord(cid, name, float(connected_at), is_owner == "1")
        self._held.seat(room_id, meta, Seat(member, sender, name_key))
        if held_by and held_by != self.instance_id:
            try:
                await self._index.forget(held_by, [cid])
            except BusUnavailable:
                pass  # The seat is ours; the old entry is cleared with that instance.
        await self._enlist(room_id, cid, meta)
        return Claim(_room(room_id, _fields(meta)), member, int(online_count))

    async def revoke(self, room_id: str, connection_id: str) -> str | None:
        room_keys = [keys.room_meta(room_id), keys.room_users(room_id), keys.room_revoked(room_id)]
        sender: str | None = await self._link.call(
            self._revoke, keys=room_keys, args=[keys.conn_prefix(room_id), connection_id]
        )
        if sender:
            self._held.removed(room_id, sender)
        return sender

    async def revoked(self, room_id: str, sender: str) -> bool:
        return bool(await self._link.call(self._link.client.sismember, keys.room_revoked(room_id), sender))

    async def members(self, room_id: str) -> list[MemberRecord]:
        # Batched: a REST join asks for the members after its look at the room, and crossing to
        # asyncio alone for it cost more than the rest of the join's Redis work.
        flat: list[str] = await self._batches.script(
            self._members, [keys.room_meta(room_id), keys.room_users(room_id)], [keys.conn_prefix(room_id)]
        )
        return [
            MemberRecord(cid, name, float(connected_at), is_owner == "1")
            for cid, name, connected_at, is_owner in _rows(flat, 4)
        ]

    async def mark_read(self, room_id: str, connection_id: str, offset: int) -> int | None:
        kept = await self._link.call(
            self._mark_read,
            keys=[keys.room_meta(room_id), keys.room_pos(room_id), keys.room_read(room_id)],
            args=[connection_id, offset],
        )
        return None if kept is None else int(kept)

    async def read_offsets(self, room_id: str) -> dict[str, int]:
        offsets: dict[str, str] = await self._link.call(self._link.client.hgetall, keys.room_read(room_id))
        return {cid: int(offset) for cid, offset in offsets.items()}

    async def publish(self, room_id: str, frame: str, undelivered: Callable[[], None] | None = None) -> None:
        await self._channels.publish(room_id, frame, undelivered)

    async def announce(self, room_id: str, presence: str) -> None:
        await self._channels.announce(room_id, presence)

    async def post(
        self, room_id: str, message: str, receipt: Receipt | None = None, dedupe: str | None = None
    ) -> None:
        await self._channels.post(room_id, message, receipt, dedupe)

    async def history(self, room_id: str, since: int | None, epoch: str | None, limit: int) -> History:
        reply = await self._batches.script(self._history, *_history_call(room_id, Reading(since, epoch, limit)))
        return _history(reply)

    def _read_history(self, batches: Batches, room_id: str, read: Reading) -> Command:
        return batches.evalsha(self._history, *_history_call(room_id, read))

    @asynccontextmanager
    async def subscribe(self, room_id: str) -> AsyncIterator[trio.MemoryReceiveChannel[str]]:
        async with self._channels.subscribe(room_id) as frames:
            yield frames

    async def count(self, key: str, window_seconds: float) -> tuple[int, float]:
        hits, ttl_ms = await self._batches.script(self._count, [keys.counter(key)], [_window_ms(window_seconds)])
        return int(hits), max(0, int(ttl_ms)) / 1000

    async def reap(self) -> list[Ghost]:
        """After the next sweep interval: members of instances that stopped heartbeating."""
        while True:
            await trio.sleep(self._beat_seconds)
            # Just after an outage the others may not have beaten yet: give them one
            # heartbeat key's lifetime before calling anyone dead.
            if self.ready and trio.current_time() - self._ready_at >= self._alive_ms / 1000:
                break
        orphans, self._orphans = self._orphans, set()
        try:
            ghosts = [ghost for room_id, cid in sorted(orphans) for ghost in await self._ghosts(room_id, [cid])]
            for instance, rooms in (await self._index.dead_members()).items():
                for room_id, cids in rooms.items():
                    found = await self._ghosts(room_id, cids)
                    # Entries whose member is gone from its room are dropped, so a dead
                    # instance's keys do not outlive its rooms.
                    gone = set(cids) - {ghost.member.connection_id for ghost in found}
                    await self._index.forget(instance, gone)
                    ghosts += found
        except BusUnavailable:
            self._orphans |= orphans
            raise
        return ghosts

    async def _ghosts(self, room_id: str, connection_ids: list[str]) -> list[Ghost]:
        flat: list[str] = await self._link.call(
            self._records, keys=[keys.room_meta(room_id)], args=[keys.conn_prefix(room_id), *connection_ids]
        )
        return [
            Ghost(room_id, MemberRecord(cid, name, float(connected_at), is_owner == "1"))
            for cid, name, connected_at, is_owner in _rows(flat, 4)
        ]


def _occupancy_commands(room_id: str, name_key: str) -> list[Command]:
    # Seats and names are looked at as ADMIT does; ADMIT, atomic, has the last word anyway.
    commands: list[Command] = [("HGETALL", keys.room_meta(room_id)), ("SCARD", keys.room_users(room_id))]
    if name_key:
        commands.append(("HEXISTS", keys.room_names(room_id), name_key))
    return commands


def _occupancy(room_id: str, replies: list[Any]) -> tuple[RoomRecord, int, bool] | None:
    meta, taken, *held = replies
    room = _live_room(room_id, _fields(meta))
    return (room, int(taken), bool(held and int(held[0]))) if room else None


def _window_ms(window_seconds: float) -> int:
    return max(1, int(window_seconds * 1000))


def _live_room(room_id: str, fields: dict[str, str]) -> RoomRecord | None:
    if not fields or "owner_name" not in fields:
        return None
    room = _room(room_id, fields)
    return room if room.expires_at > clock.now() else None


def _history_call(room_id: str, read: Reading) -> tuple[list[str], list[Any]]:
    """HISTORY's keys and arguments."""
    since = "" if read.since is None else read.since
    args = [new_epoch(), since, read.epoch or "", max(0, read.limit)]
    return [keys.room_meta(room_id), *keys.room_history(room_id)], args


def _history(reply: list[Any]) -> History:
    if not reply:
        return History(NO_POSITION, [], False)
    epoch_now, offset, complete, *frames = reply
    return History(Position(epoch_now, int(offset)), frames, bool(complete))


def _fields(meta: list[str]) -> dict[str, str]:
    """A hash as HGETALL inside a script returns it: field, value, field, value..."""
    return dict(zip(meta[::2], meta[1::2], strict=True))


def _expires_ms(meta: list[str] | None) -> float:
    """The room's end from its stored fields; never, when we do not hold them."""
    fields = _fields(meta) if meta else {}
    return int(fields["expires_ms"]) if "expires_ms" in fields else float("inf")


def _rows(flat: list[Any], width: int) -> list[tuple[Any, ...]]:
    return [tuple(flat[i : i + width]) for i in range(0, len(flat), width)]


@asynccontextmanager
async def open_redis_bus(
    url: str,
    *,
    presence_timeout_seconds: float,
    history_size: int = DEFAULT_HISTORY_SIZE,
    history_bytes: int = DEFAULT_HISTORY_BYTES,
    cluster_nodes: str = "",
    password: str = "",
) -> AsyncIterator[RedisBus]:
    """A RedisBus on a trio-asyncio loop that lives exactly as long as this context.

    Open it around the whole server: a loop opened inside a startup hook would live in
    that hook's context, out of sight of the request handlers.
    """
    async with trio_asyncio.open_loop() as loop:
        yield RedisBus(
            url,
            loop=loop,
            presence_timeout_seconds=presence_timeout_seconds,
            history_size=history_size,
            history_bytes=history_bytes,
            cluster_nodes=cluster_nodes,
            password=password,
        )
