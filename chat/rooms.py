"""The room domain: create, join, details, close, and a member's life in a room.

Knows nothing of HTTP or WebSocket types; errors carry the status and a detail a client
can act on, and the HTTP layer only translates them. This is the one owner of what the
room hears about a member: its arrival, what it says, its departure.

Words, one meaning each (the live side's own are in chat.nursery):

- create / join: REST. Join checks the password and a free seat and hands out a member
  token; it takes no seat.
- admit: a socket's member takes a seat (atomic against ``max_users``, on every instance).
- arrive: the room hears an admitted member came online (``user_online``).
- say: a member's chat message goes to the room.
- typing / read: a member is composing, or has seen the messages up to an offset; the
  other members hear it (never the member itself), and nothing of it is stored but the
  last-read offset.
- depart: the member's seat is freed, the room hears it went offline (``user_offline``),
  and the owner rule runs.
- end: the room is over for everyone, on every instance: deleted, its final system
  message published. ``close_by_owner`` (REST, owner token) and the owner rule end rooms;
  expiry ends them by time.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import trio

from . import clock, protocol
from .bus import (
    NO_POSITION,
    ROOM_END,
    Admission,
    AdmitResult,
    Bus,
    BusUnavailable,
    Departure,
    History,
    MemberRecord,
    Receipt,
    RoomRecord,
)
from .config import Settings
from .credentials import Grant, Role, TokenSigner, hash_password, password_matches
from .protocol import Said
from .sealed import Sealed, sealed_message

log = logging.getLogger(__name__)

# Longest room id we bother looking up; ours are 16 hex digits.
ROOM_ID_MAX_CHARS = 64

T = TypeVar("T")


class RoomError(Exception):
    status = 400

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class RoomNotFound(RoomError):
    status = 404

    def __init__(self) -> None:
        super().__init__("Room not found")


class WrongPassword(RoomError):
    status = 401

    def __init__(self, detail: str, e2e_salt: str | None = None) -> None:
        super().__init__(detail)
        # Public by design: a client needs it to derive the password it must send (chat/sealed.py).
        self.e2e_salt = e2e_salt


class Forbidden(RoomError):
    status = 403


class RateLimited(RoomError):
    status = 429

    def __init__(self, detail: str, retry_after: float) -> None:
        super().__init__(detail)
        self.retry_after = retry_after


class RoomFull(RoomError):
    status = 409

    def __init__(self) -> None:
        super().__init__("Room is full")


class InvalidRoom(RoomError):
    status = 422


@dataclass(frozen=True, slots=True)
class NewRoom:
    name: str | None
    owner_name: str
    password: str | None
    expiry_seconds: int | None  # None: the configured default
    max_users: int | None
    destroy_on_owner_offline: bool
    e2e: bool = False
    e2e_salt: str | None = None


def _within(field: str, value: int | None, default: int, low: int, high: int) -> int:
    if value is None:
        return default
    if not low <= value <= high:
        raise InvalidRoom(f"{field} must be between {low} and {high}.")
    return value


@dataclass(frozen=True, slots=True)
class Entry:
    """What a WebSocket may do once it is let in."""

    room: RoomRecord
    member: MemberRecord
    # Who sends, across reconnects: a resent message is recognised by this and its client_id.
    sender: str = ""
    # The seat was taken back from its sender's lost socket: the room never saw it leave.
    resumed: bool = False


async def _found(look_up: Callable[[str], Awaitable[T | None]], room_id: str) -> T:
    """What ``look_up`` finds for a room that exists; ``RoomNotFound`` otherwise."""
    found = await look_up(room_id) if len(room_id) <= ROOM_ID_MAX_CHARS else None
    if found is None:
        raise RoomNotFound()
    return found


def _sender(kind: str, proof: str) -> str:
    """Who sends, as the backend keeps it: a digest of the token (or, in open rooms, the name)."""
    return kind + hashlib.blake2b(proof.encode(), digest_size=12).hexdigest()


def _new_member(display_name: str, is_owner: bool) -> MemberRecord:
    return MemberRecord(
        connection_id=str(uuid.uuid4()), display_name=display_name, connected_at=clock.now(), is_owner=is_owner
    )


class Rooms:
    def __init__(self, bus: Bus, settings: Settings) -> None:
        self.bus = bus
        self.settings = settings
        self.tokens = TokenSigner(settings.secret_key)
        # Where the seats held for lost sockets wait for their grace to end (see ``run``).
        self._later: trio.Nursery | None = None

    async def allow(self, action: str, address: str, per_minute: int) -> None:
        """Count one ``action`` ("create", "join") from a client address against its limit."""
        hits, left = await self.bus.count(f"{action}:{address}", 60)
        if hits > per_minute:
            raise RateLimited(
                f"Too many {action} requests from your address (at most {per_minute} a minute); "
                f"try again in {max(1, round(left))} s",
                retry_after=left,
            )

    async def find(self, room_id: str) -> RoomRecord:
        return await _found(self.bus.get_room, room_id)

    async def create(self, new: NewRoom) -> tuple[RoomRecord, str]:
        """The new room and its owner token."""
        limits = self.settings
        if new.e2e_salt is not None and not (new.e2e and new.password):
            raise InvalidRoom("e2e_salt goes only with \"e2e\": true and a password: it salts the key derived from it")
        expiry = _within(
            "expiry_seconds",
            new.expiry_seconds,
            limits.default_expiry_seconds,
            limits.min_expiry_seconds,
            limits.max_expiry_seconds,
        )
        max_users = _within("max_users", new.max_users, limits.default_max_users, 1, limits.max_users_limit)
        created_at = clock.now()
        room = RoomRecord(
            room_id=secrets.token_hex(8),  # hex: never starts with "-", safe on a command line
            name=new.name,
            owner_name=new.owner_name,
            password_hash=await hash_password(new.password) if new.password else None,
            max_users=max_users,
            created_at=created_at,
            expires_at=created_at + expiry,
            destroy_on_owner_offline=new.destroy_on_owner_offline,
            e2e=new.e2e,
            e2e_salt=new.e2e_salt,
        )
        await self.bus.create_room(room)
        return room, self._token(room, new.owner_name, "owner")

    async def join(self, room_id: str, display_name: str, password: str | None) -> tuple[RoomRecord, str]:
        """The room and a member token, once the password (if any) is right and a seat is free."""
        room, seats_taken = await _found(self.bus.occupancy, room_id)
        await self._check_password(room, password)
        if seats_taken >= room.max_users:
            raise RoomFull()
        return room, self._token(room, display_name, "member")

    async def details(
        self, room_id: str, password: str | None
    ) -> tuple[RoomRecord, list[MemberRecord], dict[str, int]]:
        """The room, its online members, and their last-read offsets (by connection id)."""
        room = await self.find(room_id)
        await self._check_password(room, password)
        return room, await self.bus.members(room_id), await self.bus.read_offsets(room_id)

    async def messages(
        self, room_id: str, password: str | None, since: int | None, epoch: str | None, limit: int | None
    ) -> History:
        """The room's kept messages for whoever may see its details (the password, if any)."""
        await self._check_password(await self.find(room_id), password)
        return await self.history(room_id, since, epoch, limit)

    async def close_by_owner(self, room_id: str, owner_token: str | None) -> None:
        room = await self.find(room_id)
        grant = self.tokens.verify(owner_token, room_id) if owner_token else None
        if grant is None or not grant.is_owner:
            raise Forbidden("Only the room owner can close the room: send the owner_token from room creation")
        await self.end(room, protocol.CLOSED_BY_OWNER)

    async def end(self, room: RoomRecord, message: str) -> bool:
        """Delete the room and tell every member on every instance; False if already gone."""
        final = protocol.system(room.room_id, message)
        # A member whose socket is entering just now hears the reason from what is left behind.
        if not await self.bus.delete_room(room.room_id, final):
            return False
        await self.bus.publish(room.room_id, final)
        await self.bus.publish(room.room_id, ROOM_END)
        return True

    async def admit(
        self, room_id: str, token: str | None, display_name: str, *, resuming: bool = False
    ) -> tuple[Entry, int]:
        """Seat a WebSocket's member: who it is in the room, from its token or (open rooms
        only) its name, and the online count including it. ``resuming``: first try to take
        back the seat its sender's lost socket holds (``Entry.resumed``)."""
        if token:
            grant = self.tokens.verify(token, room_id)
            if grant is None:
                await self.find(room_id)  # A room that is gone says so rather than blame the token.
                raise Forbidden("Invalid or expired room token: join the room again")
            member = _new_member(grant.display_name, grant.is_owner)
            # Not the token itself: it would sit in the backend, a credential in plain sight.
            sender = _sender("t", token)
        else:
            if (await self.find(room_id)).password_hash is not None:
                raise WrongPassword("This room has a password: join it first and use the ws_url returned")
            member = _new_member(display_name, is_owner=False)
            sender = _sender("n", display_name)
        if resuming and (claim := await self.bus.claim(room_id, sender)) is not None:
            return Entry(claim.room, claim.member, sender, resumed=True), claim.online_count
        # The seat and the room's record come back together: one step for a token's holder.
        result: AdmitResult = await self.bus.admit(room_id, member, sender)
        if result.status is Admission.FULL:
            raise RoomFull()
        if result.room is None:
            raise RoomNotFound()
        return Entry(result.room, member, sender), result.online_count

    async def arrive(self, entry: Entry, online_count: int) -> None:
        """Tell the room an admitted member came online."""
        room, member = entry.room, entry.member
        await self.bus.publish(
            room.room_id,
            protocol.presence(room.room_id, "user_online", member.connection_id, member.display_name, online_count),
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

    async def history(
        self, room_id: str, since: int | None = None, epoch: str | None = None, limit: int | None = None
    ) -> History:
        """The room's kept messages after ``since`` (the newest ones without it) and its
        position; RoomNotFound for a room that is gone."""
        most = self.settings.history_size if limit is None else min(limit, self.settings.history_size)
        history = await self.bus.history(room_id, since, epoch, most)
        if history.position == NO_POSITION:
            raise RoomNotFound()
        return history

    async def depart(self, entry: Entry, *, owner_rule: bool = True) -> None:
        """Free the member's seat, tell the room, and end the room if its owner has left."""
        departure = await self.bus.depart(entry.room.room_id, entry.member.connection_id)
        if departure is not None:
            await self._departed(entry, departure, owner_rule=owner_rule)

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
        await self.bus.publish(
            room.room_id,
            protocol.presence(
                room.room_id,
                "user_offline",
                member.connection_id,
                member.display_name,
                departure.online_count,
            ),
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

    async def _check_password(self, room: RoomRecord, password: str | None) -> None:
        if room.password_hash is None:
            return
        if not password:
            raise WrongPassword("Password required", room.e2e_salt)
        if not await password_matches(room.password_hash, password):
            raise WrongPassword("Invalid password", room.e2e_salt)

    def _token(self, room: RoomRecord, display_name: str, role: Role) -> str:
        return self.tokens.issue(Grant(room.room_id, display_name, role, room.expires_at))
