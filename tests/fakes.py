"""Stand-ins for a member's socket, so the live side runs without HTTP or a network."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import trio

from chat import clock
from chat.bus import MemberRecord, RoomRecord
from chat.bus.memory import MemoryBus
from chat.metrics import Metrics
from chat.nursery import Hub
from chat.ws.member import UNBOUNDED, Member, QueuedBytes


class RecordingSocket:
    """A member's socket that takes every write whole, and remembers each one."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed: tuple[int, str] | None = None
        self.closed_event = trio.Event()

    def write_now(self, data: bytes) -> int:
        self.writes.append(data)
        return len(data)

    async def send_frames(self, frames: list[bytes]) -> None:
        self.writes.append(b"".join(frames))

    async def close(self, code: int, reason: str) -> None:
        self.closed = (code, reason)
        self.closed_event.set()

    def texts(self) -> list[str]:
        """Every frame written so far, in order."""
        return [text for data in self.writes for text in frames_in(data)]


class StalledSocket(RecordingSocket):
    """A member's socket whose peer stops reading once ``stall()`` is called (at once, with
    ``stalled=True``): nothing is taken straight any more, and a send waits, as Hypercorn's
    does on a full socket, until ``resume()``."""

    def __init__(self, *, stalled: bool = True) -> None:
        super().__init__()
        self.reading = trio.Event()
        if not stalled:
            self.reading.set()

    def stall(self) -> None:
        self.reading = trio.Event()

    def resume(self) -> None:
        self.reading.set()

    def write_now(self, data: bytes) -> int:
        return super().write_now(data) if self.reading.is_set() else 0

    async def send_frames(self, frames: list[bytes]) -> None:
        await self.reading.wait()
        await super().send_frames(frames)


def frames_in(data: bytes) -> list[str]:
    """The texts of back-to-back server frames."""
    texts = []
    while data:
        size = data[1] & 0x7F
        offset, size = (2, size) if size < 126 else (4, int.from_bytes(data[2:4], "big"))
        texts.append(data[offset : offset + size].decode())
        data = data[offset + size :]
    return texts


def recording_member(name: str, nursery: trio.Nursery, *, owner: bool = False) -> tuple[Member, RecordingSocket]:
    """A member whose socket records what it is sent; its writer runs in ``nursery``."""
    socket = RecordingSocket()
    member = Member(MemberRecord(f"c-{name}", name, clock.now(), owner), outbox_frames=8)
    member.attach(socket, nursery, socket.write_now)
    return member, socket


def member_on(
    socket: RecordingSocket,
    name: str,
    nursery: trio.Nursery,
    queued: QueuedBytes,
    *,
    outbox_frames: int = 256,
    outbox_bytes: int = UNBOUNDED,
) -> Member:
    """A member writing to ``socket``, counting its queued bytes into ``queued``."""
    member = Member(MemberRecord(f"c-{name}", name, clock.now(), False), outbox_frames, outbox_bytes, queued)
    member.attach(socket, nursery, socket.write_now)
    return member


def room_record(room_id: str = "r1", life: float = 600) -> RoomRecord:
    now = clock.now()
    return RoomRecord(room_id, None, "ann", None, 20, now, now + life)


@asynccontextmanager
async def running_hub(
    bus: MemoryBus | None = None, *, outbox_total_bytes: int = UNBOUNDED
) -> AsyncIterator[tuple[MemoryBus, Hub, trio.Nursery]]:
    """A MemoryBus and a Hub running on it; the nursery is for members' writers."""
    bus = bus or MemoryBus()
    async with trio.open_nursery() as nursery:
        await nursery.start(bus.run)
        hub = Hub(bus, Metrics(), outbox_total_bytes=outbox_total_bytes)
        await nursery.start(hub.run)
        yield bus, hub, nursery
        nursery.cancel_scope.cancel()


@asynccontextmanager
async def room_of_recording_members(
    count: int = 3, life: float = 600
) -> AsyncIterator[tuple[MemoryBus, Hub, list[RecordingSocket]]]:
    """Room "r1" on a MemoryBus, served by a Hub, with members whose sockets record writes."""
    record = room_record("r1", life)
    async with running_hub() as (bus, hub, nursery):
        await bus.create_room(record)
        sockets = []
        for i in range(count):
            member, socket = recording_member(f"m{i}", nursery)
            await hub.add(record, member)
            sockets.append(socket)
        yield bus, hub, sockets
