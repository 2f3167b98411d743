"""One local member of a room: how frames reach its socket, and how it is closed.

A member joins its room's fan-out held: what the room sends is kept back until its session
releases it with the frames that must come first (the hello, then history), so nothing
published once the room is subscribed can be missed or overtake the hello. Messages the
history already gave it may still be on their way through the room's subscription when it
is released (published before the history was read, not yet fanned out): those are dropped
too, up to the last message the history had.

A member that keeps up gets every frame written straight to its socket, with no task switch.
Only while its socket cannot take frames as fast as they come does it get a bounded outbox and
a writer task that drains it, taking whatever has queued up as one write: a socket that stops
reading can stall only its own writer, never the room. A member whose outbox fills up, in
frames or in bytes, is closed (1008, with a reason), its backlog freed at once.

Bytes are counted from the moment a frame is queued until the write that carries it returns
(or its writer ends): the batch a writer holds while stuck in a send is memory too. Each
member counts its own against OUTBOX_BYTES, and every member of the instance adds to one
``QueuedBytes``, which the Hub keeps under OUTBOX_TOTAL_BYTES (chat.nursery). A frame queued
for many members is one object, counted once for each of them: the counts are an upper bound.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Protocol

import trio

from .. import protocol
from ..bus import MemberRecord, offset_of
from . import wire

SLOW_CONSUMER = "Too slow: this connection fell behind the room's messages"
# Most frames one write carries: bounds the size of a single send while a backlog drains.
WRITE_BATCH = 64
# No limit in bytes (a member's, or the instance's): only the frame count bounds the outbox.
UNBOUNDED = sys.maxsize


class Socket(Protocol):
    async def send_frames(self, frames: list[bytes]) -> None: ...

    async def close(self, code: int, reason: str) -> None: ...


# Writes what it can of the bytes right now, without waiting: how many it wrote.
WriteNow = Callable[[bytes], int]


class QueuedBytes:
    """Bytes queued for every member of one instance, and the most it should hold."""

    __slots__ = ("limit", "queued")

    def __init__(self, limit: int = UNBOUNDED) -> None:
        self.queued = 0
        self.limit = limit


class Member:
    """One local WebSocket in a room (see the module's docstring); while it is closing it
    has an outbox and writer too, to flush its last frames and the close frame."""

    # Slots: one of these per connection, and 10,000 connections per instance.
    __slots__ = (
        "_after",
        "_all",
        "_bytes",
        "_capacity",
        "_frames",
        "_held",
        "_max_bytes",
        "_nursery",
        "_outbox",
        "_queued",
        "_socket",
        "_write_now",
        "_writing",
        "close_code",
        "close_reason",
        "closing",
        "read_receipts",
        "reading",
        "record",
        "seat",
        "sender",
        "stalled",
        "written",
    )

    def __init__(
        self,
        record: MemberRecord,
        outbox_frames: int,
        outbox_bytes: int = UNBOUNDED,
        queued: QueuedBytes | None = None,
        *,
        held: bool = False,
    ) -> None:
        self.record = record
        # Its place in its room's order of arrival on this instance (chat.nursery.LiveRoom.seat).
        self.seat = 0
        # Who sends (chat.rooms.Entry.sender): the owner removes a sender, every socket of it.
        self.sender = ""
        # False: the member neither sends nor is sent read receipts.
        self.read_receipts = True
        self._capacity = outbox_frames
        self._max_bytes = outbox_bytes
        # The instance's count, which this member's queued bytes add to.
        self._all = queued if queued is not None else QueuedBytes()
        # Bytes held back, or queued and not yet written (see the module's docstring).
        self._bytes = 0
        # The room's frames kept back until ``release`` (None once released, or never held).
        self._held: list[bytes] | None = [] if held else None
        # Messages at or below this offset were sent as history: dropped if they come live.
        self._after: int | None = None
        # Cancelled by close(): stops the handler reading from a member that must go.
        self.reading = trio.CancelScope()
        self.closing = False
        self.close_code = protocol.CLOSE_NORMAL
        self.close_reason = ""
        # Set once the writer has flushed the outbox and sent the close frame.
        self.written = trio.Event()
        # Dropped for not keeping up: its writer may sit in a send for a long time.
        self.stalled = False
        self._socket: Socket | None = None
        self._nursery: trio.Nursery | None = None
        self._write_now: WriteNow | None = None
        self._outbox: trio.MemorySendChannel[bytes] | None = None
        self._frames: trio.MemoryReceiveChannel[bytes] | None = None
        # Frames handed to the outbox that the writer has not taken yet, and whether the
        # writer holds frames it has not finished writing: while either is so, new frames
        # must queue behind them.
        self._queued = 0
        self._writing = False

    @property
    def connection_id(self) -> str:
        return self.record.connection_id

    @property
    def queued_bytes(self) -> int:
        return self._bytes

    def attach(self, socket: Socket, nursery: trio.Nursery, write_now: WriteNow | None) -> None:
        """Where frames go: the socket, a nursery for its writer, and the synchronous write
        the socket offers (if any)."""
        self._socket, self._nursery, self._write_now = socket, nursery, write_now

    def deliver(self, frame: bytes) -> bool:
        """Hand a frame on without waiting; False when the outbox is full (in frames or bytes).

        With nothing queued ahead of it, the frame is first offered straight to the socket:
        a reader that keeps up takes it there and then, with no task switch. Only what the
        socket cannot take now goes through the outbox and the writer task.
        """
        if self.closing:
            return True  # Closing: nothing more goes out after the last frames.
        if self._after is not None and self._held is None:
            frame = self._unsent(frame)
            if not frame:
                return True
        if self._held is not None:
            if len(self._held) >= self._capacity or self._bytes + len(frame) > self._max_bytes:
                return False
            self._held.append(frame)
            self._bytes += len(frame)  # Not the instance's: held only while the member enters.
            return True
        if self._write_now is not None and not self._queued and not self._writing:
            sent = self._write_now(frame)
            if sent == len(frame):
                return True
            frame = frame[sent:]
        size = len(frame)
        if self._bytes + size > self._max_bytes:
            return False
        try:
            self._open_outbox().send_nowait(frame)
        except trio.WouldBlock:
            return False
        self._queued += 1
        self._bytes += size
        self._all.queued += size
        return True

    def release(self, first: list[bytes], after: int | None = None, arrived: int = 0) -> None:
        """Send ``first``, then the frames held back meanwhile, then everything live. With
        ``after`` (the offset ``first`` reaches), the messages up to it are dropped, held or
        still on their way: until one at or past it comes, unless the room has already
        fanned out that far (``arrived``). One synchronous step: no frame can slip in between."""
        held, self._held = self._held, None
        self._bytes = 0  # Only held frames were counted; what is delivered now counts anew.
        for frame in first:
            self.deliver(frame)
        self._after = after
        for data in held or ():
            self.deliver(data)
        if after is not None and arrived >= after:
            self._after = None  # Nothing older is still on its way.

    def _unsent(self, data: bytes) -> bytes:
        """``data`` less the messages at or below ``_after``. A room's messages come in
        offset order: once the one at ``_after`` or a newer one has come, nothing more needs
        checking."""
        kept = []
        for frame in wire.split(data):
            offset = offset_of(wire.text_of(frame))
            if self._after is None or offset is None or offset > self._after:
                kept.append(frame)
            if offset is not None and self._after is not None and offset >= self._after:
                self._after = None
        return b"".join(kept)

    def ping(self) -> None:
        """A WebSocket ping, where the socket takes raw frames. It goes like any frame, behind
        what is already queued; a full outbox loses it, and that member is being closed as too slow."""
        if self._write_now is not None:
            self.deliver(wire.PING)

    def tell(self, text: str) -> bool:
        """Hand on a frame meant for this member alone."""
        return self.deliver(wire.text_frame(text))

    def close(self, code: int, reason: str, final: str | None = None) -> None:
        """Stop taking frames; the writer flushes what is queued, then closes the socket."""
        if self.closing:
            return
        if self._held is not None:
            self.release([])  # Ended while entering: what it was sent still reaches it.
        if final is not None:
            self.tell(final)  # A full outbox means the reader is gone anyway.
        self.closing = True
        self.close_code, self.close_reason = code, reason
        self._open_outbox().close()
        self.reading.cancel()

    def close_too_slow(self) -> None:
        """Close a member too slow for its room: its backlog is freed at once, so the
        close frame (1008, with the reason) is the next thing after what is in flight."""
        if self.closing:
            return
        self.stalled = True
        while self._frames is not None:
            try:
                frame = self._frames.receive_nowait()
            except (trio.WouldBlock, trio.EndOfChannel):
                break
            self._queued -= 1
            self._written(len(frame))
        self.close(protocol.CLOSE_POLICY, SLOW_CONSUMER)

    def _written(self, size: int) -> None:
        """``size`` queued bytes are gone: written, dropped, or their writer ended."""
        self._bytes -= size
        self._all.queued -= size

    def _open_outbox(self) -> trio.MemorySendChannel[bytes]:
        if self._outbox is None:
            assert self._nursery is not None and self._socket is not None, "Member.attach() first"
            self._outbox, self._frames = trio.open_memory_channel[bytes](self._capacity)
            self._nursery.start_soon(self._write, self._socket, self._frames)
        return self._outbox

    async def _write(self, socket: Socket, frames: trio.MemoryReceiveChannel[bytes]) -> None:
        try:
            async with frames:
                async for frame in frames:
                    batch = [frame]
                    size = len(frame)
                    while len(batch) < WRITE_BATCH:
                        try:
                            frame = frames.receive_nowait()
                        except (trio.WouldBlock, trio.EndOfChannel):
                            break
                        batch.append(frame)
                        size += len(frame)
                    self._queued -= len(batch)
                    self._writing = True
                    await socket.send_frames(batch)
                    self._writing = False
                    self._written(size)
                    if not self._queued and not self.closing:
                        # Caught up: back to writing straight to the socket, and the outbox
                        # and this task go, so an idle member holds neither. A later lag
                        # opens new ones.
                        assert self._outbox is not None
                        self._outbox.close()
                        self._outbox = self._frames = None
                        return
            await socket.close(self.close_code, self.close_reason)
            self.written.set()
        finally:
            # Cancelled in a send, or the socket failed: what it still counts goes with it.
            self._written(self._bytes)
