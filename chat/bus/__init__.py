"""The backend that the instances of one deployment share: room state and pub/sub.

``MemoryBus`` serves one process with nothing else installed. Any other backend fills the
same ``Bus`` protocol, so the HTTP layer and the room nurseries never know which one runs.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Protocol

import trio

# Frames a room's subscription holds before the bus waits for its reader (nothing is dropped).
SUBSCRIPTION_FRAMES = 1024
# Sent on a room's channel after its final system message: every instance ends the room.
ROOM_END = "\x00end"


@dataclass(frozen=True, slots=True)
class RoomRecord:
    room_id: str
    name: str | None
    owner_name: str
    password_hash: str | None
    max_users: int
    created_at: float
    expires_at: float
    destroy_on_owner_offline: bool = True


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


@dataclass(frozen=True, slots=True)
class AdmitResult:
    status: Admission
    online_count: int = 0
    room: RoomRecord | None = None  # The room as stored, when admitted.


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


class Bus(Protocol):
    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Background work of the backend; returns only when cancelled."""

    @property
    def ready(self) -> bool: ...

    @property
    def reconnects(self) -> int:
        """Times the backend's connection was re-established after a loss."""

    async def create_room(self, room: RoomRecord) -> None: ...

    async def get_room(self, room_id: str) -> RoomRecord | None:
        """The room, or None when it does not exist or has expired."""

    async def occupancy(self, room_id: str) -> tuple[RoomRecord, int] | None:
        """The room and how many of its seats are taken, in one step; None as ``get_room``."""

    async def delete_room(self, room_id: str) -> bool:
        """Remove the room and its presence; True only for the one call that removed it."""

    async def admit(self, room_id: str, member: MemberRecord) -> AdmitResult:
        """Add a member unless the room is full or gone, as one atomic step; an admitted
        member's result carries the room, so entering a room takes one step."""

    async def depart(self, room_id: str, connection_id: str) -> Departure | None:
        """Remove a member; None when the room is gone or the member was not in it."""

    async def members(self, room_id: str) -> list[MemberRecord]: ...

    async def publish(self, room_id: str, frame: str, undelivered: Callable[[], None] | None = None) -> None:
        """Deliver an encoded frame to every subscriber of the room, in order per publisher.

        Raises ``BusUnavailable`` when the frame cannot be taken. A backend that takes it and
        then fails before it is sure the room got it calls ``undelivered`` (if given), so
        the sender can be told rather than the frame lost in silence.
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
