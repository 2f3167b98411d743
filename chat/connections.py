"""Each accepted connection: a room's WebSocket served on it directly, anything else by Hypercorn.

Hypercorn's Trio worker hands every accepted connection to its ``TCPServer``. Ours reads the
connection's first request head itself (h11, with Hypercorn's size limit and keep-alive
timeout). A WebSocket upgrade to ``/rooms/{room_id}/ws`` is served right there, in this task,
by chat.ws.raw: no second task, ASGI queue or Hypercorn stream per member. Anything else (REST,
pages, HTTP/2, a request h11 rejects, an upgrade Hypercorn would refuse) goes to Hypercorn's
own ``TCPServer`` with the bytes read so far replayed in front of the stream, so it sees the
connection exactly as it arrived and answers as it always did.

Installed by replacing the ``TCPServer`` name in ``hypercorn.trio.run`` (what its worker builds
per connection), checked against Hypercorn 0.17 and 0.18 (tests/test_connections.py). It serves
room sockets only for an app that offers them (``ChatApp.room_sockets``): any other ASGI app
served by the same process gets Hypercorn's connection unchanged; so does a TLS connection.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Generator
from typing import Any, Protocol
from urllib.parse import unquote

import h11
import hypercorn.trio.run as hypercorn_run
import trio
from hypercorn.config import Config
from hypercorn.protocol.ws_stream import Handshake
from hypercorn.trio.tcp_server import TCPServer

from .ws.hypercorn_adapter import HYPERCORN_VERSION
from .ws.raw import MAX_RECV, RawWebSocket

log = logging.getLogger(__name__)

# How long the end of a room socket may take (its close frame, the connection's end).
FINISH_SECONDS = 1.0


class RoomSockets(Protocol):
    def room_of(self, path: str) -> str | None: ...

    def serve(self, scope: dict[str, Any], websocket: RawWebSocket, room_id: str) -> Awaitable[None]: ...


class Replayed(trio.abc.HalfCloseableStream):
    """A connection's stream with the bytes already read from it put back in front."""

    def __init__(self, stream: trio.SocketStream, first: bytes) -> None:
        self._stream = stream
        self._first = first
        self.socket = stream.socket  # Hypercorn and our adapters reach the socket through this.

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        if self._first:
            data, self._first = self._first, b""
            await trio.lowlevel.checkpoint()
            return data
        return await self._stream.receive_some(max_bytes)

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self._stream.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self._stream.wait_send_all_might_not_block()

    async def send_eof(self) -> None:
        await self._stream.send_eof()

    async def aclose(self) -> None:
        await self._stream.aclose()


class Connection:
    """Built by Hypercorn's worker for each accepted connection, in place of its TCPServer."""

    __slots__ = ("app", "config", "context", "state", "stream")

    def __init__(self, app: Any, config: Config, context: Any, state: Any, stream: Any) -> None:
        self.app, self.config, self.context, self.state, self.stream = app, config, context, state, stream

    def __await__(self) -> Generator[Any, None, None]:
        return self.run().__await__()

    def _hypercorn(self, first: bytes = b"") -> TCPServer:
        stream = Replayed(self.stream, first) if first else self.stream
        return TCPServer(self.app, self.config, self.context, self.state, stream)

    async def run(self) -> None:
        sockets: RoomSockets | None = getattr(getattr(self.app, "app", None), "room_sockets", None)
        if sockets is None or not isinstance(self.stream, trio.SocketStream) or self.config.server_names:
            await self._hypercorn()
            return
        parser = h11.Connection(h11.SERVER, max_incomplete_event_size=self.config.h11_max_incomplete_size)
        received = bytearray()
        event: Any = None
        # As Hypercorn: a connection whose first request head is not in by the keep-alive
        # timeout is closed without an answer.
        with trio.move_on_after(self.config.keep_alive_timeout) as waiting:
            try:
                event = await self._first_event(parser, received)
            except h11.RemoteProtocolError:
                pass  # Hypercorn's to answer (a 400), or to take as HTTP/2.
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return
        if waiting.cancelled_caught or (isinstance(event, h11.ConnectionClosed) and not received):
            await trio.aclose_forcefully(self.stream)  # Timed out, or connected and left silently.
            return
        upgrade = _upgrade(event, parser, sockets, self.stream, self.config)
        # Neither the parser nor the request stays referenced from this frame for the
        # socket's life: the WebSocket lets go of them once it has answered the handshake.
        del event, parser
        if upgrade is None:
            await self._hypercorn(bytes(received))  # Hypercorn's answer, 400 included.
            return
        del received
        await self._serve_room_socket(sockets, *upgrade)

    async def _first_event(self, parser: h11.Connection, received: bytearray) -> Any:
        while True:
            event = parser.next_event()
            if event is not h11.NEED_DATA:
                return event
            data = await self.stream.receive_some(MAX_RECV)
            received += data
            parser.receive_data(data)

    async def _serve_room_socket(
        self, sockets: RoomSockets, scope: dict[str, Any], websocket: RawWebSocket, room_id: str
    ) -> None:
        try:
            await sockets.serve(scope, websocket, room_id)
        except Exception:
            log.exception("room socket failed")
        finally:
            with trio.CancelScope(shield=True) as ending:
                ending.deadline = trio.current_time() + FINISH_SECONDS
                await websocket.finish()
                try:
                    await self.stream.send_eof()
                except (trio.BrokenResourceError, trio.BusyResourceError, trio.ClosedResourceError):
                    pass
                await self.stream.aclose()


def _upgrade(
    event: Any, parser: h11.Connection, sockets: RoomSockets, stream: trio.SocketStream, config: Config
) -> tuple[dict[str, Any], RawWebSocket, str] | None:
    """A valid WebSocket upgrade to a room's socket: its scope, its socket and its room."""
    if not isinstance(event, h11.Request) or (room_id := _room_socket(event, sockets)) is None:
        return None
    handshake = Handshake(event.headers, event.http_version.decode())
    if not handshake.is_valid():
        return None
    path, _, query_string = event.target.partition(b"?")
    # What the session reads of its socket (chat.ws.socket): the path, query and headers.
    scope = {
        "type": "websocket",
        "path": unquote(path.decode("ascii")),
        "query_string": query_string,
        "headers": list(event.headers),
    }
    return scope, RawWebSocket(stream, config, parser, handshake), room_id


def _room_socket(request: h11.Request, sockets: RoomSockets) -> str | None:
    """The room of a WebSocket upgrade to a room's socket path (an upgrade as Hypercorn's
    HTTP/1.1 protocol tells one)."""
    if request.method != b"GET":
        return None
    upgrade = connection = b""
    for name, value in request.headers:
        if name == b"upgrade":
            upgrade = value.strip()
        elif name == b"connection":
            connection = value
    if upgrade.lower() != b"websocket" or b"upgrade" not in (t.strip() for t in connection.lower().split(b",")):
        return None
    path = request.target.partition(b"?")[0]
    try:
        return sockets.room_of(unquote(path.decode("ascii")))
    except UnicodeDecodeError:
        return None


def install() -> None:
    """Have Hypercorn's Trio worker build our Connection for each accepted connection."""
    current: Callable[..., Any] = getattr(hypercorn_run, "TCPServer", None)  # type: ignore[assignment]
    if current is Connection:
        return
    if current is not TCPServer:
        log.warning(
            "Hypercorn %s: hypercorn.trio.run.TCPServer is %r, not the Trio worker's TCPServer; room "
            "sockets take Hypercorn's general path. chat/connections.py was checked against Hypercorn "
            "0.17 and 0.18: install one of those, or adapt it.",
            HYPERCORN_VERSION,
            current,
        )
        return
    hypercorn_run.TCPServer = Connection  # type: ignore[misc,assignment]
