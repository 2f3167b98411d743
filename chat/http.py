"""The app factory: wiring, the instance's services, and the ASGI entry that routes sockets.

Translates nothing itself: REST lives in chat.routes and chat.operations (room creation and
joining served on plain ASGI by chat.rest_lane), a room's socket in chat.ws.session, and the
room rules in chat.rooms. Holds no room logic.
"""

from __future__ import annotations

import mimetypes
import re
from functools import partial
from typing import Any

import trio
from hypercorn.middleware import ProxyFixMiddleware
from quart_schema import QuartSchema
from quart_schema.openapi import Info

from . import __version__, api_docs, headers
from .app import ChatApp
from .bus import Bus
from .bus.memory import MemoryBus
from .config import Settings
from .idle import IdleConnections
from .metrics import Metrics
from .nursery import Hub
from .operations import operations
from .origins import Origins
from .raw_http import RawExchange
from .rest_lane import RestLane
from .rooms import Rooms
from .routes import rooms
from .ws.raw import RawWebSocket
from .ws.session import Session
from .ws.socket import AsgiSocket

MAX_BODY_BYTES = 64 * 1024
ROOM_SOCKET = re.compile(r"/rooms/([^/]+)/ws/?")

# The browser client is ES modules, which browsers run only when served as JavaScript (and,
# with nosniff, never guess); the platform's type table can say otherwise or lack `.js`.
mimetypes.add_type("text/javascript", ".js")


def create_app(settings: Settings, bus: Bus | None = None) -> ChatApp:
    app = ChatApp(__name__, static_folder="static", static_url_path="/static")
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES
    app.config["QUART_SCHEMA_CONVERT_CASING"] = False
    QuartSchema(
        app,
        info=Info(title="EphemeralChat", version=__version__),
        openapi_path="/openapi.json",
        **api_docs.UI_PATHS,
    )
    api_docs.install(app)
    app.settings = settings
    if bus is None:
        bus = MemoryBus(history_size=settings.history_size, history_bytes=settings.history_bytes)
    app.bus = bus
    app.metrics = Metrics()
    app.hub = Hub(
        app.bus,
        app.metrics,
        cleanup_seconds=settings.close_grace_seconds,
        ping_seconds=settings.ws_ping_seconds,
        outbox_total_bytes=settings.outbox_total_bytes,
    )
    app.rooms = Rooms(app.bus, settings)
    app.metrics.watch(app.hub, app.bus)
    app.metrics.describe(__version__, type(app.bus).__name__)
    app.register_blueprint(rooms)
    app.register_blueprint(operations)
    origins = Origins(settings.allowed_origins)
    headers.install(app, origins)
    _run_services(app)
    session = Session(settings, app.rooms, app.hub, origins, app.metrics)
    rest = RestLane(app, origins)
    app.asgi_app = _asgi(app, session, rest)  # type: ignore[method-assign]
    app.lanes = Lanes(session, rest, settings)
    return app


def _run_services(app: ChatApp) -> None:
    """The instance's long-lived tasks, in the app's nursery while it serves: the bus, the
    Hub (which owns every live room), the room domain's own (the presence sweep, seats
    held for lost sockets) and the keep-alive sweep of our connections (chat.idle)."""
    services = trio.CancelScope()

    async def run(task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        with services:
            async with trio.open_nursery() as nursery:
                await nursery.start(app.bus.run)
                await nursery.start(app.hub.run)
                await nursery.start(app.rooms.run)
                await nursery.start(app.lanes.idle.run)
                task_status.started()

    @app.before_serving
    async def start() -> None:
        await app.nursery.start(run)

    @app.after_serving
    async def stop() -> None:
        services.cancel()


def _asgi(app: ChatApp, session: Session, lane: RestLane) -> Any:
    quart_asgi = app.asgi_app

    async def asgi(scope: dict[str, Any], receive: Any, send: Any) -> None:
        # Room sockets are served on plain ASGI, without Quart's per-message layers: this is
        # the hot path, and it needs Hypercorn's send callable for batched writes. So are room
        # creation and joining (chat.rest_lane), which come in bursts.
        if scope["type"] == "websocket" and (room_id := _room_of_socket(scope["path"])):
            await session.serve(AsgiSocket(scope, receive, send, app.settings.frame_max_bytes), room_id)
        elif scope["type"] == "http":
            if not await lane.serve(scope, receive, send):
                await quart_asgi(scope, receive, partial(_shielded, send))
        else:
            await quart_asgi(scope, receive, send)

    if app.settings.trusted_proxy_hops:
        # Client address (per-address limits) and scheme (wss:// in ws_url) from the proxy.
        return ProxyFixMiddleware(asgi, mode="legacy", trusted_hops=app.settings.trusted_proxy_hops)
    return asgi


class Lanes:
    """What chat.connections serves on a connection itself: room sockets, room creation and
    joining (chat.rest_lane), each with the scope the ASGI path gives it (a trusted proxy's
    forwarded address, scheme and host included)."""

    def __init__(self, session: Session, rest: RestLane, settings: Settings) -> None:
        self._session = session
        self._rest = rest
        self.idle = IdleConnections()
        self._frame_max_bytes = settings.frame_max_bytes
        hops = settings.trusted_proxy_hops
        self._proxy = ProxyFixMiddleware(_scope_of, mode="legacy", trusted_hops=hops) if hops else None

    @staticmethod
    def room_of(path: str) -> str | None:
        return _room_of_socket(path)

    async def serve_socket(self, scope: dict[str, Any], websocket: RawWebSocket, room_id: str) -> None:
        scope = await self._forwarded(scope)
        socket = AsgiSocket(scope, websocket.receive, websocket.send, self._frame_max_bytes, websocket)
        await self._session.serve(socket, room_id)

    def takes(self, method: str, path: str) -> bool:
        return self._rest.takes(method.upper(), path)

    async def serve_rest(self, scope: dict[str, Any], exchange: RawExchange) -> None:
        await self._rest.serve(
            await self._forwarded(scope), exchange.receive, exchange.send, exchange.answer, exchange.body_at_hand
        )

    async def _forwarded(self, scope: dict[str, Any]) -> dict[str, Any]:
        if self._proxy is None:
            return scope
        found: list[dict[str, Any]] = []
        await self._proxy(scope, found.append, None)
        return found[0]


async def _scope_of(scope: dict[str, Any], found: Any, _: Any) -> None:
    """The ASGI app behind the proxy fix, when only the fixed scope is wanted."""
    found(scope)


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
