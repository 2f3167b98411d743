"""The REST routes of rooms, and how errors become answers.

Each route reads its input (chat.payloads), calls the room domain (chat.rooms) and shapes
the answer; the domain's errors carry their status and detail, translated here once.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable
from typing import Any, NamedTuple

import orjson
from quart import Blueprint, Response, request
from quart_schema import document_querystring, document_request, document_response
from werkzeug.exceptions import HTTPException

from . import clock
from .app import ChatApp, current
from .bus import BusUnavailable, MemberRecord, RoomRecord
from .payloads import BadRequest, M, bearer, bearer_token, body, client_address, json_response, parse, query
from .rooms import NewRoom, RateLimited, RoomError, WrongPassword
from .schemas import (
    CloseRoom,
    CreateRoom,
    DetailsQuery,
    Error,
    JoinRoom,
    LeaveRoom,
    Message,
    MessagesQuery,
    OnlineUser,
    Preferences,
    RemoveMember,
    RoomCreated,
    RoomDetails,
    RoomJoined,
    RoomMessages,
)

log = logging.getLogger(__name__)

rooms = Blueprint("rooms", __name__)


class Caller(NamedTuple):  # NamedTuple: see RoomRecord
    """What a room call needs of its request, whichever way it was served (Quart, or the
    plain-ASGI lane of chat.rest_lane): who asks, where it called, and its body on demand
    (read only once the rate limit let the call through, as a 429 comes before a 413)."""

    address: str
    scheme: str
    host: str
    authorization: str
    read_body: Callable[[], Awaitable[bytes]]

    async def body(self, model: type[M]) -> M:
        return parse(await self.read_body(), model)

    @property
    def bearer_token(self) -> str | None:
        return bearer(self.authorization)


def _quart_caller() -> Caller:
    return Caller(
        client_address(), request.scheme, request.host, request.headers.get("Authorization", ""), _request_body
    )


async def _request_body() -> bytes:
    return await request.get_data(cache=True)


def ws_url(app: ChatApp, caller: Caller, room_id: str, token: str) -> str:
    """Where the client opens the room's socket: ``DOMAIN`` if set, else the host it called."""
    scheme = "wss" if caller.scheme in ("https", "wss") else "ws"
    host = app.settings.domain or caller.host
    # A token is base64url and dots (chat.credentials): nothing in it to escape in a query.
    return f"{scheme}://{host}/rooms/{room_id}/ws?token={token}"


async def _body_counted(app: ChatApp, caller: Caller, schema: type[M], action: str, per_minute: int) -> M:
    """The request's body; a bad one is counted against the action's rate first (the room
    rules count a good one), so too many requests is said before a bad body is."""
    try:
        return await caller.body(schema)
    except Exception:
        await app.rooms.allow(action, caller.address, per_minute)
        raise


async def create(app: ChatApp, caller: Caller) -> dict[str, Any]:
    """POST /rooms/: the new room's answer."""
    new = await _body_counted(app, caller, CreateRoom, "create", app.settings.rooms_per_minute)
    room, token = await app.rooms.create(
        NewRoom(
            name=new.name,
            owner_name=new.owner_name,
            password=new.password or None,
            expiry_seconds=new.expiry_seconds,
            max_users=new.max_users,
            destroy_on_owner_offline=new.preferences.destroy_on_owner_offline,
            e2e=new.e2e,
            e2e_salt=new.e2e_salt,
        ),
        address=caller.address,
    )
    return {
        "room_id": room.room_id,
        "ws_url": ws_url(app, caller, room.room_id, token),
        "expires_at": clock.iso(room.expires_at),
        "owner_token": token,
    }


async def join(app: ChatApp, room_id: str, caller: Caller) -> dict[str, Any]:
    """POST /rooms/{room_id}/join: the joiner's answer."""
    joining = await _body_counted(app, caller, JoinRoom, "join", app.settings.joins_per_minute)
    room, token = await app.rooms.join(
        room_id, joining.display_name, joining.password or None, caller.bearer_token, address=caller.address
    )
    url = ws_url(app, caller, room.room_id, token) + ("" if joining.read_receipts else "&read_receipts=false")
    return {"ws_url": url, "expires_at": clock.iso(room.expires_at)}


# One rule for /rooms/ and /rooms: no redirect a client could trip on, one operation id.
@rooms.post("/rooms/", strict_slashes=False)
@document_request(CreateRoom)
@document_response(RoomCreated, 200)
@document_response(Error, 413)
@document_response(Error, 422)
@document_response(Error, 429)
@document_response(Error, 503)
async def create_room() -> Response:
    """Create a room. Keep `owner_token`: it is the only proof of ownership."""
    return json_response(await create(current(), _quart_caller()))


@rooms.post("/rooms/<room_id>/join")
@document_request(JoinRoom)
@document_response(RoomJoined, 200)
@document_response(Error, 401)
@document_response(Error, 404)
@document_response(Error, 409)
@document_response(Error, 413)
@document_response(Error, 422)
@document_response(Error, 429)
@document_response(Error, 503)
async def join_room(room_id: str) -> Response:
    """Get a `ws_url` for the room: checks the password, that a seat is free and that the
    name is not taken (409). A client that sends a token it holds for the room
    (`Authorization: Bearer`) is refused with 403 if the owner removed it."""
    return json_response(await join(current(), room_id, _quart_caller()))


@rooms.get("/rooms/<room_id>")
@document_querystring(DetailsQuery)
@document_response(RoomDetails, 200)
@document_response(Error, 401)
@document_response(Error, 404)
@document_response(Error, 422)
@document_response(Error, 503)
async def room_details(room_id: str) -> Response:
    """The room and who is online in it; password rooms need `?password=`."""
    asked = query(DetailsQuery)
    room, members, read_offsets = await current().rooms.details(room_id, asked.password)
    return json_response(_details(room, members, read_offsets))


@rooms.get("/rooms/<room_id>/messages")
@document_querystring(MessagesQuery)
@document_response(RoomMessages, 200)
@document_response(Error, 401)
@document_response(Error, 404)
@document_response(Error, 422)
@document_response(Error, 503)
async def room_messages(room_id: str) -> Response:
    """The room's kept messages after `since` (the newest without it), oldest first.

    Password rooms need `?password=`. Pass the `epoch` your `since` belongs to: when messages
    after it are no longer kept, or the epoch is not the room's, `complete` is false."""
    asked = query(MessagesQuery)
    history = await current().rooms.messages(room_id, asked.password, asked.since, asked.epoch, asked.limit)
    return json_response(
        {
            "room_id": room_id,
            "epoch": history.position.epoch,
            "offset": history.position.offset,
            "complete": history.complete,
            "messages": [orjson.loads(frame) for frame in history.frames],
        }
    )


@rooms.post("/rooms/<room_id>/leave")
@document_request(LeaveRoom)
@document_response(Message, 200)
@document_response(Error, 404)
@document_response(Error, 413)
@document_response(Error, 422)
@document_response(Error, 503)
async def leave_room(room_id: str) -> Response:
    """Acknowledge a leave; closing the WebSocket is what frees the seat."""
    await body(LeaveRoom)
    await current().rooms.find(room_id)
    return json_response({"message": "Leave request acknowledged. Disconnect WebSocket to complete leave."})


@rooms.post("/rooms/<room_id>/close")
@document_request(CloseRoom)
@document_response(Message, 200)
@document_response(Error, 403)
@document_response(Error, 404)
@document_response(Error, 413)
@document_response(Error, 422)
@document_response(Error, 503)
async def close_room(room_id: str) -> Response:
    """Close the room for everyone. Needs the owner token (Bearer header or body)."""
    closing = await body(CloseRoom)
    await current().rooms.close_by_owner(room_id, bearer_token() or closing.owner_token)
    return json_response({"message": "Room closed successfully"})


@rooms.post("/rooms/<room_id>/members/<connection_id>/remove")
@document_request(RemoveMember)
@document_response(Message, 200)
@document_response(Error, 403)
@document_response(Error, 404)
@document_response(Error, 409)
@document_response(Error, 413)
@document_response(Error, 422)
@document_response(Error, 503)
async def remove_member(room_id: str, connection_id: str) -> Response:
    """Remove a member (its `connection_id` from presence or the details). Needs the owner
    token (Bearer header or body). The member is told, closed with 1008 "Removed by the room
    owner", and its token refused for the room's life; the owner cannot remove themself (409)."""
    removing = await body(RemoveMember)
    await current().rooms.remove_member(room_id, connection_id, bearer_token() or removing.owner_token)
    return json_response({"message": "Member removed"})


# Errors a call answers in its own words; any other is a bug, logged and answered with a 500.
EXPECTED_ERRORS = (RoomError, BusUnavailable, BadRequest, HTTPException)


def error_answer(error: Exception) -> tuple[int, dict[str, Any], list[tuple[str, str]]]:
    """How an error of a room call is answered: status, body and headers of its own. The one
    translation, for calls served by Quart (the handlers below) and by chat.rest_lane alike."""
    if isinstance(error, WrongPassword) and error.e2e_salt is not None:
        return error.status, {"detail": error.detail, "e2e_salt": error.e2e_salt}, []
    if isinstance(error, RateLimited):
        return error.status, {"detail": error.detail}, [("Retry-After", str(max(1, math.ceil(error.retry_after))))]
    if isinstance(error, RoomError | BadRequest):
        return error.status, {"detail": error.detail}, []
    if isinstance(error, BusUnavailable):
        return 503, {"detail": str(error)}, []
    if isinstance(error, HTTPException):
        return error.code or 500, {"detail": error.description or error.name}, []
    return 500, {"detail": "Internal server error"}, []


def _error_response(error: Exception) -> Response:
    status, payload, headers = error_answer(error)
    response = json_response(payload, status)
    response.headers.update(headers)
    return response


@rooms.app_errorhandler(RoomError)
async def room_error(error: RoomError) -> Response:
    return _error_response(error)


@rooms.app_errorhandler(BusUnavailable)
async def bus_unavailable(error: BusUnavailable) -> Response:
    return _error_response(error)


@rooms.app_errorhandler(BadRequest)
async def bad_request(error: BadRequest) -> Response:
    return _error_response(error)


@rooms.app_errorhandler(HTTPException)
async def http_error(error: HTTPException) -> Response:
    return _error_response(error)


@rooms.app_errorhandler(Exception)
async def unexpected(error: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, request.path)
    current().metrics.error("unhandled")
    return _error_response(error)


def _details(room: RoomRecord, members: list[MemberRecord], read_offsets: dict[str, int]) -> dict[str, Any]:
    online = [
        OnlineUser(
            connection_id=m.connection_id,
            display_name=m.display_name,
            connected_at=clock.iso(m.connected_at),
            read_offset=read_offsets.get(m.connection_id),
            is_owner=m.is_owner,
        ).model_dump()
        for m in sorted(members, key=lambda m: m.connected_at)
    ]
    return RoomDetails(
        room_id=room.room_id,
        name=room.name,
        created_at=clock.iso(room.created_at),
        expires_at=clock.iso(room.expires_at),
        max_users=room.max_users,
        online_users_count=len(online),
        online_users=online,  # type: ignore[arg-type]
        owner_name=room.owner_name,
        has_password=room.password_hash is not None,
        is_expired=room.expires_at <= clock.now(),
        is_full=len(online) >= room.max_users,
        preferences=Preferences(destroy_on_owner_offline=room.destroy_on_owner_offline),
        e2e=room.e2e,
        e2e_salt=room.e2e_salt,
    ).model_dump()
