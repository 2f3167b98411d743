"""The Quart-Trio app: REST routes, the WebSocket route, docs, health.

Translates HTTP and WebSocket to and from the room domain; holds no room logic itself.
"""

from __future__ import annotations

import logging
import math
import re
from functools import partial
from typing import Any, TypeVar
from urllib.parse import quote

import orjson
import trio
from hypercorn.middleware import ProxyFixMiddleware
from pydantic import BaseModel, ValidationError
from quart import Response, request
from quart_schema import QuartSchema, document_querystring, document_request, document_response
from quart_schema.openapi import Info
from quart_trio import QuartTrio
from werkzeug.exceptions import HTTPException

from . import __version__, clock, headers, metrics
from .bus import Bus, BusUnavailable, MemberRecord, RoomRecord
from .bus.memory import MemoryBus
from .config import Settings
from .nursery import Hub
from .origins import Origins
from .rooms import NewRoom, RateLimited, RoomError, Rooms
from .schemas import (
    CloseRoom,
    CreateRoom,
    DetailsQuery,
    Error,
    Health,
    JoinRoom,
    LeaveRoom,
    Message,
    OnlineUser,
    Preferences,
    Readiness,
    RoomCreated,
    RoomDetails,
    RoomJoined,
)
from .session import Session
from .sockets import AsgiSocket

log = logging.getLogger(__name__)
M = TypeVar("M", bound=BaseModel)

MAX_BODY_BYTES = 64 * 1024
ROOM_SOCKET = re.compile(r"/rooms/([^/]+)/ws/?")


class ChatApp(QuartTrio):
    settings: Settings
    bus: Bus
    hub: Hub
    rooms: Rooms


class BadRequest(Exception):
    def __init__(self, detail: str, status: int = 422) -> None:
        super().__init__(detail)
        self.detail, self.status = detail, status


def _json(payload: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(payload), status=status, content_type="application/json")


def _error(detail: str, status: int) -> Response:
    return _json({"detail": detail}, status)


def _describe(error: ValidationError) -> str:
    parts = []
    for item in error.errors(include_url=False):
        where = ".".join(str(p) for p in item["loc"]) or "body"
        parts.append(f"{where}: {item['msg']}")
    return "; ".join(parts)


async def _body(model: type[M]) -> M:
    """The request body as ``model``; any content type is read as JSON, an empty body as {}."""
    raw = await request.get_data(cache=True)
    try:
        data = orjson.loads(raw) if raw.strip() else {}
    except orjson.JSONDecodeError:
        raise BadRequest("Request body is not valid JSON") from None
    if not isinstance(data, dict):
        raise BadRequest("Request body must be a JSON object")
    try:
        return model.model_validate(data)
    except ValidationError as error:
        raise BadRequest(_describe(error)) from None


def _query(model: type[M]) -> M:
    try:
        return model.model_validate(request.args.to_dict())
    except ValidationError as error:
        raise BadRequest(_describe(error)) from None


def _address() -> str:
    return request.remote_addr or "unknown"


def _bearer() -> str | None:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


def create_app(settings: Settings, bus: Bus | None = None) -> ChatApp:
    app = ChatApp(__name__, static_folder="static", static_url_path="/static")
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES
    app.config["QUART_SCHEMA_CONVERT_CASING"] = False
    QuartSchema(
        app,
        info=Info(title="EphemeralChat", version=__version__),
        openapi_path="/openapi.json",
        swagger_ui_path="/docs",
        redoc_ui_path="/redocs",
    )
    app.settings = settings
    if bus is None:
        bus = MemoryBus(history_size=settings.history_size, history_bytes=settings.history_bytes)
    app.bus = bus
    app.hub = Hub(app.bus, cleanup_seconds=settings.close_grace_seconds, ping_seconds=settings.ws_ping_seconds)
    app.rooms = Rooms(app.bus, settings)
    metrics.watch(app.hub)
    metrics.describe(__version__, type(app.bus).__name__)
    services = trio.CancelScope()

    async def run_services(task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        with services:
            async with trio.open_nursery() as nursery:
                await nursery.start(app.bus.run)
                await nursery.start(app.hub.run)
                await nursery.start(app.rooms.reap_ghosts)
                task_status.started()

    @app.before_serving
    async def start_services() -> None:
        await app.nursery.start(run_services)

    @app.after_serving
    async def stop_services() -> None:
        services.cancel()

    def ws_url(room_id: str, token: str) -> str:
        scheme = "wss" if request.scheme in ("https", "wss") else "ws"
        host = settings.domain or request.host
        return f"{scheme}://{host}/rooms/{room_id}/ws?token={quote(token)}"

    @app.errorhandler(RoomError)
    async def room_error(error: RoomError) -> Response:
        response = _error(error.detail, error.status)
        if isinstance(error, RateLimited):
            response.headers["Retry-After"] = str(max(1, math.ceil(error.retry_after)))
        return response

    @app.errorhandler(BusUnavailable)
    async def bus_unavailable(error: BusUnavailable) -> Response:
        return _error(str(error), 503)

    @app.errorhandler(BadRequest)
    async def bad_request(error: BadRequest) -> Response:
        return _error(error.detail, error.status)

    @app.errorhandler(HTTPException)
    async def http_error(error: HTTPException) -> Response:
        return _error(error.description or error.name, error.code or 500)

    @app.errorhandler(Exception)
    async def unexpected(error: Exception) -> Response:
        log.exception("unhandled error on %s %s", request.method, request.path)
        metrics.error("unhandled")
        return _error("Internal server error", 500)

    # One rule for /rooms/ and /rooms: no redirect a client could trip on, one operation id.
    @app.post("/rooms/", strict_slashes=False)
    @document_request(CreateRoom)
    @document_response(RoomCreated, 200)
    @document_response(Error, 413)
    @document_response(Error, 422)
    @document_response(Error, 429)
    @document_response(Error, 503)
    async def create_room() -> Response:
        """Create a room. Keep `owner_token`: it is the only proof of ownership."""
        await app.rooms.allow("create", _address(), settings.rooms_per_minute)
        body = await _body(CreateRoom)
        room, token = await app.rooms.create(
            NewRoom(
                name=body.name,
                owner_name=body.owner_name,
                password=body.password or None,
                expiry_seconds=body.expiry_seconds,
                max_users=body.max_users,
                destroy_on_owner_offline=body.preferences.destroy_on_owner_offline,
            )
        )
        return _json(
            {
                "room_id": room.room_id,
                "ws_url": ws_url(room.room_id, token),
                "expires_at": clock.iso(room.expires_at),
                "owner_token": token,
            }
        )

    @app.post("/rooms/<room_id>/join")
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
        """Get a `ws_url` for the room: checks the password and that a seat is free."""
        await app.rooms.allow("join", _address(), settings.joins_per_minute)
        body = await _body(JoinRoom)
        room, token = await app.rooms.join(room_id, body.display_name, body.password or None)
        return _json({"ws_url": ws_url(room.room_id, token), "expires_at": clock.iso(room.expires_at)})

    @app.get("/rooms/<room_id>")
    @document_querystring(DetailsQuery)
    @document_response(RoomDetails, 200)
    @document_response(Error, 401)
    @document_response(Error, 404)
    @document_response(Error, 422)
    @document_response(Error, 503)
    async def room_details(room_id: str) -> Response:
        """The room and who is online in it; password rooms need `?password=`."""
        query = _query(DetailsQuery)
        room, members = await app.rooms.details(room_id, query.password)
        return _json(_details(room, members))

    @app.post("/rooms/<room_id>/leave")
    @document_request(LeaveRoom)
    @document_response(Message, 200)
    @document_response(Error, 404)
    @document_response(Error, 413)
    @document_response(Error, 422)
    @document_response(Error, 503)
    async def leave_room(room_id: str) -> Response:
        """Acknowledge a leave; closing the WebSocket is what frees the seat."""
        await _body(LeaveRoom)
        await app.rooms.find(room_id)
        return _json({"message": "Leave request acknowledged. Disconnect WebSocket to complete leave."})

    @app.post("/rooms/<room_id>/close")
    @document_request(CloseRoom)
    @document_response(Message, 200)
    @document_response(Error, 403)
    @document_response(Error, 404)
    @document_response(Error, 413)
    @document_response(Error, 422)
    @document_response(Error, 503)
    async def close_room(room_id: str) -> Response:
        """Close the room for everyone. Needs the owner token (Bearer header or body)."""
        body = await _body(CloseRoom)
        await app.rooms.close(room_id, _bearer() or body.owner_token)
        return _json({"message": "Room closed successfully"})

    @app.get("/")
    async def index() -> Response:
        """The browser client."""
        return await app.send_static_file("index.html")

    @app.get("/healthz")
    @document_response(Health, 200)
    async def healthz() -> Response:
        return _json({"status": "ok"})

    @app.get("/metrics")
    async def metrics_endpoint() -> Response:
        """Prometheus metrics of this instance."""
        body, content_type = metrics.render()
        return Response(body, content_type=content_type)

    @app.get("/readyz")
    @document_response(Readiness, 200)
    @document_response(Readiness, 503)
    async def readyz() -> Response:
        ready = app.bus.ready and not app.hub.draining
        return _json({"ready": ready}, 200 if ready else 503)

    origins = Origins(settings.allowed_origins)
    headers.install(app, origins)
    session = Session(settings, app.bus, app.rooms, app.hub, origins)
    quart_asgi = app.asgi_app

    async def asgi(scope: dict[str, Any], receive: Any, send: Any) -> None:
        # Room sockets are served on plain ASGI, without Quart's per-message layers: this is
        # the hot path, and it needs Hypercorn's send callable for batched writes.
        if scope["type"] == "websocket" and (room_id := _room_of_socket(scope["path"])):
            await session.serve(AsgiSocket(scope, receive, send, settings.frame_max_bytes), room_id)
        elif scope["type"] == "http":
            await quart_asgi(scope, receive, partial(_shielded, send))
        else:
            await quart_asgi(scope, receive, send)

    if settings.trusted_proxy_hops:
        # Client address (per-address limits) and scheme (wss:// in ws_url) from the proxy.
        app.asgi_app = ProxyFixMiddleware(asgi, mode="legacy", trusted_hops=settings.trusted_proxy_hops)  # type: ignore[method-assign]
    else:
        app.asgi_app = asgi  # type: ignore[method-assign]
    return app


def _room_of_socket(path: str) -> str | None:
    # Only the id is kept for the socket's life, not the match object.
    match = ROOM_SOCKET.fullmatch(path)
    return match[1] if match else None


async def _shielded(send: Any, message: dict[str, Any]) -> None:
    # Quart-Trio cancels a request's tasks once its response is out, and the last send is where
    # Hypercorn closes a connection whose request body was not read (a GET with a body, a 413):
    # cancelled there, the connection was left open but dead, and the client's next request hung.
    with trio.CancelScope(shield=True):
        await send(message)


def _details(room: RoomRecord, members: list[MemberRecord]) -> dict[str, Any]:
    online = [
        OnlineUser(
            connection_id=m.connection_id, display_name=m.display_name, connected_at=clock.iso(m.connected_at)
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
    ).model_dump()
