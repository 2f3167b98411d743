"""A member's life in a room: admit, arrive, say, typing/read, depart, drop.

Builds on the room rules (chat.room_rules: create, join, details, close, end), and is the
one owner of what the room hears about a member: its arrival, what it says, its
departure. Knows nothing of HTTP or WebSocket types.

Words, one meaning each (the live side's own are in chat.nursery):

- admit: a socket's member takes a seat (atomic against ``max_users``, on every instance).
- arrive: the room hears an admitted member came online (``user_online``).
- say: a member's chat message goes to the room.
- typing / read: a member is composing, or has seen the messages up to an offset; the
  other members hear it (never the member itself), and nothing of it is stored but the
  last-read offset.
- depart: the member's seat is freed, the room hears it went offline (``user_offline``),
  and the owner rule runs.
- drop: a socket was lost without a goodbye; its seat is held a while for a resume.
- remove: the owner's hand: the member departs, its sockets are closed with the reason, and
  its token is refused for the room's life.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass

import trio

from . import clock, protocol
from .bus import (
    ROOM_REMOVE,
    Admission,
    AdmitResult,
    Bus,
    BusUnavailable,
    Departure,
    History,
    MemberRecord,
    Reading,
    Receipt,
    RoomRecord,
)
from .config import Settings
from .protocol import Said
from .room_rules import (
    CannotRemoveOwner,
    Forbidden,
    InvalidRoom,
    MemberNotFound,
    NameTaken,
    NewRoom,
    RateLimited,
    Removed,
    RoomError,
    RoomFull,
    RoomNotFound,
    RoomRules,
    WrongPassword,
    name_key,
    sender_of,
)
from .sealed import Sealed, sealed_message

__all__ = [
    "CannotRemoveOwner",
    "Entry",
    "Forbidden",
    "InvalidRoom",
    "MemberNotFound",
    "NameTaken",
    "NewRoom",
    "RateLimited",
    "Removed",
    "RoomError",
    "RoomFull",
    "RoomNotFound",
    "Rooms",
    "WrongPassword",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Entry:
    """What a WebSocket may do once it is let in."""

    room: RoomRecord
    member: MemberRecord
    # Who sends, across reconnects: a resent message is recognised by this and its client_id.
    sender: str = ""
    # The seat was taken back from its sender's lost socket: the room never saw it leave.
    resumed: bool = False
    # The room's history as read with the admission, when the backend could (``Rooms.admit``).
    history: History | None = None


def _new_member(display_name: str, is_owner: bool) -> MemberRecord:
    return MemberRecord(
        connection_id=str(uuid.uuid4()), display_name=display_name, connected_at=clock.now(), is_owner=is_owner
    )


class Rooms(RoomRules):
    """The room rules, and the life of the members in a room."""

    def __init__(self, bus: Bus, settings: Settings) -> None:
        super().__init__(bus, settings)
        # Where the seats held for lost sockets wait for their grace to end (see ``run``).
        self._later: trio.Nursery | None = None

    async def admit(
        self,
        room_id: str,
        token: str | None,
        display_name: str,
        *,
        since: int | None = None,
        epoch: str | None = None,
    ) -> tuple[Entry, int]:
        """Seat a WebSocket's member: who it is in the room, from its token or (open rooms
        only) its name, and the online count including it. With ``since`` (a resume), first
        try to take back the seat its sender's lost socket holds (``Entry.resumed``). The
        history after ``since`` (in ``epoch``) comes with the seat where the backend reads it
        in the same round trip (``Entry.history``)."""
        if token:
            grant = self.tokens.verify(token, room_id)
            if grant is None:
                await self.find(room_id)  # A room that is gone says so rather than blame the token.
                raise Forbidden("Invalid or expired room token: join the room again")
            member = _new_member(grant.display_name, grant.is_owner)
            # Not the token itself: it would sit in the backend, a credential in plain sight.
            sender = sender_of("t", token)
        else:
            if (await self.find(room_id)).password_hash is not None:
                raise WrongPassword("This room has a password: join it first and use the ws_url returned")
            member = _new_member(display_name, is_owner=False)
            sender = sender_of("n", display_name)
        if since is not None and (claim := await self.bus.claim(room_id, sender)) is not None:
            return Entry(claim.room, claim.member, sender, resumed=True), claim.online_count
        # The seat and the room's record come back together: one step for a token's holder.
        read = Reading(since, epoch, self.settings.history_size)
        result: AdmitResult = await self.bus.admit(room_id, member, sender, name_key(member.display_name), read)
        if result.status is Admission.FULL:
            raise RoomFull()
        if result.status is Admission.NAME_TAKEN:
            raise NameTaken(member.display_name)
        if result.status is Admission.REMOVED:
            raise Removed()
        if result.room is None:
            raise RoomNotFound()
        return Entry(result.room, member, sender, history=result.history), result.online_count

    async def arrive(self, entry: Entry, online_count: int) -> None:
        """Tell the room an admitted member came online."""
        room, member = entry.room, entry.member
        await self.bus.announce(
            room.room_id,
            protocol.presence(room.room_id, "user_online", member.connection_id, member.display_name, member.is_owner),
        )
        log.info(
            "member joined room %s: %d online",
            room.room_id,
            online_count,
            extra={"room_id": room.room_id, "event": "member_joined", "online_count": online_count},
        )

    async def say(self, entry: Entry, said: Said | Sealed, receipt: Receipt) -> None:
        """Post a member's chat message: it gets the room's next offset, goes into its history
        and out to every member; ``receipt`` learns the offset, or that it may be lost. A
        message resent with the same ``client_id`` is posted once."""
        room, member = entry.room, entry.member
        if isinstance(said, Sealed):
            message = sealed_message(room.room_id, member.connection_id, member.display_name, said)
        else:
            message = protocol.chat_message(room.room_id, member.connection_id, member.display_name, said.text)
        dedupe = f"{entry.sender}\x00{said.client_id}" if said.client_id is not None else None
        await self.bus.post(room.room_id, message, receipt, dedupe)

    async def typing(self, entry: Entry) -> None:
        """Tell the room's other members this one is composing (the caller throttles)."""
        room, member = entry.room, entry.member
        await self.bus.publish(room.room_id, protocol.typing(room.room_id, member.connection_id, member.display_name))

    async def read(self, entry: Entry, offset: int) -> None:
        """Keep the member's last-read offset, and tell the others when it moved forward."""
        room, member = entry.room, entry.member
        kept = await self.bus.mark_read(room.room_id, member.connection_id, offset)
        if kept is not None:
            await self.bus.publish(room.room_id, protocol.read_receipt(member.connection_id, member.display_name, kept))

    async def depart(self, entry: Entry, *, owner_rule: bool = True) -> None:
        """Free the member's seat, tell the room, and end the room if its owner has left."""
        departure = await self.bus.depart(entry.room.room_id, entry.member.connection_id)
        if departure is not None:
            await self._departed(entry, departure, owner_rule=owner_rule)

    async def remove_member(self, room_id: str, connection_id: str, owner_token: str | None) -> MemberRecord:
        """The owner's hand: the member's sockets are closed on whichever instance holds
        them, its token refused for the room's life, and the room told it left. The member."""
        room = await self.find(room_id)
        grant = self.tokens.verify(owner_token, room_id) if owner_token else None
        if grant is None or not grant.is_owner:
            raise Forbidden("Only the room owner can remove members: send the owner_token from room creation")
        member = next((m for m in await self.bus.members(room_id) if m.connection_id == connection_id), None)
        if member is None:
            raise MemberNotFound()
        if member.is_owner:
            raise CannotRemoveOwner()
        sender = await self.bus.revoke(room_id, connection_id)
        if sender is None:  # Left meanwhile.
            raise MemberNotFound()
        # Its sockets close first, so the line below goes to everyone else.
        await self.bus.publish(room_id, ROOM_REMOVE + (sender or connection_id))
        await self.bus.publish(room_id, protocol.system(room_id, protocol.removed(member.display_name)))
        log.info("member removed from room %s by its owner", room_id, extra={"room_id": room_id, "event": "removed"})
        # Departed here, so the others hear it at once even if its seat is held for a lost
        # socket; its own socket's departure then finds it gone (one user_offline).
        await self.depart(Entry(room, member, sender or ""), owner_rule=False)
        return member

    async def drop(self, entry: Entry) -> None:
        """The member's socket was lost without a goodbye: hold its seat (still online, no
        user_offline, the owner rule waits) for RESUME_GRACE_SECONDS, so its sender can take
        it back with a resume on any instance; then it departs as usual if nobody did."""
        grace = self.settings.resume_grace_seconds
        assert self._later is not None, "Rooms.run() is not running"
        hold = None
        if grace > 0:
            hold = await self.bus.drop(entry.room.room_id, entry.member.connection_id, entry.sender)
        if hold is None:
            await self.depart(entry)
            return
        self._later.start_soon(self._depart_after, entry, hold, grace)

    async def _depart_after(self, entry: Entry, hold: str, grace: float) -> None:
        await trio.sleep(grace)
        try:
            departure = await self.bus.depart_dropped(entry.room.room_id, entry.member.connection_id, hold)
            if departure is not None:  # None: its sender came back for it.
                await self._departed(entry, departure, owner_rule=True)
        except BusUnavailable:
            # Its seat stays held in the backend: the presence sweep hands it back as a ghost.
            log.info("departure deferred to the presence sweep", extra={"room_id": entry.room.room_id})

    async def _departed(self, entry: Entry, departure: Departure, *, owner_rule: bool) -> None:
        room, member = entry.room, entry.member
        await self.bus.announce(
            room.room_id,
            protocol.presence(room.room_id, "user_offline", member.connection_id, member.display_name, member.is_owner),
        )
        log.info(
            "member left room %s: %d online",
            room.room_id,
            departure.online_count,
            extra={"room_id": room.room_id, "event": "member_left", "online_count": departure.online_count},
        )
        if (
            owner_rule
            and member.is_owner
            and room.destroy_on_owner_offline
            and not departure.owner_online
            and room.expires_at > clock.now()
        ):
            await self.end(room, protocol.OWNER_OFFLINE)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """The domain's own work on this instance: the presence sweep, and the seats held for
        lost sockets. Returns only when cancelled."""
        async with trio.open_nursery() as nursery:
            self._later = nursery
            nursery.start_soon(self.reap_ghosts)
            task_status.started()

    async def reap_ghosts(self) -> None:
        """One per instance: say goodbye for members whose instance died, as if they left."""
        while True:
            try:
                for ghost in await self.bus.reap():
                    room = await self.bus.get_room(ghost.room_id)
                    if room is None:  # Ended meanwhile: only the presence entry is left.
                        await self.bus.depart(ghost.room_id, ghost.member.connection_id)
                    else:
                        await self.depart(Entry(room, ghost.member))
            except BusUnavailable:
                log.info("presence sweep postponed: backend unavailable")
