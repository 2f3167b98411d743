"""The room rules: create, join, details, messages, close, end.

Knows nothing of HTTP or WebSocket types; errors carry the status and a detail a client
can act on, and the HTTP layer only translates them. A member's life in a room (admit,
arrive, say, depart...) builds on these in chat.rooms.

- create / join: REST. Join checks the password and a free seat and hands out a member
  token; it takes no seat.
- names: a display name is unique among the room's members, compared as ``name_key``
  makes it (NFKC, case folded); the owner's is the owner's for the room's whole life.
- end: the room is over for everyone, on every instance: deleted, its final system
  message published. ``close_by_owner`` (REST, owner token) and the owner rule end rooms;
  expiry ends them by time.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import unicodedata
from collections.abc import Awaitable, Callable
from typing import NamedTuple, TypeVar

from . import clock, protocol
from .bus import NO_POSITION, ROOM_END, Bus, History, MemberRecord, RoomRecord
from .config import Settings
from .credentials import Grant, Role, TokenSigner, hash_password, password_matches

log = logging.getLogger(__name__)

# Why a room ended, for the log, from the final system message that says it to members.
ENDED_BECAUSE = {protocol.CLOSED_BY_OWNER: "closed by owner", protocol.OWNER_OFFLINE: "owner offline"}

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


class NameTaken(RoomError):
    status = 409
    # A WebSocket close reason holds 123 bytes: this one, without the name, always fits.
    reason = "This name is already taken in this room (names ignore case and width); choose another name"

    def __init__(self, display_name: str) -> None:
        super().__init__(
            f"The name “{display_name}” is already taken in this room (names are compared ignoring case "
            "and width); choose another name"
        )


class Removed(RoomError):
    status = 403

    def __init__(self) -> None:
        super().__init__("You were removed from this room by its owner")


class RoomFull(RoomError):
    status = 409

    def __init__(self) -> None:
        super().__init__("Room is full")


class MemberNotFound(RoomError):
    status = 404

    def __init__(self) -> None:
        super().__init__("No such member in this room: it may have left already")


class CannotRemoveOwner(RoomError):
    status = 409

    def __init__(self) -> None:
        super().__init__("The owner cannot be removed; close the room to end it for everyone")


class InvalidRoom(RoomError):
    status = 422


class NewRoom(NamedTuple):  # NamedTuple: see RoomRecord
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


def name_key(display_name: str) -> str:
    """A display name as names are compared: Unicode NFKC, then case folded, so "Jane",
    "JANE" and the full-width "JANE" (U+FF2A...) are one name."""
    return unicodedata.normalize("NFKC", display_name).casefold()


def sender_of(kind: str, proof: str) -> str:
    """Who sends, as the backend keeps it: a digest of the token (or, in open rooms, the name)."""
    return kind + hashlib.blake2b(proof.encode(), digest_size=12).hexdigest()


def _within_limit(action: str, counted: tuple[int, float], per_minute: int) -> None:
    """RateLimited once a client's ``counted`` hits of ``action`` (and the seconds left in
    its window) pass ``per_minute``."""
    hits, left = counted
    if hits > per_minute:
        raise RateLimited(
            f"Too many {action} requests from your address (at most {per_minute} a minute); "
            f"try again in {max(1, round(left))} s",
            retry_after=left,
        )


async def _found(look_up: Callable[[str], Awaitable[T | None]], room_id: str) -> T:
    """What ``look_up`` finds for a room that exists; ``RoomNotFound`` otherwise."""
    found = await look_up(room_id) if len(room_id) <= ROOM_ID_MAX_CHARS else None
    if found is None:
        raise RoomNotFound()
    return found


class RoomRules:
    """What a room is and who may see, join or end it."""

    def __init__(self, bus: Bus, settings: Settings) -> None:
        self.bus = bus
        self.settings = settings
        self.tokens = TokenSigner(settings.secret_key)

    async def allow(self, action: str, address: str, per_minute: int) -> None:
        """Count one ``action`` ("create", "join") from a client address against its limit."""
        _within_limit(action, await self.bus.count(f"{action}:{address}", 60), per_minute)

    async def find(self, room_id: str) -> RoomRecord:
        return await _found(self.bus.get_room, room_id)

    async def create(self, new: NewRoom, *, address: str | None = None) -> tuple[RoomRecord, str]:
        """The new room and its owner token. ``address``: the client's, counted against
        ROOMS_PER_MINUTE in the same step as the creation (before any error of the request's,
        so that too many requests is what a client over its rate hears)."""
        limits = self.settings
        try:
            expiry, max_users = self._bounds(new)
        except InvalidRoom:
            if address is not None:
                await self.allow("create", address, limits.rooms_per_minute)
            raise
        if address is not None and new.password:
            # Counted before the password is hashed: that hash is the costly part of a creation.
            await self.allow("create", address, limits.rooms_per_minute)
            address = None
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
            owner_key=name_key(new.owner_name),
            e2e=new.e2e,
            e2e_salt=new.e2e_salt,
        )
        if address is None:
            await self.bus.create_room(room)
        else:
            counted = await self.bus.count_and_create(f"create:{address}", 60, room, limits.rooms_per_minute)
            _within_limit("create", counted, limits.rooms_per_minute)
        log.info(
            "room %s created: at most %d members, ends in %d s%s",
            room.room_id,
            max_users,
            expiry,
            "" if new.destroy_on_owner_offline else ", outlives its owner",
            extra={"room_id": room.room_id, "event": "room_created", "max_users": max_users},
        )
        return room, self._token(room, new.owner_name, "owner")

    def _bounds(self, new: NewRoom) -> tuple[int, int]:
        """The new room's expiry (seconds) and seat count, within the instance's limits."""
        limits = self.settings
        if new.e2e_salt is not None and not (new.e2e and new.password):
            raise InvalidRoom('e2e_salt goes only with "e2e": true and a password: it salts the key derived from it.')
        expiry = _within(
            "expiry_seconds",
            new.expiry_seconds,
            limits.default_expiry_seconds,
            limits.min_expiry_seconds,
            limits.max_expiry_seconds,
        )
        return expiry, _within("max_users", new.max_users, limits.default_max_users, 1, limits.max_users_limit)

    async def join(
        self,
        room_id: str,
        display_name: str,
        password: str | None,
        token: str | None = None,
        *,
        address: str | None = None,
    ) -> tuple[RoomRecord, str]:
        """The room and a member token, once the password (if any) is right, a seat is free
        and the name is not taken. ``token``: one the client already holds for the room (a
        rejoin); one of a member the owner removed is refused. ``address``: the client's,
        counted against JOINS_PER_MINUTE in the same step as the first look at the room."""
        key = name_key(display_name)
        if address is None:
            found = await self.bus.occupancy(room_id, key) if len(room_id) <= ROOM_ID_MAX_CHARS else None
        elif len(room_id) > ROOM_ID_MAX_CHARS:
            await self.allow("join", address, self.settings.joins_per_minute)
            found = None
        else:
            counted, found = await self.bus.count_and_occupancy(f"join:{address}", 60, room_id, key)
            _within_limit("join", counted, self.settings.joins_per_minute)
        if found is None:
            raise RoomNotFound()
        room, seats_taken, name_held = found
        await self._check_password(room, password)
        if token and self.tokens.verify(token, room_id) and await self.bus.revoked(room_id, sender_of("t", token)):
            raise Removed()
        # A first look only: admission (atomic, on every instance) has the last word.
        if key == room.owner_key or name_held:
            raise NameTaken(display_name)
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
        why = ENDED_BECAUSE.get(message, "ended")
        log.info("room %s ended: %s", room.room_id, why, extra={"room_id": room.room_id, "event": "room_ended"})
        await self.bus.publish(room.room_id, final)
        await self.bus.publish(room.room_id, ROOM_END)
        return True

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

    async def _check_password(self, room: RoomRecord, password: str | None) -> None:
        if room.password_hash is None:
            return
        if not password:
            raise WrongPassword("Password required", room.e2e_salt)
        if not await password_matches(room.password_hash, password):
            raise WrongPassword("Invalid password", room.e2e_salt)

    def _token(self, room: RoomRecord, display_name: str, role: Role) -> str:
        return self.tokens.issue(Grant(room.room_id, display_name, role, room.expires_at))
