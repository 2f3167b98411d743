"""A room's WebSocket on the connection itself: wsproto over the accepted TCP stream.

Under Hypercorn, a WebSocket is two tasks (the connection's reader, the ASGI app) joined by a
memory channel, with Hypercorn's stream, h11 and handshake state kept beside wsproto's for the
socket's life: about half of an idle member's memory (benchmarks/RESULTS.md, "Memory per idle
member"). A room socket is served here instead (chat.connections hands it over after reading
its upgrade request): one task, the session's own, reads the connection when it wants the next
frame; writes come from any task, straight to the socket when nothing else is sending.

It speaks to the session as ASGI does (``receive``/``send``, the same messages and close
codes), and as Hypercorn's connection did (``Transport``: the same interface as
``HypercornTransport``), so ``AsgiSocket`` and everything above it is unchanged. What Hypercorn
did for a WebSocket is done here the same way: the handshake (Hypercorn's own ``Handshake``:
validation, permessage-deflate, the accept token), its ``date`` and ``server`` headers, a 403
for a close before the accept, pongs, the close handshake, messages reassembled from
fragments and closed with 1009 past ``websocket_max_message_size``.
"""

from __future__ import annotations

import logging
import os
import socket as socket_module
from typing import Any

import h11
import trio
from hypercorn.config import Config
from hypercorn.protocol.ws_stream import Handshake
from wsproto.connection import Connection, ConnectionState
from wsproto.events import BytesMessage, CloseConnection, Event, Message, Ping, TextMessage
from wsproto.frame_protocol import CloseReason
from wsproto.utilities import LocalProtocolError

from ..raw_http import MAX_RECV, server_headers

log = logging.getLogger(__name__)

# wsproto's states once the peer's close frame arrived.
GOODBYE_SAID = (ConnectionState.REMOTE_CLOSING, ConnectionState.CLOSED)


class RawWebSocket:
    """ASGI ``receive``/``send`` and the session's transport, for one upgraded connection."""

    __slots__ = (
        "_connection",
        "_fragments",
        "_handshake",
        "_lock",
        "_lost",
        "_max_message",
        "_pending",
        "_said_connect",
        "_stream",
        "accepted",
        "closed",
        "config",
        "h11",
        "ws",
    )

    def __init__(
        self, stream: trio.SocketStream, config: Config, h11_connection: h11.Connection, handshake: Handshake
    ) -> None:
        self._stream = stream
        self.config = config
        self.h11: h11.Connection | None = h11_connection
        self._handshake: Handshake | None = handshake
        self.ws: Connection | None = None
        # Made when a write first has to wait: most sockets never need one.
        self._lock: trio.Lock | None = None
        self._max_message: int | None = config.websocket_max_message_size
        self._pending: list[Event] = []
        self._fragments: list[Any] = []
        self._said_connect = False
        self._lost = False  # The connection ended under the socket, without a close frame.
        self.accepted = False
        self.closed = False

    # ASGI, as the session's AsgiSocket uses it.

    async def receive(self) -> dict[str, Any]:
        if not self._said_connect:
            self._said_connect = True
            return {"type": "websocket.connect"}
        while True:
            while self._pending:
                message = await self._handle(self._pending.pop(0))
                if message is not None:
                    return message
            ws = self.ws
            if ws is None or self._lost or ws.state is ConnectionState.CLOSED:
                return {"type": "websocket.disconnect", "code": CloseReason.ABNORMAL_CLOSURE}
            try:
                data = await self._stream.receive_some(MAX_RECV)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                data = b""
            if not data:
                self._lost = True
                continue
            ws.receive_data(data)
            self._pending.extend(ws.events())

    async def _handle(self, event: Event) -> dict[str, Any] | None:
        if isinstance(event, Message):
            if self.ws is None or self.ws.state is not ConnectionState.OPEN:
                return None  # Closing: only the peer's close frame matters now.
            self._fragments.append(event.data)
            if self._max_message is not None and sum(map(len, self._fragments)) > self._max_message:
                # As Hypercorn: close 1009, and the session hears of it with the peer's answer.
                self._fragments.clear()
                await self._send_event(CloseConnection(code=CloseReason.MESSAGE_TOO_BIG))
                return None
            if not event.message_finished:
                return None
            parts, self._fragments = self._fragments, []
            if isinstance(event, TextMessage):
                return {"type": "websocket.receive", "text": "".join(parts)}
            return {"type": "websocket.receive", "bytes": b"".join(parts)}
        if isinstance(event, Ping):
            await self._send_event(event.response())
        elif isinstance(event, CloseConnection):
            self._pending.clear()
            if self.ws is not None and self.ws.state is ConnectionState.REMOTE_CLOSING:
                await self._send_event(event.response())
            return {"type": "websocket.disconnect", "code": event.code}
        return None  # A pong: the kernel's acknowledgements already say the peer is there.

    async def send(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        if kind == "websocket.accept" and not self.accepted:
            await self._accept()
        elif kind == "websocket.close" and not self.accepted:
            self.closed = True
            await self._refuse(403)
        elif kind == "websocket.close":
            self.closed = True
            code = int(message.get("code", CloseReason.NORMAL_CLOSURE))
            await self._send_event(CloseConnection(code=code, reason=message.get("reason")))
        elif kind == "websocket.send" and self.accepted:
            data = message.get("bytes")
            event = BytesMessage(data=bytes(data)) if data is not None else TextMessage(data=message["text"])
            await self._send_event(event)
        else:
            raise RuntimeError(f"Unexpected ASGI message {kind!r} on a room socket")

    async def _accept(self) -> None:
        assert self._handshake is not None and self.h11 is not None
        status, headers, self.ws = self._handshake.accept(None, ())
        answer = h11.InformationalResponse(status_code=status, headers=headers + server_headers(self.config))
        head = self.h11.send(answer)
        # Frames the client sent right behind its request (it may: it knows the answer).
        leftover = self.h11.trailing_data[0]
        self._handshake = self.h11 = None  # Kept only until the upgrade: not for the socket's life.
        self.accepted = True
        if leftover:
            self.ws.receive_data(leftover)
            self._pending.extend(self.ws.events())
        await self.write(head)

    async def _refuse(self, status: int) -> None:
        """Answer the upgrade request with an empty HTTP response and end the connection, as
        Hypercorn does for a socket closed before it was accepted."""
        if self.h11 is None:
            return
        headers = [(b"content-length", b"0"), (b"connection", b"close"), *server_headers(self.config)]
        data = self.h11.send(h11.Response(status_code=status, headers=headers))
        data += self.h11.send(h11.EndOfMessage()) or b""
        self._handshake = self.h11 = None
        await self.write(data)

    async def _send_event(self, event: Event) -> None:
        if self.ws is None:
            return
        try:
            data = self.ws.send(event)
        except LocalProtocolError:
            return  # Closed already: nothing more may be said.
        await self.write(data)

    async def finish(self) -> None:
        """After the session: a connection it accepted and did not close gets the close frame
        Hypercorn sends for an app that ended without one; one never answered gets a 500."""
        if not self.accepted and not self.closed:
            await self._refuse(500)
        elif self.ws is not None and self.ws.state is ConnectionState.OPEN:
            await self._send_event(CloseConnection(code=CloseReason.INTERNAL_ERROR))

    # The transport, as chat.ws.socket uses it (the same interface as HypercornTransport).

    direct = True

    def write_now(self, data: bytes) -> int:
        """Write what the socket takes right now, without waiting; how many bytes that was:
        nothing while another write is under way, before the accept, after the close (or the
        socket's end). Synchronous, so nobody can start sending between the checks and the
        write. Every frame of a fan-out comes this way: kept to the checks it needs."""
        if not self.accepted or self.closed or (self._lock is not None and self._lock.locked()):
            return 0
        return self._write_raw(data)

    async def write(self, data: bytes) -> None:
        """All of ``data``, after whatever another task is writing; dropped once the
        connection is gone. Shielded, as Hypercorn's sends are: a frame cut in half would
        garble every frame after it. A peer that stopped reading is cut off with abort()."""
        if self._lock is None:
            self._lock = trio.Lock()
        lock = self._lock
        if lock.locked():
            await lock.acquire()
            rest = data
        else:
            sent = self._write_raw(data)
            if sent == len(data):
                return
            lock.acquire_nowait()  # Before any checkpoint: nobody writes in between.
            rest = data[sent:]
        try:
            with trio.CancelScope(shield=True):
                await self._stream.send_all(rest)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            lock.release()

    def _write_raw(self, data: bytes) -> int:
        # A closed trio socket's fileno is -1 (never another socket's number): EBADF, nothing written.
        try:
            return os.write(self._stream.socket.fileno(), data)
        except OSError:
            return 0

    def give_up_unacknowledged_after(self, seconds: float) -> None:
        """Let the kernel end the connection once data sent on it has gone unacknowledged
        for ``seconds`` (TCP_USER_TIMEOUT, Linux): how a vanished peer is noticed."""
        option = getattr(socket_module, "TCP_USER_TIMEOUT", None)
        if option is not None:
            try:
                self._stream.socket.setsockopt(socket_module.IPPROTO_TCP, option, int(seconds * 1000))
            except OSError:
                pass  # Closed already: nothing to watch.

    def goodbye_received(self) -> bool:
        """Whether the peer sent its close frame, rather than the connection being lost."""
        ws = self.ws
        return not self._lost and ws is not None and ws.state in GOODBYE_SAID

    async def abort(self) -> None:
        """Drop the connection now, even while a write to it is stuck."""
        self.closed = True
        await trio.aclose_forcefully(self._stream)
