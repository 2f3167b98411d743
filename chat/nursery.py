"""The live side of one instance: a nursery per room with local members.

The Hub owns one ``LiveRoom`` per room that has members on this instance. A LiveRoom owns
the room's subscriber task and its expiry deadline (a cancel scope), and hands every frame
from the bus to each local member (chat.ws.member) without ever awaiting a socket: framed
once (chat.ws.wire), the same bytes for everyone, and a backlog joined into one piece.

Words, one meaning each (the room domain's own are in chat.rooms):

- add / remove: a member's socket joins or leaves a LiveRoom's fan-out (this instance only);
  the first ``Hub.add`` starts the LiveRoom, the last ``LiveRoom.remove`` ends it.
- end: a LiveRoom stops for good (room closed, expired or owner gone, server draining, or
  no local member left): every member still in it is closed with the reason, the Hub lets
  go of it and its nursery is cancelled. ``LiveRoom.end`` is the only way a LiveRoom stops.
- close: a member's socket is closed with a code and reason (``Member.close``), after the
  frames already queued for it; ``Member.close_too_slow`` closes one that cannot keep up.
- shed: the instance's queued bytes passed OUTBOX_TOTAL_BYTES; the members furthest behind
  are closed as too slow until the rest fit (``Hub.shed``).
- drain: the instance is shutting down; every LiveRoom ends with 1001.
"""

from __future__ import annotations

import bisect
import logging
import time

import trio

from . import clock, protocol
from .arrivals import while_more_arrive
from .bus import (
    NO_POSITION,
    ROOM_END,
    ROOM_REMOVE,
    ROOM_RESYNC,
    Bus,
    BusUnavailable,
    Position,
    RoomRecord,
    offset_of,
)
from .config import MAX_HISTORY_SIZE
from .metrics import Metrics
from .ws import wire
from .ws.member import UNBOUNDED, Member, QueuedBytes
from .ws.pings import ping_members

log = logging.getLogger(__name__)

# Most frames, and bytes, one fan-out joins: an outbox entry stays one write's worth.
FAN_OUT_FRAMES = 64
FAN_OUT_BYTES = 64 * 1024
# Most messages a resync reads back from the room's history (more than any room keeps).
RESYNC_MESSAGES = MAX_HISTORY_SIZE
# How long a resync waits for the backend's new session to be up before it gives up.
RESYNC_WAIT_SECONDS = 10.0
# What a member whose own outbox is full has reached (for the slow-consumer log line).
SLOW_LIMITS = "OUTBOX_FRAMES or OUTBOX_BYTES"
# Frames that stop a batch: the room's end or resync, and frames a member relayed.
STOPS = ("\x00", *protocol.RELAYED)
# In a room with this many local members, presence lingers this long before it goes out:
# arrivals and departures close together (a reconnect storm, a class arriving at once) then
# reach each member in one write, not one write each. Anything else goes out at once, and
# takes what lingers with it, in order.
PRESENCE_LINGER_MEMBERS = 8
PRESENCE_LINGER_SECONDS = 0.025
PRESENCE = '{"type":"presence",'


class LiveRoom:
    def __init__(self, hub: Hub, record: RoomRecord) -> None:
        self.hub = hub
        self.record = record
        self.members: dict[str, Member] = {}
        self.scope = trio.CancelScope(deadline=clock.deadline_at(record.expires_at))
        self.subscribed = trio.Event()
        # The room's epoch, and the offset of the newest message fanned out (or found when
        # the room subscribed here): an entering member's history may reach further, while
        # the messages in between are still on their way here.
        self.epoch = ""
        self.newest = 0
        # The offset of the newest message fanned out here. Not ``newest``: the position the
        # room finds once subscribed counts the messages posted since it subscribed, and those
        # are still on their way to it.
        self.fanned = 0
        # After a resync: messages up to this offset already went out from history, and
        # their live copies may still come; dropped until a newer one arrives.
        self._skip_upto: int | None = None
        # Set once the room stops taking members: it ended, expired or emptied.
        self.ended = False
        # Members seated so far (see ``seat``), and the presence lingering (see
        # PRESENCE_LINGER_SECONDS): each piece with the number of members seated when it came,
        # as only those get it; how many frames, and until when.
        self._seats = 0
        self._lingering: list[tuple[int, bytes]] = []
        self._lingering_frames = 0
        self._linger_until = 0.0

    @property
    def room_id(self) -> str:
        return self.record.room_id

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        bus = self.hub.bus
        try:
            with self.scope:
                async with bus.subscribe(self.room_id) as frames:
                    # A close that landed between a member's admission and this
                    # subscription would otherwise never reach this instance. Checked before
                    # the first hello: an end after that arrives on the channel.
                    if not await self._locate():
                        await self._end_as_found()
                        self.subscribed.set()
                        task_status.started()
                        return
                    self.subscribed.set()
                    task_status.started()
                    while (frame := await self._next_frame(frames)) is not None:
                        await while_more_arrive(frames, FAN_OUT_FRAMES)
                        waiting: str | None = frame
                        while waiting is not None:
                            batch, stop, presence = self._backlog(waiting, frames)
                            if presence and len(self.members) >= PRESENCE_LINGER_MEMBERS:
                                self._linger(batch)
                            elif batch:
                                self.fan_out(batch)
                            if stop is None:
                                break
                            if stop == ROOM_END:
                                self.end(protocol.CLOSE_NORMAL, "Room closed")
                                return
                            if stop == ROOM_RESYNC:
                                if not await self._resync():
                                    await self._end_as_found()
                                    return
                            elif stop.startswith(ROOM_REMOVE):
                                self.remove_sender(stop[len(ROOM_REMOVE) :])
                            else:
                                self.relay(stop)
                            waiting = _next_waiting(frames)
            if self.scope.cancelled_caught and trio.current_time() >= self.scope.deadline:
                log.info("room %s ended: expired", self.room_id, extra={"room_id": self.room_id, "event": "room_ended"})
                self.end(protocol.CLOSE_NORMAL, "Room expired", protocol.system(self.room_id, protocol.EXPIRED))
                with trio.CancelScope(shield=True), trio.move_on_after(self.hub.cleanup_seconds):
                    try:
                        await bus.delete_room(self.room_id)
                    except BusUnavailable:
                        pass  # Its keys expire with the room anyway.
        finally:
            if not self.ended:  # Failed before it could end in order.
                self.hub.metrics.error("room_failed")
                self.end(protocol.CLOSE_INTERNAL, "Room failed; reconnect")
            self.subscribed.set()

    def still_ahead_of(self, position: Position) -> bool:
        """Whether every message after ``position`` is still to be fanned out here: a member
        added now gets them all, so a history read up to ``position`` before it was added
        leaves no gap."""
        return position != NO_POSITION and position.epoch == self.epoch and self.newest <= position.offset

    def release(self, member: Member, first: list[bytes], after: int) -> None:
        """Let an entering member's frames go: ``first`` (its hello and history, which reach
        ``after``), then what the room held back for it, then everything live, less the
        messages up to ``after`` still on their way here."""
        member.release(first, after=after, arrived=self.fanned)

    def seat(self, member: Member) -> None:
        """Add a member to the fan-out: it gets what the room sends from now on."""
        member.seat = self._seats
        self._seats += 1
        self.members[member.connection_id] = member

    async def _next_frame(self, frames: trio.MemoryReceiveChannel[str]) -> str | None:
        """The room's next frame from the bus (None once the subscription ends); lingering
        presence goes out when its time is up."""
        try:
            if self._lingering:
                with trio.move_on_at(self._linger_until):
                    return await frames.receive()
                self._flush()
            return await frames.receive()
        except trio.EndOfChannel:
            self._flush()
            return None

    def _linger(self, batch: list[bytes]) -> None:
        if not self._lingering:
            self._linger_until = trio.current_time() + PRESENCE_LINGER_SECONDS
        self._lingering.append((self._seats, b"".join(batch)))
        self._lingering_frames += len(batch)
        if self._lingering_frames >= FAN_OUT_FRAMES:
            self._flush()

    def _flush(self) -> None:
        """Send the lingering presence now."""
        if self._lingering:
            self.fan_out([])

    async def _locate(self) -> bool:
        """Where the room's messages stand now that it is subscribed; False if it is gone."""
        try:
            history = await self.hub.bus.history(self.room_id, None, None, 0)
        except BusUnavailable:
            return True  # Cannot tell now; a close still arrives on the channel once back.
        self.epoch, self.newest = history.position.epoch, history.position.offset
        return history.position != NO_POSITION

    async def _end_as_found(self) -> None:
        """End a room found gone: with its final words if it ended lately, as everyone heard."""
        final = await self._final_words()
        if final is None:
            self.end(protocol.CLOSE_POLICY, "Room not found")
        else:
            self.end(protocol.CLOSE_NORMAL, "Room closed", final)

    async def _resync(self) -> bool:
        """The backend subscribed the room again after losing it: fan out from its history
        what was said meanwhile. If that history is gone (the backend restarted empty: a new
        epoch) or has a hole, members first hear where the room stands and that some
        messages may be missing. False when the room itself is gone."""
        bus = self.hub.bus
        # Resubscribed while its session is starting: the history can be read once it is up.
        # The room's next frames wait meanwhile, so none overtakes what was missed.
        with trio.move_on_after(RESYNC_WAIT_SECONDS):
            await bus.until_ready()
        try:
            history = await bus.history(self.room_id, self.newest, self.epoch, RESYNC_MESSAGES)
            position = history.position
            if position == NO_POSITION:
                return False
            missed = history.frames
            if not history.complete:
                since = 0 if position.epoch != self.epoch else None
                missed = (await bus.history(self.room_id, since, position.epoch, RESYNC_MESSAGES)).frames
                first = offset_of(missed[0]) if missed else None
                after = first - 1 if first is not None else position.offset
                self.fan_out([wire.text_frame(protocol.resync(self.room_id, position.epoch, after))])
                self.epoch, self.newest = position.epoch, after
        except BusUnavailable:
            log.warning("could not resync a room: backend unavailable", extra={"room_id": self.room_id})
            return True  # Lost again: the next session resyncs it.
        missed = [frame for frame in missed if (offset_of(frame) or 0) > self.newest]
        if missed:
            self.fan_out([wire.text_frame(frame) for frame in missed])
        self.newest = self.fanned = self._skip_upto = max(self.newest, position.offset)
        return True

    async def _final_words(self) -> str | None:
        try:
            return await self.hub.bus.ended(self.room_id)
        except BusUnavailable:
            return None

    def _backlog(self, first: str, frames: trio.MemoryReceiveChannel[str]) -> tuple[list[bytes], str | None, bool]:
        """``first`` and whatever else is already waiting, framed; the frame that stopped
        the batch, if one did: the room's end or resync, or a frame a member relayed (typing,
        read: not for everyone, so it goes on its own); and whether the batch is presence alone.

        Under load frames arrive faster than one fan-out each: joining the waiting ones makes
        one socket write per member carry them all, instead of one write per frame.
        """
        batch: list[bytes] = []
        size = 0
        presence = True
        frame = first
        while True:
            if frame.startswith(STOPS):
                return batch, frame, presence and bool(batch)
            if self._fresh(frame):
                presence = presence and frame.startswith(PRESENCE)
                framed = wire.text_frame(frame)
                batch.append(framed)
                size += len(framed)
                if len(batch) >= FAN_OUT_FRAMES or size >= FAN_OUT_BYTES:
                    return batch, None, presence
            try:
                frame = frames.receive_nowait()
            except trio.WouldBlock:
                return batch, None, presence and bool(batch)

    def _fresh(self, frame: str) -> bool:
        """False for a message a resync already sent from history; notes the newest."""
        offset = offset_of(frame)
        if offset is None:
            return True
        if self._skip_upto is not None:
            if offset <= self._skip_upto:
                return False
            self._skip_upto = None  # Offsets come in order: nothing older follows.
        self.newest = self.fanned = offset
        return True

    def fan_out(self, frames: list[bytes]) -> None:
        """Hand frames to every member as one piece of bytes, after the presence lingering:
        one write per member."""
        started = time.perf_counter()
        data = frames[0] if len(frames) == 1 else b"".join(frames)
        count = len(frames)
        if self._lingering:
            count += self._lingering_frames
            slow = self._deliver_after_lingering(data)
        else:
            slow = [m for m in self.members.values() if not m.deliver(data)]
        hub = self.hub
        hub.metrics.fanned_out(count * (len(self.members) - len(slow)), time.perf_counter() - started)
        for member in slow:
            self.close_too_slow(member, SLOW_LIMITS)
        outboxes = hub.outboxes
        if outboxes.queued > outboxes.limit:
            hub.shed()

    def _deliver_after_lingering(self, data: bytes) -> list[Member]:
        """Hand each member the lingering presence that came after it was seated, then
        ``data``; the members whose outbox was full."""
        lingering, self._lingering, self._lingering_frames = self._lingering, [], 0
        seats = [seated for seated, _ in lingering]
        pieces = [piece for _, piece in lingering]
        everything = b"".join(pieces) + data
        # Members seated meanwhile get only a tail: one piece of bytes per tail.
        tails: dict[int, bytes] = {}
        slow = []
        for member in self.members.values():
            if member.seat < seats[0]:
                piece = everything
            else:
                start = bisect.bisect_right(seats, member.seat)
                piece = tails.get(start)
                if piece is None:
                    piece = tails[start] = b"".join(pieces[start:]) + data
            if piece and not member.deliver(piece):
                slow.append(member)
        return slow

    def close_too_slow(self, member: Member, limit: str) -> None:
        """Close a member that cannot keep up; ``limit`` names the setting it reached."""
        self.hub.metrics.slow_consumer()
        log.info(
            "slow consumer disconnected",
            extra={
                "room_id": self.room_id,
                "connection_id": member.connection_id,
                "limit": limit,
                "queued_bytes": member.queued_bytes,
            },
        )
        member.close_too_slow()

    def relay(self, frame: str) -> None:
        """A member's typing or read frame: to every other member (reads only to those that
        take read receipts), never back to its sender."""
        sender, is_read = protocol.relayed_from(frame) or ("", False)
        data = wire.text_frame(frame)
        self._flush()
        slow = [
            m
            for cid, m in self.members.items()
            if cid != sender and (m.read_receipts or not is_read) and not m.deliver(data)
        ]
        for member in slow:
            self.close_too_slow(member, SLOW_LIMITS)

    def remove_sender(self, sender: str) -> None:
        """The owner removed a member: close its sockets here (every one of its sender's)
        with the reason; their sessions then depart as usual."""
        removed = protocol.system(self.room_id, protocol.REMOVED_YOU)
        self._flush()
        for member in list(self.members.values()):
            if sender in (member.sender, member.connection_id):
                member.close(protocol.CLOSE_POLICY, protocol.REMOVED_REASON, removed)

    def remove(self, member: Member) -> None:
        """Take a member out of the fan-out; the room ends with its last local member."""
        self.members.pop(member.connection_id, None)
        if not self.members:
            self.end(protocol.CLOSE_NORMAL, "")

    def end(self, code: int, reason: str, final: str | None = None) -> None:
        """Stop for good: close every member with ``code``/``reason`` (after ``final``, a
        frame for each), let the Hub forget the room, cancel its nursery. Idempotent."""
        if self.ended:
            return
        self._flush()
        self.ended = True
        self.hub._forget(self)
        for member in list(self.members.values()):
            member.close(code, reason, final)
        self.scope.cancel()




def _next_waiting(frames: trio.MemoryReceiveChannel[str]) -> str | None:
    try:
        return frames.receive_nowait()
    except trio.WouldBlock:
        return None


def _queued_bytes(entry: tuple[int, LiveRoom, Member]) -> int:
    return entry[0]


class SocketCount:
    """``with hub.serving():`` -- a class, not a generator: one is held per open socket."""

    __slots__ = ("_hub",)

    def __init__(self, hub: Hub) -> None:
        self._hub = hub

    def __enter__(self) -> None:
        self._hub._opened()

    def __exit__(self, *exc_info: object) -> None:
        self._hub._closed()


class Hub:
    """Every live room on this instance, each in a nursery the Hub owns."""

    def __init__(
        self,
        bus: Bus,
        metrics: Metrics,
        *,
        cleanup_seconds: float = 5.0,
        ping_seconds: float | None = None,
        outbox_total_bytes: int = UNBOUNDED,
    ) -> None:
        self.bus = bus
        self.metrics = metrics
        # What every member's outbox holds, kept under OUTBOX_TOTAL_BYTES by ``shed``.
        self.outboxes = QueuedBytes(outbox_total_bytes)
        self.cleanup_seconds = cleanup_seconds
        self.ping_seconds = ping_seconds
        self.rooms: dict[str, LiveRoom] = {}
        self.draining = False
        self._nursery: trio.Nursery | None = None
        self._sockets = 0
        self._no_sockets = trio.Event()
        self._no_sockets.set()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            if self.ping_seconds:
                nursery.start_soon(ping_members, self.members, self.ping_seconds)
            task_status.started()
            await trio.sleep_forever()

    def members(self) -> list[Member]:
        return [member for room in self.rooms.values() for member in room.members.values()]

    @property
    def socket_count(self) -> int:
        return self._sockets

    @property
    def queued_bytes(self) -> int:
        """Bytes queued for this instance's sockets and not yet written."""
        return self.outboxes.queued

    def shed(self) -> None:
        """Past OUTBOX_TOTAL_BYTES: close the members with the largest queues until the
        rest fit.

        The largest goes first, not the member whose frame crossed the line: that one may be a
        reader a moment behind, while the largest is the furthest from catching up and frees
        the most. Finding it walks every member, but only past the cap, never on a frame's way.
        A member already closing is passed over: what it still counts is a write in flight,
        which only its end frees.
        """
        behind = [
            (member.queued_bytes, room, member)
            for room in self.rooms.values()
            for member in room.members.values()
            if member.queued_bytes and not member.closing
        ]
        behind.sort(key=_queued_bytes, reverse=True)
        for _, room, member in behind:
            if self.outboxes.queued <= self.outboxes.limit:
                return
            room.close_too_slow(member, "OUTBOX_TOTAL_BYTES")

    def serving(self) -> SocketCount:
        """Counts an open WebSocket, so a drain can wait for the last one to finish."""
        return SocketCount(self)

    def _opened(self) -> None:
        if self._sockets == 0:
            self._no_sockets = trio.Event()
        self._sockets += 1

    def _closed(self) -> None:
        self._sockets -= 1
        if self._sockets == 0:
            self._no_sockets.set()

    async def add(self, record: RoomRecord, member: Member) -> LiveRoom:
        """Add a member to the room's live side, starting it (subscribed) if it is the first."""
        assert self._nursery is not None, "Hub.run() is not running"
        room = self.rooms.get(record.room_id)
        if room is None:
            room = LiveRoom(self, record)
            self.rooms[record.room_id] = room
            room.seat(member)
            await self._nursery.start(room.run)
        else:
            room.seat(member)
            await room.subscribed.wait()
        return room

    def _forget(self, room: LiveRoom) -> None:
        if self.rooms.get(room.room_id) is room:
            del self.rooms[room.room_id]

    async def drain(self, grace_seconds: float) -> None:
        """Tell every local member the server is going away, and wait for their sockets."""
        self.draining = True
        for room in list(self.rooms.values()):
            room.end(
                protocol.CLOSE_GOING_AWAY,
                "Server shutting down",
                protocol.system(room.room_id, protocol.SHUTTING_DOWN),
            )
        with trio.move_on_after(grace_seconds):
            await self._no_sockets.wait()
