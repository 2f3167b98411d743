"""MemoryBus: the whole shared state of one process, in plain Trio primitives."""

from __future__ import annotations

import heapq
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import trio

from .. import clock
from ..config import DEFAULT_HISTORY_BYTES, DEFAULT_HISTORY_SIZE
from . import (
    ENDED_SECONDS,
    NO_POSITION,
    SUBSCRIPTION_FRAMES,
    Admission,
    AdmitResult,
    Claim,
    Departure,
    Ghost,
    History,
    MemberRecord,
    Reading,
    Receipt,
    RoomRecord,
    new_hold,
    with_count,
)
from .history import RoomLog

# Counters kept before the expired ones are swept out, so memory stays bounded.
COUNTERS_BEFORE_SWEEP = 4096
# Final frames of ended rooms kept at most (the oldest go first when more end at once).
ENDED_ROOMS = 4096


@dataclass
class _Room:
    record: RoomRecord
    log: RoomLog
    members: dict[str, MemberRecord] = field(default_factory=dict)
    # Seats whose socket was lost, held for their sender: connection id -> (sender, hold id).
    dropped: dict[str, tuple[str, str]] = field(default_factory=dict)
    # Last-read offsets: connection id -> offset.
    read: dict[str, int] = field(default_factory=dict)
    # Who each seat is: connection id -> (sender, name key); the names taken: key -> sender;
    # and the senders the owner removed.
    seats: dict[str, tuple[str, str]] = field(default_factory=dict)
    names: dict[str, str] = field(default_factory=dict)
    revoked: set[str] = field(default_factory=set)


class MemoryBus:
    def __init__(self, *, history_size: int = DEFAULT_HISTORY_SIZE, history_bytes: int = DEFAULT_HISTORY_BYTES) -> None:
        self._history_size = history_size
        self._history_bytes = history_bytes
        self._rooms: dict[str, _Room] = {}
        # Ordered (a dict, not a set): concurrent senders reach the subscriptions in the
        # same order, so a sender waiting for a slow one is never overtaken past it.
        self._subscribers: dict[str, dict[trio.MemorySendChannel[str], None]] = {}
        # (expires_at, room_id), so one sweeper task wakes only when a room actually expires.
        self._expiries: list[tuple[float, str]] = []
        self._expiry_changed = trio.Event()
        self._counters: dict[str, tuple[float, int]] = {}  # key -> (window ends, count)
        self._ended: dict[str, tuple[float, str]] = {}  # room id -> (forgotten at, final frame)

    @property
    def ready(self) -> bool:
        return True

    async def until_ready(self) -> None:
        return  # Always ready.

    @property
    def reconnects(self) -> int:
        return 0  # Nothing to lose a connection to.

    # A read-only view, for tests and operators: what the bus still holds.
    @property
    def room_ids(self) -> frozenset[str]:
        """Rooms stored, expired ones included until the sweeper removes them."""
        return frozenset(self._rooms)

    @property
    def subscribed_room_ids(self) -> frozenset[str]:
        return frozenset(self._subscribers)

    @property
    def pending_expiries(self) -> int:
        """Entries the expiry sweeper still holds (live rooms, and closed ones not yet skipped)."""
        return len(self._expiries)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        while True:
            self._expiry_changed = trio.Event()
            next_expiry = self._expiries[0][0] if self._expiries else None
            with trio.move_on_at(clock.deadline_at(next_expiry) if next_expiry else float("inf")):
                await self._expiry_changed.wait()
                continue
            self._sweep()

    def _sweep(self) -> None:
        now = clock.now()
        while self._expiries and self._expiries[0][0] <= now:
            expires_at, room_id = heapq.heappop(self._expiries)
            room = self._rooms.get(room_id)
            if room is not None and room.record.expires_at == expires_at:
                del self._rooms[room_id]

    def _live(self, room_id: str) -> _Room | None:
        room = self._rooms.get(room_id)
        if room is None or room.record.expires_at <= clock.now():
            return None
        return room

    async def create_room(self, room: RoomRecord) -> None:
        self._rooms[room.room_id] = _Room(room, RoomLog(self._history_size, self._history_bytes))
        if not self._expiries or room.expires_at < self._expiries[0][0]:
            self._expiry_changed.set()
        heapq.heappush(self._expiries, (room.expires_at, room.room_id))

    async def count_and_create(self, key: str, window: float, room: RoomRecord, limit: int) -> tuple[int, float]:
        counted = await self.count(key, window)
        if counted[0] <= limit:
            await self.create_room(room)
        return counted

    async def get_room(self, room_id: str) -> RoomRecord | None:
        room = self._live(room_id)
        return room.record if room else None

    async def occupancy(self, room_id: str, name_key: str = "") -> tuple[RoomRecord, int, bool] | None:
        room = self._live(room_id)
        return (room.record, len(room.members), bool(name_key) and name_key in room.names) if room else None

    async def count_and_occupancy(
        self, key: str, window_seconds: float, room_id: str, name_key: str = ""
    ) -> tuple[tuple[int, float], tuple[RoomRecord, int, bool] | None]:
        return await self.count(key, window_seconds), await self.occupancy(room_id, name_key)

    async def delete_room(self, room_id: str, final_frame: str | None = None) -> bool:
        removed = self._rooms.pop(room_id, None) is not None
        if removed and final_frame:  # An empty one is none, as on Redis.
            self._remember_end(room_id, final_frame)
        # The heap keeps the closed room's entry (the sweeper skips it); rebuilding once
        # stale entries outnumber live rooms keeps memory bounded at O(1) amortised cost.
        if removed and len(self._expiries) > 2 * len(self._rooms) + 64:
            self._expiries = [(r.record.expires_at, i) for i, r in self._rooms.items()]
            heapq.heapify(self._expiries)
        return removed

    def _remember_end(self, room_id: str, final_frame: str) -> None:
        now = clock.now()
        if len(self._ended) >= ENDED_ROOMS:
            self._ended = {k: v for k, v in self._ended.items() if v[0] > now}
            while len(self._ended) >= ENDED_ROOMS:
                del self._ended[next(iter(self._ended))]
        self._ended[room_id] = (now + ENDED_SECONDS, final_frame)

    async def ended(self, room_id: str) -> str | None:
        forgotten_at, frame = self._ended.get(room_id, (0.0, ""))
        if forgotten_at <= clock.now():
            self._ended.pop(room_id, None)
            return None
        return frame

    async def admit(
        self, room_id: str, member: MemberRecord, sender: str = "", name_key: str = "", read: Reading | None = None
    ) -> AdmitResult:
        # No round trip to save: ``read`` is left to ``history``.
        room = self._live(room_id)
        if room is None:
            return AdmitResult(Admission.NO_ROOM)
        if sender in room.revoked:
            return AdmitResult(Admission.REMOVED, len(room.members))
        if name_key and (
            room.names.get(name_key, sender) != sender or (name_key == room.record.owner_key and not member.is_owner)
        ):
            return AdmitResult(Admission.NAME_TAKEN, len(room.members))
        if len(room.members) >= room.record.max_users:
            return AdmitResult(Admission.FULL, len(room.members))
        room.members[member.connection_id] = member
        room.seats[member.connection_id] = (sender, name_key)
        if name_key and not member.is_owner:  # The owner's is reserved by the room itself.
            room.names[name_key] = sender
        return AdmitResult(Admission.ADMITTED, len(room.members), room.record)

    async def revoke(self, room_id: str, connection_id: str) -> str | None:
        room = self._live(room_id)
        if room is None or connection_id not in room.members:
            return None
        sender = room.seats.get(connection_id, ("", ""))[0]
        if sender:
            room.revoked.add(sender)
        return sender

    async def revoked(self, room_id: str, sender: str) -> bool:
        room = self._live(room_id)
        return room is not None and sender in room.revoked

    async def drop(self, room_id: str, connection_id: str, sender: str) -> str | None:
        room = self._live(room_id)
        if room is None or connection_id not in room.members:
            return None
        hold = new_hold()
        room.dropped[connection_id] = (sender, hold)
        return hold

    async def claim(self, room_id: str, sender: str) -> Claim | None:
        room = self._live(room_id)
        if room is None or sender in room.revoked:
            return None
        for connection_id, (holder, _) in reversed(room.dropped.items()):
            if holder == sender:
                del room.dropped[connection_id]
                return Claim(room.record, room.members[connection_id], len(room.members))
        return None

    async def depart_dropped(self, room_id: str, connection_id: str, hold: str) -> Departure | None:
        room = self._rooms.get(room_id)
        if room is None or room.dropped.get(connection_id, ("", ""))[1] != hold:
            return None
        return await self.depart(room_id, connection_id)

    async def depart(self, room_id: str, connection_id: str) -> Departure | None:
        room = self._rooms.get(room_id)
        if room is None or room.members.pop(connection_id, None) is None:
            return None
        room.dropped.pop(connection_id, None)
        sender, name_key = room.seats.pop(connection_id, ("", ""))
        # The name is free once the last seat of its sender is gone (a second tab keeps it).
        if room.names.get(name_key) == sender and all(s != sender for s, _ in room.seats.values()):
            del room.names[name_key]
        owner_online = any(m.is_owner for m in room.members.values())
        return Departure(len(room.members), owner_online)

    async def members(self, room_id: str) -> list[MemberRecord]:
        room = self._live(room_id)
        return list(room.members.values()) if room else []

    async def mark_read(self, room_id: str, connection_id: str, offset: int) -> int | None:
        room = self._live(room_id)
        if room is None:
            return None
        offset = min(offset, room.log.offset)
        if offset <= room.read.get(connection_id, 0):
            return None
        room.read[connection_id] = offset
        return offset

    async def read_offsets(self, room_id: str) -> dict[str, int]:
        room = self._live(room_id)
        return dict(room.read) if room else {}

    async def publish(self, room_id: str, frame: str, undelivered: Callable[[], None] | None = None) -> None:
        # Nothing can fail between taking a frame and handing it over: ``undelivered`` is never due.
        for channel in list(self._subscribers.get(room_id, ())):
            try:
                # No yield while there is room: a sender's next frames then follow within the
                # same round, and the room joins them into one write per member.
                try:
                    channel.send_nowait(frame)
                except trio.WouldBlock:
                    await channel.send(frame)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass  # That subscriber left while we waited; it no longer wants frames.

    async def announce(self, room_id: str, presence: str) -> None:
        room = self._live(room_id)
        # Counted and handed to the subscribers with no yield between (while they have room).
        await self.publish(room_id, with_count(presence, len(room.members) if room else 0))

    async def post(
        self, room_id: str, message: str, receipt: Receipt | None = None, dedupe: str | None = None
    ) -> None:
        room = self._live(room_id)
        if room is None:
            if receipt is not None:
                receipt.lost()
            return
        # Stored and numbered before the first await: offsets follow the order of delivery.
        offset, frame = room.log.append(message, dedupe)
        try:
            if frame is not None:
                await self.publish(room_id, frame)
        finally:
            if receipt is not None:
                receipt.posted(offset)  # In the room's history whatever happens to the fan-out.

    async def history(self, room_id: str, since: int | None, epoch: str | None, limit: int) -> History:
        room = self._live(room_id)
        if room is None:
            return History(NO_POSITION, [], False)
        return room.log.read(since, epoch, limit)

    async def count(self, key: str, window_seconds: float) -> tuple[int, float]:
        now = clock.now()
        ends, hits = self._counters.get(key, (0.0, 0))
        if ends <= now:
            if len(self._counters) >= COUNTERS_BEFORE_SWEEP:
                self._counters = {k: v for k, v in self._counters.items() if v[0] > now}
            ends, hits = now + window_seconds, 0
        self._counters[key] = (ends, hits + 1)
        return hits + 1, ends - now

    async def reap(self) -> list[Ghost]:
        # One process: every member's socket lives here, so none can be orphaned.
        await trio.sleep_forever()
        return []

    @asynccontextmanager
    async def subscribe(self, room_id: str) -> AsyncIterator[trio.MemoryReceiveChannel[str]]:
        send, receive = trio.open_memory_channel[str](SUBSCRIPTION_FRAMES)
        subscribers = self._subscribers.setdefault(room_id, {})
        subscribers[send] = None
        try:
            async with receive:
                yield receive
        finally:
            subscribers.pop(send, None)
            if not subscribers:
                self._subscribers.pop(room_id, None)
            send.close()
