"""The backend that the instances of one deployment share: room state and pub/sub.

``MemoryBus`` serves one process with nothing else installed. Any other backend fills the
same ``Bus`` protocol, so the HTTP layer and the room nurseries never know which one runs.
"""

from __future__ import annotations

import enum
import secrets
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import NamedTuple, Protocol

import trio

# Frames a room's subscription holds before the bus waits for its reader (nothing is dropped).
SUBSCRIPTION_FRAMES = 1024
# Offsets back that a room remembers dedupe keys at least (more when its history is longer).
DEDUPE_MIN = 100
# How long the final frame of a room that ended is kept for members who arrive too late.
ENDED_SECONDS = 60.0
# What every control frame on a room's channel starts with (no chat frame does: those are JSON).
CONTROL = "\x00"
# Sent on a room's channel after its final system message: every instance ends the room.
ROOM_END = "\x00end"
# Put into a room's subscription when the backend subscribed it again after losing it:
# what was published meanwhile never came, and the room's history has it (or lost it).
ROOM_RESYNC = "\x00resync"
# Sent on a room's channel, followed by a sender: the owner removed that member; every
# instance closes its sockets.
ROOM_REMOVE = "\x00remove "


# A NamedTuple, not a frozen dataclass: as immutable, and one is made for every room created
# or looked up, where a frozen dataclass's __init__ (a setattr per field) takes 2 µs more.
class RoomRecord(NamedTuple):
    room_id: str
    name: str | None
    owner_name: str
    password_hash: str | None
    max_users: int
    created_at: float
    expires_at: float
    destroy_on_owner_offline: bool = True
    # End-to-end encrypted: messages are envelopes the server cannot read (chat/sealed.py).
    e2e: bool = False
    e2e_salt: str | None = None  # Public salt of a key derived from the room password.
    # The owner's name as names are compared: reserved for the owner for the room's life.
    owner_key: str = ""


@dataclass(frozen=True, slots=True)
class MemberRecord:
    connection_id: str
    display_name: str
    connected_at: float
    is_owner: bool = False


class Admission(enum.Enum):
    ADMITTED = "admitted"
    FULL = "full"
    NO_ROOM = "no_room"
    REMOVED = "removed"  # The owner removed this sender.
    NAME_TAKEN = "name_taken"


@dataclass(frozen=True, slots=True)
class AdmitResult:
    status: Admission
    online_count: int = 0
    room: RoomRecord | None = None  # The room as stored, when admitted.
    # The room's history read just after the admission, in the same round trip, when asked
    # for and the backend could (see ``Bus.admit``).
    history: History | None = None


def new_hold() -> str:
    """The id of one hold on a dropped seat: a stale timer of an earlier hold never frees it."""
    return secrets.token_hex(8)


@dataclass(frozen=True, slots=True)
class Claim:
    """A dropped seat taken over by its sender's new socket: the same member, still online."""

    room: RoomRecord
    member: MemberRecord
    online_count: int


@dataclass(frozen=True, slots=True)
class Departure:
    online_count: int
    owner_online: bool


@dataclass(frozen=True, slots=True)
class Ghost:
    """A member still in a room's presence whose instance died: no socket holds it anymore."""

    room_id: str
    member: MemberRecord


class BusUnavailable(RuntimeError):
    """The shared backend cannot be reached right now."""


@dataclass(frozen=True, slots=True)
class Position:
    """Where a room's message stream stands."""

    epoch: str  # Random; new whenever the room's history is lost (Redis restarted empty).
    offset: int  # The newest message's offset; 0 for none yet.


@dataclass(frozen=True, slots=True)
class History:
    position: Position  # Read in the same atomic step as ``frames``.
    frames: list[str]  # Stored message frames after ``since``, oldest first, at most ``limit``.
    # Every message after ``since`` (in this epoch) is still kept: ``frames`` holds them, or
    # their first ``limit``. False when some were dropped or the epoch differs: then
    # ``frames`` is empty, since a replay with a hole in it would be a silent gap.
    complete: bool


# A room that is gone has no position: its history says so.
NO_POSITION = Position("", 0)


@dataclass(frozen=True, slots=True)
class Reading:
    """What to read of a room's history (``Bus.history``'s arguments)."""

    since: int | None
    epoch: str | None
    limit: int


class Receipt(Protocol):
    """How the sender of a post learns its fate: exactly one call, synchronous, from the
    bus's own task; it must neither await nor raise."""

    def posted(self, offset: int) -> None:
        """The message is in the room's stream at ``offset`` (deduplicated: where it was first)."""

    def lost(self) -> None:
        """It may not have gone out (the backend failed), or the room is gone."""


OFFSET_PREFIX = '{"offset":'


def with_offset(message: str, offset: int) -> str:
    """The stored and published frame of a message: its offset as the first field."""
    rest = message[1:]
    return f"{OFFSET_PREFIX}{offset}{'' if rest == '}' else ','}{rest}"


def with_count(presence: str, online_count: int) -> str:
    """The published frame of a presence event: the room's online count as its last field."""
    return f'{presence[:-1]},"online_count":{online_count}}}'


def offset_of(frame: str) -> int | None:
    """A message frame's offset, read from its prefix without decoding the JSON; None for
    frames that carry none (presence, system, errors)."""
    if not frame.startswith(OFFSET_PREFIX):
        return None
    end = frame.find(",", len(OFFSET_PREFIX))
    digits = frame[len(OFFSET_PREFIX) : end if end > 0 else -1]
    return int(digits) if digits.isdigit() else None


class Bus(Protocol):
    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Background work of the backend; returns only when cancelled."""

    @property
    def ready(self) -> bool: ...

    async def until_ready(self) -> None:
        """Return once the backend can be used (at once, if it can)."""

    @property
    def reconnects(self) -> int:
        """Times the backend's connection was re-established after a loss."""

    async def create_room(self, room: RoomRecord) -> None: ...

    async def get_room(self, room_id: str) -> RoomRecord | None:
        """The room, or None when it does not exist or has expired."""

    async def occupancy(self, room_id: str, name_key: str = "") -> tuple[RoomRecord, int, bool] | None:
        """The room, how many of its seats are taken, and whether a member's seat holds
        ``name_key`` (the name as compared; none: False), in one step; None as ``get_room``."""

    async def count_and_occupancy(
        self, key: str, window_seconds: float, room_id: str, name_key: str = ""
    ) -> tuple[tuple[int, float], tuple[RoomRecord, int, bool] | None]:
        """``count`` and ``occupancy`` together, in one step where the backend can: a REST
        join's rate count and its first look at the room."""

    async def count_and_create(self, key: str, window: float, room: RoomRecord, limit: int) -> tuple[int, float]:
        """``count`` (``window`` in seconds), and ``create_room`` only if that count is within
        ``limit``, in one step where the backend can: a REST creation's rate count and room."""

    async def delete_room(self, room_id: str, final_frame: str | None = None) -> bool:
        """Remove the room, its presence and its history; True only for the one call that
        removed it. That call leaves ``final_frame`` (the system message saying why the room
        ended) for ``ended`` to tell members who arrive too late, for ENDED_SECONDS."""

    async def ended(self, room_id: str) -> str | None:
        """The final frame of a room that ended in the last ENDED_SECONDS, else None."""

    async def admit(
        self, room_id: str, member: MemberRecord, sender: str = "", name_key: str = "", read: Reading | None = None
    ) -> AdmitResult:
        """Add a member unless the room is full or gone, as one atomic step; an admitted
        member's result carries the room, so entering a room takes one step. With ``read``,
        a backend that can read the room's history in the same round trip (one Redis) adds
        it to the result, as ``history`` would give it; others leave it for a call of its
        own. ``sender`` (see ``claim``) lets its sender take the seat back should this
        instance die under it. ``name_key`` (the name as compared; none: no check) must be
        free, or held by the same sender, and not the room's ``owner_key`` unless the member
        is the owner: the seat then holds it until the last of its sender's seats departs. A
        sender the owner removed is refused (REMOVED)."""

    async def revoke(self, room_id: str, connection_id: str) -> str | None:
        """The owner removes a member: its sender is refused from now on, for the room's
        life (``admit``, ``claim``); its seats stay until its sockets depart. The sender;
        None when the member is not in the room."""

    async def revoked(self, room_id: str, sender: str) -> bool:
        """Whether the owner removed ``sender`` from the room."""

    async def depart(self, room_id: str, connection_id: str) -> Departure | None:
        """Remove a member; None when the room is gone or the member was not in it."""

    async def drop(self, room_id: str, connection_id: str, sender: str) -> str | None:
        """Hold the seat of a socket that was lost without a goodbye: it stays in presence and
        counts against max_users until ``claim`` gives it to ``sender``'s next socket or
        ``depart_dropped`` frees it. The hold's id, for ``depart_dropped``; None when the
        seat is gone (room ended, member left)."""

    async def claim(self, room_id: str, sender: str) -> Claim | None:
        """Take over the seat ``sender`` holds dropped, or left on an instance that died and
        is not yet reaped (its newest), as one atomic step, for a socket on this instance;
        None when it holds none, the owner removed it, or the room is gone."""

    async def depart_dropped(self, room_id: str, connection_id: str, hold: str) -> Departure | None:
        """``depart``, but only while the seat is still held by the hold ``drop`` returned:
        None once it was claimed (even if its new socket was lost and it is held again)."""

    async def members(self, room_id: str) -> list[MemberRecord]: ...

    async def mark_read(self, room_id: str, connection_id: str, offset: int) -> int | None:
        """Move the member's last-read offset up to ``offset`` (no further than the room's
        newest message), kept for the room's life and deleted with it; never backwards.
        The offset now kept, when this moved it; None when it did not or the room is gone."""

    async def read_offsets(self, room_id: str) -> dict[str, int]:
        """Each member's last-read offset (connection id -> offset), for those that sent one."""

    async def publish(self, room_id: str, frame: str, undelivered: Callable[[], None] | None = None) -> None:
        """Deliver an encoded frame to every subscriber of the room, in order per publisher.

        Raises ``BusUnavailable`` when the frame cannot be taken. A backend that takes it and
        then fails before it is sure the room got it calls ``undelivered`` (if given), so
        the sender can be told rather than the frame lost in silence.
        """

    async def announce(self, room_id: str, presence: str) -> None:
        """Publish a presence frame (an encoded JSON object without ``online_count``), as
        ``with_count(presence, n)``: ``n``, the room's online count, taken in one atomic step
        with the publishing. Every member gets a room's frames in one order, so the newest
        presence frame a member got carries the room's count; counts taken at admission or
        departure would come in the order those frames were published, not taken. Raises
        ``BusUnavailable`` like ``publish``.
        """

    async def post(
        self, room_id: str, message: str, receipt: Receipt | None = None, dedupe: str | None = None
    ) -> None:
        """A chat message: ``message`` is its encoded JSON object, without an offset.

        In one atomic step the backend gives it the room's next offset (1, 2, 3... no gaps),
        stores ``with_offset(message, offset)`` in the room's history and publishes it, so
        offsets are in delivery order on every instance; posts and publishes of one instance
        keep the order they were called in. A second post with the same ``dedupe`` key (the
        sender's identity and the client's message id; opaque here) while the first is
        among the room's last max(history size, DEDUPE_MIN) offsets is neither stored nor
        published: its receipt gets the first one's offset. A room that is gone takes nothing: lost().
        Raises ``BusUnavailable`` like ``publish`` when the post cannot be taken.
        """

    async def history(self, room_id: str, since: int | None, epoch: str | None, limit: int) -> History:
        """The room's stored messages and position, read in one atomic step.

        ``since=None``: the newest ``limit`` messages (a newcomer's history); complete when
        they are all the room's epoch has had. ``since=N`` with the room's current ``epoch``:
        the messages after N, oldest first, at most ``limit``; complete=False (and nothing)
        when some after N are no longer kept or the epoch differs. A room without messages
        has a position too (epoch made on first need); a room that is gone has NO_POSITION.
        """

    def subscribe(self, room_id: str) -> AbstractAsyncContextManager[trio.MemoryReceiveChannel[str]]:
        """Frames published to the room from now on, until the context exits."""

    async def count(self, key: str, window_seconds: float) -> tuple[int, float]:
        """Count one event under ``key`` in a fixed window shared by every instance:
        the events so far in this window (this one included) and seconds until it ends."""

    async def reap(self) -> list[Ghost]:
        """Wait for the next presence sweep; the members whose instance stopped heartbeating.

        Each ghost is still in presence: the caller departs it like any leaving member.
        A backend without other instances has no ghosts and never returns.
        """
