"""Each accepted connection: room sockets, room creation and joining served on it directly,
anything else by Hypercorn.

Hypercorn's Trio worker hands every accepted connection to its ``TCPServer``. Ours reads each
request head itself (h11, with Hypercorn's size limit and keep-alive timeout), in the
connection's own task:

- a WebSocket upgrade to ``/rooms/{room_id}/ws`` is served right there by chat.ws.raw: no
  second task, ASGI queue or Hypercorn stream per member, and the connection is the socket's;
- ``POST /rooms`` and ``POST /rooms/{room_id}/join`` (chat.rest_lane's) are answered by
  chat.raw_http, and the connection goes on to its next request (keep-alive, as Hypercorn);
- anything else (pages, the rest of the API, HTTP/2, a request h11 rejects, an upgrade Hypercorn
  would refuse) goes to Hypercorn's own ``TCPServer`` with the bytes of that request so far
  replayed in front of the stream, so Hypercorn sees the connection from there exactly as it
  arrived and answers as it always did; the connection is Hypercorn's from then on.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable, Generator
from typing import Any, Protocol
from urllib.parse import unquote

import h11
import hypercorn.trio.run as hypercorn_run
import trio
from hypercorn.config import Config
from hypercorn.protocol.ws_stream import Handshake
from hypercorn.trio.tcp_server import TCPServer
from hypercorn.utils import parse_socket_addr

from .idle import IdleConnections
from .plain_post import KnownLength, PlainPost, plain_post
from .raw_http import MAX_RECV, RawExchange, next_bytes
from .ws.hypercorn_adapter import HYPERCORN_VERSION
from .ws.raw import RawWebSocket

log = logging.getLogger(__name__)

Headers = list[tuple[bytes, bytes]]
# A request head that is not chat.rest_lane's: the h11 event (or None), its path, its headers,
# the parser that read it and its bytes as they arrived.
Head = tuple[Any, str | None, Headers, h11.Connection, bytearray]

# Where a request head ends, as h11 finds it (line feeds with or without carriage returns).
_BLANK_LINE = re.compile(rb"\n\r?\n")
# How long the end of a room socket may take (its close frame, the connection's end).
FINISH_SECONDS = 1.0


class Lanes(Protocol):
    """What the app serves on its connections itself (chat.http.Lanes)."""

    idle: IdleConnections

    def room_of(self, path: str) -> str | None: ...

    def serve_socket(self, scope: dict[str, Any], websocket: RawWebSocket, room_id: str) -> Awaitable[None]: ...

    def takes(self, method: str, path: str) -> bool: ...

    def serve_rest(self, scope: dict[str, Any], exchange: RawExchange) -> Awaitable[None]: ...


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
        lanes: Lanes | None = getattr(getattr(self.app, "app", None), "lanes", None)
        if lanes is None or not isinstance(self.stream, trio.SocketStream) or self.config.server_names:
            await self._hypercorn()
            return
        # As Hypercorn: a connection whose next request head is not in by the keep-alive timeout
        # is closed without an answer. One scope for all the connection's requests, which the
        # sweep of chat.idle cancels (a scope per request was a few percent of a room
        # creation's time, and a deadline set and lifted per request about 5 µs).
        head: Head | None = None
        with trio.CancelScope() as waiting:
            try:
                head = await self._serve_rest_requests(lanes, waiting)
            finally:
                lanes.idle.busy(waiting)
        if waiting.cancel_called:
            await trio.aclose_forcefully(self.stream)  # Idle too long.
            return
        if head is None:
            return
        event, path, headers, parser, received = head
        upgrade = _upgrade(event, path, headers, parser, lanes, self.stream, self.config)
        # Neither the parser nor the request stays referenced from this frame for the
        # socket's life: the WebSocket lets go of them once it has answered the handshake.
        del event, parser, headers, head
        if upgrade is None:
            await self._hypercorn(bytes(received))  # Hypercorn's answer, 400 included.
            return
        del received
        await self._serve_room_socket(lanes, *upgrade)

    async def _serve_rest_requests(self, lanes: Lanes, waiting: trio.CancelScope) -> Head | None:
        """Serve the connection's requests while they are chat.rest_lane's: the head of the
        first that is not (with its parser and its bytes so far), None once the connection ended."""
        parser: h11.Connection | KnownLength = _parser(self.config)
        answered = 0
        addresses: tuple[Any, Any] | None = None  # Looked up for the first request that needs them.
        most = self.config.h11_max_incomplete_size
        while True:
            if answered and self.context.terminated.is_set():
                await _end(self.stream)  # Shutting down: no next request, as Hypercorn's idle close.
                return None
            # The bytes of this request so far, from its first: Hypercorn gets them if it is not ours.
            data, closed = parser.trailing_data
            received = bytearray(data)
            event: Any = None
            lanes.idle.waiting(waiting, self.config.keep_alive_timeout)
            try:
                event, closed = await self._read_head(received, closed, most)
                if event is None:  # Not the plain shape: h11 reads it, from its first byte.
                    parser = _parser(self.config)
                    parser.receive_data(bytes(received))
                    if closed:
                        parser.receive_data(b"")
                    event = await self._next_event(parser, received)
            except h11.RemoteProtocolError:
                pass  # Hypercorn's to answer (a 400), or to take as HTTP/2.
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return None
            lanes.idle.busy(waiting)
            if waiting.cancel_called:
                return None  # The time ran out as the head came in: closed all the same.
            if not received and isinstance(event, h11.ConnectionClosed):
                await trio.aclose_forcefully(self.stream)  # Left without a word.
                return None
            # Read once per request: h11 hands headers out one tuple at a time, and the path is
            # what every lane routes on. PlainPost tested first: h11's events are ABCs, slower.
            headers: Headers = list(event.headers) if isinstance(event, PlainPost | h11.Request) else []
            path = _path_of(event.target) if headers else None
            if path is not None and _plain(headers) and lanes.takes(event.method.decode("ascii"), path):
                answered += 1
                addresses = addresses or _addresses(self.stream)
                scope = _http_scope(event, path, headers, addresses)
                if isinstance(event, PlainPost):
                    parser = KnownLength(received[event.body_starts :], event.length, closed)
                if not await self._serve_rest(lanes, scope, _keeps_alive(event, headers), parser, answered):
                    return None
                continue
            if isinstance(event, PlainPost):  # Hypercorn's, from its first byte: nothing to upgrade.
                parser = _parser(self.config)
            assert isinstance(parser, h11.Connection)
            return event, path, headers, parser, received

    async def _read_head(self, received: bytearray, closed: bool, most: int) -> tuple[PlainPost | None, bool]:
        """Read into ``received`` until it holds a request head, the client closes its side, the
        head is longer than h11 takes or cannot be a POST: the head if it is a ``PlainPost``,
        and whether the client closed its side."""
        looked = 0
        while True:
            if not (received.startswith(b"POST ") or b"POST ".startswith(received)):
                return None, closed  # h11's from its first bytes (it refuses some at once).
            if (blank := _BLANK_LINE.search(received, looked)) is not None:
                ends = blank.start() - 1  # A head ends at its first blank line, as h11 finds it.
                plain = received[ends : blank.end()] == b"\r\n\r\n"
                return plain_post(received, ends, most) if plain else None, closed
            if closed or len(received) > most:
                return None, closed
            looked = max(0, len(received) - 3)
            data = await next_bytes(self.stream)
            if not data:
                closed = True
            received += data

    async def _next_event(self, parser: h11.Connection, received: bytearray) -> Any:
        while True:
            event = parser.next_event()
            if event is not h11.NEED_DATA:
                return event
            data = await self.stream.receive_some(MAX_RECV)
            received += data
            parser.receive_data(data)

    async def _serve_rest(
        self,
        lanes: Lanes,
        scope: dict[str, Any],
        keep_alive: bool,
        parser: h11.Connection | KnownLength,
        answered: int,
    ) -> bool:
        """Serve one of chat.rest_lane's requests; whether the connection may take another."""
        last = answered >= self.config.keep_alive_max_requests
        exchange = RawExchange(self.stream, parser, self.config, keep_alive=keep_alive, last=last)
        try:
            await lanes.serve_rest(scope, exchange)
        except Exception:
            log.exception("REST request failed")
            if not exchange.answered:
                await exchange.answer(500, [(b"content-length", b"0")], b"")
        # An answer given before the body was read (a refusal) leaves the body on its way: as
        # Hypercorn, read it to its end and drop it, and the connection goes on.
        if exchange.body_left:
            with trio.move_on_after(self.config.keep_alive_timeout):
                await exchange.drop_the_rest()
        if exchange.keeps_connection:
            return True
        # Ended mid-request (a client gone, a body past the limit) or told to close: as Hypercorn.
        with trio.CancelScope(shield=True) as ending:
            ending.deadline = trio.current_time() + FINISH_SECONDS
            await _end(self.stream)
        return False

    async def _serve_room_socket(
        self, lanes: Lanes, scope: dict[str, Any], websocket: RawWebSocket, room_id: str
    ) -> None:
        try:
            await lanes.serve_socket(scope, websocket, room_id)
        except Exception:
            log.exception("room socket failed")
        finally:
            with trio.CancelScope(shield=True) as ending:
                ending.deadline = trio.current_time() + FINISH_SECONDS
                await websocket.finish()
                await _end(self.stream)


async def _end(stream: trio.SocketStream) -> None:
    """End the connection as Hypercorn does: our side first (FIN), then the socket."""
    try:
        await stream.send_eof()
    except (trio.BrokenResourceError, trio.BusyResourceError, trio.ClosedResourceError):
        pass
    await stream.aclose()


def _parser(config: Config) -> h11.Connection:
    return h11.Connection(h11.SERVER, max_incomplete_event_size=config.h11_max_incomplete_size)


def _plain(headers: Headers) -> bool:
    """No protocol change asked for (``Upgrade: h2c`` from ``curl --http2`` is Hypercorn's to take)."""
    return all(name != b"upgrade" for name, _ in headers)


def _keeps_alive(request: h11.Request | PlainPost, headers: Headers) -> bool:
    """Whether the client keeps the connection after this request (as h11 tells it)."""
    if request.http_version < b"1.1":
        return False
    for name, value in headers:
        if name == b"connection" and b"close" in (token.strip().lower() for token in value.split(b",")):
            return False
    return True


def _addresses(stream: trio.SocketStream) -> tuple[Any, Any]:
    """The client's and the server's address, as Hypercorn puts them in a scope."""
    socket = stream.socket
    client, server = socket.getpeername(), socket.getsockname()
    return parse_socket_addr(socket.family, client), parse_socket_addr(socket.family, server)


def _path_of(target: bytes) -> str | None:
    """A request target's path as Hypercorn puts it in a scope; None if it is not ASCII."""
    try:
        return unquote(target.partition(b"?")[0].decode("ascii"))
    except UnicodeDecodeError:
        return None


def _http_scope(
    request: h11.Request | PlainPost, path: str, headers: Headers, addresses: tuple[Any, Any]
) -> dict[str, Any]:
    """An HTTP request's ASGI scope, as Hypercorn's HTTPStream makes it (what chat.rest_lane reads)."""
    raw_path, _, query_string = request.target.partition(b"?")
    return {
        "type": "http",
        "http_version": request.http_version.decode(),
        "method": request.method.decode("ascii").upper(),
        "scheme": "http",
        "path": path,
        "raw_path": raw_path,
        "query_string": query_string,
        "root_path": "",
        "headers": headers,
        "client": addresses[0],
        "server": addresses[1],
    }


def _upgrade(
    event: Any,
    path: str | None,
    headers: Headers,
    parser: h11.Connection,
    lanes: Lanes,
    stream: trio.SocketStream,
    config: Config,
) -> tuple[dict[str, Any], RawWebSocket, str] | None:
    """A valid WebSocket upgrade to a room's socket: its scope, its socket and its room."""
    if path is None or (room_id := _room_socket(event, path, headers, lanes)) is None:
        return None
    handshake = Handshake(headers, event.http_version.decode())
    if not handshake.is_valid():
        return None
    # What the session reads of its socket (chat.ws.socket): the path, query and headers.
    scope = {
        "type": "websocket",
        "path": path,
        "query_string": event.target.partition(b"?")[2],
        "headers": headers,
    }
    return scope, RawWebSocket(stream, config, parser, handshake), room_id


def _room_socket(request: h11.Request, path: str, headers: Headers, lanes: Lanes) -> str | None:
    """The room of a WebSocket upgrade to a room's socket path (an upgrade as Hypercorn's
    HTTP/1.1 protocol tells one)."""
    if request.method != b"GET":
        return None
    upgrade = connection = b""
    for name, value in headers:
        if name == b"upgrade":
            upgrade = value.strip()
        elif name == b"connection":
            connection = value
    if upgrade.lower() != b"websocket" or b"upgrade" not in (t.strip() for t in connection.lower().split(b",")):
        return None
    return lanes.room_of(path)


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
