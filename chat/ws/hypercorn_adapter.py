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

Checked against Hypercorn 0.17 and 0.18 (tests/test_hypercorn_adapter.py). Anything of another shape
(another server, TLS) uses the paths that still apply: ASGI messages, or the stream alone.
"""

from __future__ import annotations

import os
import socket as socket_module
from typing import Any

import trio
from hypercorn.protocol.events import Data, StreamClosed
from hypercorn.protocol.ws_stream import ASGIWebsocketState, WSStream
from hypercorn.trio.tcp_server import TCPServer


def hypercorn_stream(send: Any) -> WSStream | None:
    stream = getattr(send, "__self__", None)
    return stream if isinstance(stream, WSStream) else None


def _tcp(stream: WSStream) -> tuple[trio.Lock, Any] | None:
    """Hypercorn's send lock and the plain TCP socket under this stream, if that is what it is."""
    protocol = getattr(stream.send, "__self__", None)  # H11Protocol
    server = getattr(getattr(protocol, "send", None), "__self__", None)
    if not isinstance(server, TCPServer):
        return None
    socket = getattr(server.stream, "socket", None)  # absent on TLS streams
    lock = getattr(server, "send_lock", None)
    if socket is None or not isinstance(lock, trio.Lock):
        return None
    return lock, socket


class HypercornTransport:
    __slots__ = ("_lock", "_socket", "stream")

    def __init__(self, stream: WSStream) -> None:
        self.stream = stream
        tcp = _tcp(stream)
        self._lock, self._socket = tcp if tcp is not None else (None, None)

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
            self._socket.setsockopt(socket_module.IPPROTO_TCP, option, int(seconds * 1000))

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

    async def abort(self) -> None:
        """Drop the connection now, even while a write to it is stuck."""
        if not self.stream.closed:
            await self.stream.send(StreamClosed(stream_id=self.stream.stream_id))
