"""One member's WebSocket, from accept to close: admission, reading, closing.

The socket layer never talks to the bus: what the room hears of a member (arrival, speech,
departure) goes through ``Rooms`` (chat.rooms), and the frames it gets come from its
LiveRoom (chat.nursery).
"""

from __future__ import annotations

import logging
from functools import partial

import trio

from .. import protocol
from ..bus import BusUnavailable
from ..config import Settings
from ..limits import MessageRate, Verdict
from ..metrics import Metrics, refusal_reason
from ..nursery import Hub, LiveRoom
from ..origins import Origins
from ..rooms import Entry, RoomError, Rooms
from . import wire
from .member import Member
from .socket import AsgiSocket, Disconnected, InvalidName

log = logging.getLogger(__name__)

NOT_SENT = "A message of yours may not have reached the room (the chat backend failed); send it again"


def _not_sent(metrics: Metrics, member: Member) -> None:
    metrics.error("undeliverable")
    member.tell(protocol.error(NOT_SENT))


class Session:
    """What a member's socket needs from the instance."""

    def __init__(self, settings: Settings, rooms: Rooms, hub: Hub, origins: Origins, metrics: Metrics) -> None:
        self.settings, self.rooms, self.hub = settings, rooms, hub
        self.origins, self.metrics = origins, metrics

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
        metrics = self.metrics
        with self.hub.serving():
            try:
                await socket.accept()
            except Disconnected:
                return
            # Two pings unanswered by the peer's kernel: it is gone (see chat.ws.pings).
            socket.give_up_unacknowledged_after(2 * self.settings.ws_ping_seconds)
            refusal = self._refusal(socket, room_id)
            if refusal is not None:
                code, reason, label = refusal
                metrics.refused(label)
                await socket.close(code, reason)
                return
            try:
                entry, online_count = await self.rooms.admit(room_id, socket.token(), socket.display_name())
            except (RoomError, InvalidName) as error:
                reason = refusal_reason(error.status) if isinstance(error, RoomError) else "invalid_name"
                metrics.refused(reason)
                await socket.close(protocol.CLOSE_POLICY, str(error))
                return
            except BusUnavailable as error:
                metrics.refused("backend_unavailable")
                await socket.close(protocol.CLOSE_TRY_AGAIN, str(error))
                return
            await self._chat(socket, entry, online_count)

    async def _chat(self, socket: AsgiSocket, entry: Entry, online_count: int) -> None:
        me = entry.member
        member = Member(me, self.settings.outbox_frames, held=True)
        async with trio.open_nursery() as nursery:
            member.attach(socket, nursery, socket.write_now)
            room: LiveRoom | None = None
            try:
                # Hello means in: the room is subscribed on this instance before the hello
                # goes out, and what it sent meanwhile follows the hello.
                room = await self.hub.add(entry.room, member)
                hello = protocol.system(entry.room.room_id, protocol.CONNECTED, connection_id=me.connection_id)
                member.release([wire.text_frame(hello)])
                with member.reading:
                    await self.rooms.arrive(entry, online_count)
                    await self._read(socket, entry, member)
            except (Disconnected, BusUnavailable):
                pass
            finally:
                member.close(protocol.CLOSE_NORMAL, "")
                if room is not None:
                    room.remove(member)
                await self._depart(entry)
            # The writer flushes the last frames and the close frame. A peer that stopped
            # reading leaves it stuck in a send that cannot be cancelled: drop the connection.
            grace = self.settings.stalled_grace_seconds if member.stalled else self.settings.close_grace_seconds
            with trio.move_on_after(grace):
                await member.written.wait()
                await socket.finish_closing()
            if not member.written.is_set():
                await socket.abort()

    async def _read(self, socket: AsgiSocket, entry: Entry, member: Member) -> None:
        metrics = self.metrics
        limit = self.settings.message_max_chars
        rate = MessageRate(self.settings.messages_per_second, self.settings.message_burst, self.settings.flood_debt)
        not_sent = partial(_not_sent, metrics, member)
        while True:
            data = await socket.receive()
            verdict = rate.judge()
            if verdict is Verdict.FLOOD:
                metrics.error("flood")
                member.close(protocol.CLOSE_POLICY, "Flooding: far too many messages")
                return
            if verdict is Verdict.REFUSE:
                metrics.error("rate_limited")
                member.tell(protocol.error(f"Slow down: at most {rate.per_second:g} messages a second"))
                continue
            try:
                text = protocol.message_text(data, limit)
            except protocol.BadFrame as error:
                metrics.error("bad_frame")
                member.tell(protocol.error(str(error)))
                continue
            try:
                await self.rooms.say(entry, text, not_sent)
                metrics.received()
            except BusUnavailable as error:
                metrics.error("undeliverable")
                # Never lose a message silently: the sender learns it did not go out.
                member.tell(protocol.error(str(error)))

    async def _depart(self, entry: Entry) -> None:
        # Runs while the handler may be cancelled (shutdown): shield it, but bound it.
        with trio.CancelScope(shield=True), trio.move_on_after(self.settings.close_grace_seconds):
            try:
                await self.rooms.depart(entry, owner_rule=not self.hub.draining)
            except BusUnavailable:
                log.info("departure deferred to the presence sweep", extra={"room_id": entry.room.room_id})
            except Exception:
                self.metrics.error("departure_failed")
                log.exception("departure failed", extra={"room_id": entry.room.room_id})
