"""Our thin adapter to the Hypercorn connection under a room's WebSocket.

Hypercorn hands an ASGI app its ``WSStream.app_send`` as ``send``. From that stream:

- ``WSStream.send(Data(...))`` puts bytes on the connection: a whole batch of pre-framed
  messages in one lock, one ``send_all``, instead of one ASGI round per frame;
- ``WSStream.send(StreamClosed(...))`` closes the transport without waiting for the send
  lock: the only way to free a writer stuck in Hypercorn's shielded ``send_all``;
- behind it, ``TCPServer.stream`` and ``TCPServer.send_lock``: when nothing else is sending,
  a batch is first offered to the socket with one synchronous non-blocking write. A healthy
  peer's kernel buffer takes it whole, so the common case costs one syscall and no task
  switch, lock or cancel scope; whatever does not fit goes the locked way above, in order.

Checked against Hypercorn 0.17 and 0.18 (tests/test_hypercorn_adapter.py, which fails naming the
installed version when the shape changes; pyproject.toml bounds Hypercorn to that range).
Anything of another shape uses the paths that still apply: ASGI messages, or the stream alone.
TLS and HTTP/2 connections are expected to (the socket under them does not carry WebSocket
frames as they are); any other mismatch is logged once as a warning naming the version.
"""

from __future__ import annotations

import functools
import logging
import os
import socket as socket_module
from importlib.metadata import version
from typing import Any

import trio
from hypercorn.protocol.events import Data, StreamClosed
from hypercorn.protocol.h2 import H2Protocol
from hypercorn.protocol.h11 import H11Protocol
from hypercorn.protocol.ws_stream import ASGIWebsocketState, WSStream
from hypercorn.trio.tcp_server import TCPServer
from wsproto.connection import ConnectionState

log = logging.getLogger(__name__)
HYPERCORN_VERSION = version("hypercorn")


@functools.cache
def shape_changed(what: str) -> None:
    """Warn, once per kind of mismatch, that the fast path is off: the server still works."""
    log.warning(
        "Hypercorn %s: %s; WebSocket writes take the slower general path. chat/ws/hypercorn_adapter.py "
        "was checked against Hypercorn 0.17 and 0.18: install one of those, or adapt it.",
        HYPERCORN_VERSION,
        what,
    )


def hypercorn_stream(send: Any) -> WSStream | None:
    stream = getattr(send, "__self__", None)
    if isinstance(stream, WSStream):
        return stream
    # Only Hypercorn's own send is expected to be one; a test client's is rightly not.
    if (getattr(send, "__module__", None) or "").startswith("hypercorn."):
        shape_changed(f"the ASGI send callable is {send!r}, not a bound WSStream.app_send")
    return None


def _tcp(stream: WSStream) -> tuple[trio.Lock, Any] | str | None:
    """Hypercorn's send lock and the plain TCP socket under this stream; None where there
    is rightly none (TLS, HTTP/2); otherwise what differs from the shape we rely on."""
    protocol = getattr(stream.send, "__self__", None)
    if isinstance(protocol, H2Protocol):
        return None  # WebSocket frames go inside HTTP/2 frames there: never raw on the socket
    if not isinstance(protocol, H11Protocol):
        return f"WSStream.send is bound to {type(protocol).__name__}, not H11Protocol"
    return tcp_under(protocol)


def tcp_under(protocol: H11Protocol) -> tuple[trio.Lock, Any] | str | None:
    """Hypercorn's send lock and the plain TCP socket under an HTTP/1.1 connection; None under
    TLS; otherwise what differs from the shape we rely on."""
    server = getattr(getattr(protocol, "send", None), "__self__", None)
    if not isinstance(server, TCPServer):
        return f"H11Protocol.send is bound to {type(server).__name__}, not the Trio worker's TCPServer"
    lock = getattr(server, "send_lock", None)
    if not isinstance(lock, trio.Lock):
        return f"TCPServer.send_lock is {type(lock).__name__}, not a trio.Lock"
    if isinstance(server.stream, trio.SSLStream):
        return None
    socket = getattr(server.stream, "socket", None)
    if socket is None:
        return f"TCPServer.stream is {type(server.stream).__name__}, with no socket under it"
    return lock, socket


class HypercornTransport:
    __slots__ = ("_lock", "_socket", "not_direct_because", "stream")

    def __init__(self, stream: WSStream) -> None:
        self.stream = stream
        tcp = _tcp(stream)
        self._lock, self._socket = tcp if isinstance(tcp, tuple) else (None, None)
        # Why writes are not tried on the socket first, where that is not by design.
        self.not_direct_because = tcp if isinstance(tcp, str) else None
        if self.not_direct_because is not None:
            shape_changed(self.not_direct_because)

    @property
    def direct(self) -> bool:
        """True when writes are first tried straight on the socket."""
        return self._lock is not None

    @property
    def open(self) -> bool:
        return not self.stream.closed and self.stream.state == ASGIWebsocketState.CONNECTED

    def write_now(self, data: bytes) -> int:
        """Write what the socket takes right now, without waiting; how many bytes that was.

        Synchronous, so nobody can start sending between the check of Hypercorn's lock and
        the write. A full socket (EAGAIN) or a broken one writes nothing: the locked path
        then queues the rest, or finds out the connection is gone and closes it.
        """
        if self._lock is None or self._lock.locked() or not self.open:
            return 0
        try:
            return os.write(self._socket.fileno(), data)
        except OSError:
            return 0

    def give_up_unacknowledged_after(self, seconds: float) -> None:
        """Let the kernel end the connection once data sent on it has gone unacknowledged
        for ``seconds`` (TCP_USER_TIMEOUT, Linux): how a vanished peer is noticed."""
        option = getattr(socket_module, "TCP_USER_TIMEOUT", None)
        if self._socket is not None and option is not None:
            try:
                self._socket.setsockopt(socket_module.IPPROTO_TCP, option, int(seconds * 1000))
            except OSError:
                pass  # Closed already (the peer left during the handshake): nothing to watch.

    async def write(self, data: bytes) -> None:
        if not self.open:
            return
        sent = self.write_now(data)
        if sent < len(data):
            try:
                await self.stream.send(Data(stream_id=self.stream.stream_id, data=data[sent:]))
            except trio.BusyResourceError:
                # Hypercorn closes a connection (send_eof) outside its send lock; a write that
                # meets that close finds the socket busy. The connection is gone: drop the rest.
                pass

    def goodbye_received(self) -> bool:
        """Whether the peer sent its close frame, rather than the connection being lost under
        it: Hypercorn reports both as a disconnect with code 1006, its wsproto connection
        tells them apart. A peer gone before its handshake was answered has no wsproto
        connection yet: that is a lost connection, not a goodbye."""
        connection = getattr(self.stream, "connection", None)
        return connection is not None and connection.state in (ConnectionState.REMOTE_CLOSING, ConnectionState.CLOSED)

    async def abort(self) -> None:
        """Drop the connection now, even while a write to it is stuck."""
        if not self.stream.closed:
            await self.stream.send(StreamClosed(stream_id=self.stream.stream_id))
