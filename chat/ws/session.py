"""One member's WebSocket, from accept to close: admission, reading, closing.

The socket layer never talks to the bus: what the room hears of a member (arrival, speech,
departure) goes through ``Rooms`` (chat.rooms), and the frames it gets come from its
LiveRoom (chat.nursery).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import trio

from .. import protocol
from ..bus import BusUnavailable
from ..config import READ_RECEIPT_INTERVAL_SECONDS, TYPING_INTERVAL_SECONDS, Settings
from ..limits import MessageRate, Verdict
from ..metrics import Metrics, refusal_reason
from ..nursery import Hub, LiveRoom
from ..origins import Origins
from ..rooms import Entry, NameTaken, Removed, RoomError, RoomNotFound, Rooms
from ..sealed import read_sealed_frame
from . import wire
from .member import Member
from .receipts import ReadReceipts, TypingThrottle
from .socket import AsgiSocket, Disconnected, InvalidName

log = logging.getLogger(__name__)

NOT_SENT = "A message of yours may not have reached the room (the chat backend failed); send it again"
# Longest ``since`` taken: offsets are counters, and a number this long is no offset of ours.
SINCE_MAX_DIGITS = 18
EPOCH_MAX_CHARS = 64
# Sockets let through handshake and admission at once (see Session._entering): enough to keep
# the backend's pipeline full, few enough that each finishes in milliseconds.
ENTERING_AT_ONCE = 64
# ``read_receipts=`` values that turn read receipts off for the socket's member.
RECEIPTS_OFF = frozenset({"false", "0", "no", "off"})


class InvalidResume(ValueError):
    pass


def _resume_point(socket: AsgiSocket) -> tuple[int | None, str | None]:
    """``since`` and ``epoch`` from the socket's URL: where a reconnecting client left off."""
    since = socket.arg("since")
    if since is None:
        return None, None
    if not (since.isascii() and since.isdigit() and len(since) <= SINCE_MAX_DIGITS):
        raise InvalidResume("since must be a whole number of at least 0 (the last offset you received).")
    epoch = socket.arg("epoch")
    if epoch is not None and len(epoch) > EPOCH_MAX_CHARS:
        raise InvalidResume(f"epoch must be at most {EPOCH_MAX_CHARS} characters long (the epoch of your hello).")
    return int(since), epoch


class Delivery:
    """The receipt of one message: its sender hears where it landed (when it asked, with a
    client_id), or that it may not have gone out."""

    __slots__ = ("client_id", "member", "metrics")

    def __init__(self, member: Member, client_id: str | None, metrics: Metrics) -> None:
        self.member, self.client_id, self.metrics = member, client_id, metrics

    def posted(self, offset: int) -> None:
        if self.client_id is not None:
            self.member.tell(protocol.ack(self.client_id, offset))

    def lost(self) -> None:
        self.metrics.error("undeliverable")
        self.member.tell(protocol.error(NOT_SENT, self.client_id))


def _client_id_of(data: str | bytes, max_chars: int) -> str | None:
    """The client_id a refused frame carried, if it can be read, so the error can name it."""
    try:
        return protocol.read_message(data, max_chars).client_id
    except protocol.BadFrame as error:
        return error.client_id


class Session:
    """What a member's socket needs from the instance."""

    def __init__(self, settings: Settings, rooms: Rooms, hub: Hub, origins: Origins, metrics: Metrics) -> None:
        self.settings, self.rooms, self.hub = settings, rooms, hub
        self.origins, self.metrics = origins, metrics
        # Sockets between their handshake and their seat, at once. A reconnect storm's
        # thousands then enter a few dozen at a time, each quickly, instead of all together
        # so slowly that their backend calls outlast its time bound (read as Redis gone).
        self._entering = trio.Semaphore(ENTERING_AT_ONCE)

    def _refusal(self, socket: AsgiSocket, room_id: str) -> tuple[int, str, str] | None:
        """Why this socket may not even try to enter: close code, reason, metric label."""
        if self.hub.draining:
            return protocol.CLOSE_TRY_AGAIN, "Server is shutting down; reconnect", "draining"
        if not self.origins.allows(socket.header("origin"), socket.header("host")):
            return protocol.CLOSE_POLICY, "Origin not allowed", "origin"
        full = self.hub.socket_count > self.settings.max_connections or (
            room_id not in self.hub.rooms and len(self.hub.rooms) >= self.settings.max_live_rooms
        )
        if full:
            return protocol.CLOSE_TRY_AGAIN, "Server is at capacity; try again later", "capacity"
        return None

    async def serve(self, socket: AsgiSocket, room_id: str) -> None:
        with self.hub.serving():
            async with self._entering:
                entered = await self._enter(socket, room_id)
            if entered is not None:
                await self._chat(socket, *entered)

    async def _enter(
        self, socket: AsgiSocket, room_id: str
    ) -> tuple[Entry, int, int | None, str | None] | None:
        """Handshake and seat: the member's entry, the online count and where it resumes
        from; None once the socket was refused (and closed) or its peer left."""
        metrics = self.metrics
        try:
            await socket.accept()
        except Disconnected:
            return None
        # Two pings unanswered by the peer's kernel: it is gone (see chat.ws.pings).
        socket.give_up_unacknowledged_after(2 * self.settings.ws_ping_seconds)
        refusal = self._refusal(socket, room_id)
        if refusal is not None:
            code, reason, label = refusal
            metrics.refused(label)
            await socket.close(code, reason)
            return None
        try:
            since, epoch = _resume_point(socket)
            entry, online_count = await self.rooms.admit(
                room_id, socket.token(), socket.display_name(), since=since, epoch=epoch
            )
        except (RoomError, InvalidName, InvalidResume) as error:
            if isinstance(error, NameTaken | Removed):
                reason = "name_taken" if isinstance(error, NameTaken) else "removed"
            elif isinstance(error, RoomError):
                reason = refusal_reason(error.status)
            else:
                reason = "invalid_name" if isinstance(error, InvalidName) else "invalid_resume"
            metrics.refused(reason)
            await socket.close(protocol.CLOSE_POLICY, error.reason if isinstance(error, NameTaken) else str(error))
            return None
        except BusUnavailable as error:
            metrics.refused("backend_unavailable")
            await socket.close(protocol.CLOSE_TRY_AGAIN, str(error))
            return None
        socket.entered()
        return entry, online_count, since, epoch

    async def _chat(
        self, socket: AsgiSocket, entry: Entry, online_count: int, since: int | None, epoch: str | None
    ) -> None:
        me = entry.member
        settings = self.settings
        member = Member(me, settings.outbox_frames, settings.outbox_bytes, self.hub.outboxes, held=True)
        member.sender = entry.sender
        member.read_receipts = (socket.arg("read_receipts") or "").lower() not in RECEIPTS_OFF
        async with trio.open_nursery() as nursery:
            member.attach(socket, nursery, socket.write_now)
            receipts = (
                ReadReceipts(self._reader_of(entry), READ_RECEIPT_INTERVAL_SECONDS, nursery)
                if member.read_receipts
                else None
            )
            room: LiveRoom | None = None
            try:
                # Hello means in: the room is subscribed on this instance before the hello
                # goes out, and what it sent meanwhile follows the hello and the history.
                room = await self.hub.add(entry.room, member)
                await self._catch_up(entry, room, member, since, epoch)
                with member.reading:
                    if not entry.resumed:  # A resumed seat never went offline.
                        await self.rooms.arrive(entry, online_count)
                    await self._read(socket, entry, member, receipts)
            except Disconnected:
                pass
            except BusUnavailable as error:
                member.close(protocol.CLOSE_TRY_AGAIN, str(error))
            except RoomNotFound as error:  # Gone before its history could be read.
                member.close(protocol.CLOSE_POLICY, str(error))
            finally:
                # A socket lost under a member that was not being closed keeps its seat a while.
                dropped = socket.dropped and not member.closing and not self.hub.draining
                member.close(protocol.CLOSE_NORMAL, "")
                if receipts is not None:
                    receipts.stop()
                if room is not None:
                    room.remove(member)
                await self._depart(entry, dropped, receipts)
            # The writer flushes the last frames and the close frame. A peer that stopped
            # reading leaves it stuck in a send that cannot be cancelled: drop the connection.
            grace = self.settings.stalled_grace_seconds if member.stalled else self.settings.close_grace_seconds
            with trio.move_on_after(grace):
                await member.written.wait()
                await socket.finish_closing()
            if not member.written.is_set():
                await socket.abort()

    async def _catch_up(
        self, entry: Entry, room: LiveRoom, member: Member, since: int | None, epoch: str | None
    ) -> None:
        """The hello, then what the member missed: the room's last messages for a newcomer,
        or everything after ``since`` for a resume; then the frames held back meanwhile and
        those still on their way, less the messages up to the history's position.
        Subscribed first, read second: no gap, no duplicate. A history read with the seat,
        before the member was added here, does as well while the room has fanned out
        nothing newer than it (``LiveRoom.still_ahead_of``); else it is read again."""
        if member.closing:
            return  # The room ended while it entered; its reason is already on the way.
        history = entry.history
        if history is None or not room.still_ahead_of(history.position):
            history = await self.rooms.history(entry.room.room_id, since, epoch)
        position = history.position
        recovered = None if since is None else history.complete
        room_id, connection_id = entry.room.room_id, entry.member.connection_id
        hello = protocol.hello(
            room_id,
            connection_id,
            entry.member.display_name,
            position.epoch,
            position.offset,
            recovered,
            e2e=entry.room.e2e,
        )
        first = [wire.text_frame(hello)]
        if since is None or history.complete:
            first += [wire.text_frame(protocol.replayed(frame)) for frame in history.frames]
        room.release(member, first, position.offset)

    def _reader_of(self, entry: Entry) -> Callable[[int], Awaitable[None]]:
        async def read(offset: int) -> None:
            try:
                await self.rooms.read(entry, offset)
            except BusUnavailable:
                pass  # A receipt is no message: the member's next one carries it further.

        return read

    async def _read(self, socket: AsgiSocket, entry: Entry, member: Member, receipts: ReadReceipts | None) -> None:
        metrics = self.metrics
        limit = self.settings.message_max_chars
        read = read_sealed_frame if entry.room.e2e else protocol.read_frame
        # Every frame counts against the rate, typing and read frames too: none can flood.
        rate = MessageRate(self.settings.messages_per_second, self.settings.message_burst, self.settings.flood_debt)
        typing = TypingThrottle(TYPING_INTERVAL_SECONDS)
        while True:
            data = await socket.receive()
            verdict = rate.judge()
            if verdict is Verdict.FLOOD:
                metrics.error("flood")
                member.close(protocol.CLOSE_POLICY, "Flooding: far too many messages")
                return
            if verdict is Verdict.REFUSE:
                metrics.error("rate_limited")
                slow_down = f"Slow down: at most {rate.per_second:g} messages a second"
                member.tell(protocol.error(slow_down, _client_id_of(data, limit)))
                continue
            try:
                said = read(data, limit)
            except protocol.BadFrame as error:
                metrics.error("bad_frame")
                member.tell(protocol.error(str(error), error.client_id))
                continue
            if isinstance(said, protocol.Typing):
                if typing.allows():
                    try:
                        await self.rooms.typing(entry)
                    except BusUnavailable:
                        pass  # The member is still typing: its next frame tells the room.
                continue
            if isinstance(said, protocol.ReadUpTo):
                if receipts is not None:  # A member without receipts sends none.
                    receipts.note(said.offset)
                continue
            try:
                await self.rooms.say(entry, said, Delivery(member, said.client_id, metrics))
                metrics.received()
            except BusUnavailable as error:
                metrics.error("undeliverable")
                # Never lose a message silently: the sender learns it did not go out.
                member.tell(protocol.error(str(error), said.client_id))

    async def _depart(self, entry: Entry, dropped: bool, receipts: ReadReceipts | None) -> None:
        # Runs while the handler may be cancelled (shutdown): shield it, but bound it.
        with trio.CancelScope(shield=True), trio.move_on_after(self.settings.close_grace_seconds):
            try:
                if receipts is not None:
                    await receipts.flush()  # The last read of a member is never lost.
                if dropped:
                    await self.rooms.drop(entry)
                else:
                    await self.rooms.depart(entry, owner_rule=not self.hub.draining)
            except BusUnavailable:
                log.info("departure deferred to the presence sweep", extra={"room_id": entry.room.room_id})
            except Exception:
                self.metrics.error("departure_failed")
                log.exception("departure failed", extra={"room_id": entry.room.room_id})
