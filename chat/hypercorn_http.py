"""Our thin adapter to Hypercorn's HTTP/1.1 stream: a whole small response in one write.

Hypercorn turns an ASGI response into one socket write per event, each under the connection's
send lock inside a shielded cancel scope: the head (``http.response.start``), the body, and the
end of the message (empty for a response with a Content-Length, and written all the same). For a
small JSON answer that is three lock rounds and scheduling points where one would do.

``answer()`` asks the stream's own h11 connection for the very bytes those events make (the head
with Hypercorn's ``date`` and ``server`` headers, and ``connection: close`` once the
connection's request budget is spent) and writes them at once, in one non-blocking write straight
to the socket when nothing else is sending on it (as chat/ws/hypercorn_adapter.py does for room
frames), or whatever that did not take through Hypercorn's own send path (its lock, its shield,
its handling of a peer that is gone); and then ends the stream as
Hypercorn's last ASGI message would: state, access log, ``StreamClosed`` (which makes the
connection ready for its next request, or closes it). The connection's keep-alive timer becomes
an ``IdleTimer`` on the way: one task whose deadline moves, rather than one started per answer.

Checked against Hypercorn 0.17 and 0.18 (tests/test_hypercorn_http.py compares the bytes on the
wire with those of the ASGI path and fails naming the installed version when the shape changes).
Anything of another shape (HTTP/2, a stream that is not waiting for its response, a test
client's send) gets the same answer as ASGI messages.
"""

from __future__ import annotations

import functools
import logging
import os
from itertools import chain
from time import time
from typing import Any

import h11
import trio
from hypercorn.events import RawData
from hypercorn.protocol.events import StreamClosed
from hypercorn.protocol.h11 import H11Protocol
from hypercorn.protocol.http_stream import ASGIHTTPState, HTTPStream
from hypercorn.trio.tcp_server import TCPServer
from hypercorn.trio.worker_context import TrioSingleTask
from hypercorn.utils import build_and_validate_headers, suppress_body

from .ws.hypercorn_adapter import HYPERCORN_VERSION, tcp_under

log = logging.getLogger(__name__)

Headers = list[tuple[bytes, bytes]]


@functools.cache
def shape_changed(what: str) -> None:
    """Warn, once per kind of mismatch, that answers take the ASGI path: they still arrive."""
    log.warning(
        "Hypercorn %s: %s; REST answers take the general ASGI path. chat/hypercorn_http.py was "
        "checked against Hypercorn 0.17 and 0.18: install one of those, or adapt it.",
        HYPERCORN_VERSION,
        what,
    )


def h11_stream(send: Any) -> tuple[HTTPStream, H11Protocol] | None:
    """Hypercorn's HTTP/1.1 stream behind an ASGI ``send``, and its protocol; None if it is not one."""
    stream = getattr(send, "__self__", None)
    if not isinstance(stream, HTTPStream):
        # Only Hypercorn's own send is expected to be one; a test client's is rightly not.
        if (getattr(send, "__module__", None) or "").startswith("hypercorn."):
            shape_changed(f"the ASGI send callable is {send!r}, not a bound HTTPStream.app_send")
        return None
    protocol = getattr(stream.send, "__self__", None)
    if not isinstance(protocol, H11Protocol):
        return None  # HTTP/2 (or 3): its frames are not h11's, so the general path it is
    if not isinstance(protocol.connection, h11.Connection):
        shape_changed(f"H11Protocol.connection is {type(protocol.connection).__name__}, not an h11.Connection")
        return None
    return stream, protocol


async def answer(send: Any, status: int, headers: Headers, body: bytes) -> None:
    """Send a complete response (``headers`` as ASGI has them, ``body`` whole), in one write
    where the connection is Hypercorn's HTTP/1.1; as the two usual ASGI messages elsewhere.

    Shielded from cancellation as a whole: a response cut between its head and its end would
    leave the connection open but unusable for the client's next request."""
    with trio.CancelScope(shield=True):
        found = h11_stream(send)
        if found is None or found[0].closed or found[0].state is not ASGIHTTPState.REQUEST:
            await send({"type": "http.response.start", "status": status, "headers": headers})
            await send({"type": "http.response.body", "body": body, "more_body": False})
            return
        stream, protocol = found
        stream.response = {"type": "http.response.start", "status": status, "headers": headers}
        data = _response_bytes(stream, protocol, status, headers, body)
        stream.state = ASGIHTTPState.RESPONSE
        if data is not None:
            sent = _write_now(protocol, data)
            if sent < len(data):
                await protocol.send(RawData(data=data[sent:]))
        stream.state = ASGIHTTPState.CLOSED
        await stream.config.log.access(stream.scope, stream.response, time() - stream.start_time)
        _time_idleness_cheaply(protocol)
        await stream.send(StreamClosed(stream_id=stream.stream_id))


def _write_now(protocol: H11Protocol, data: bytes) -> int:
    """Write what the socket takes right now, without waiting, when nothing else is sending on
    the connection: how many bytes that was. A healthy client's kernel buffer takes a small
    answer whole, so the common case costs one syscall and no lock, cancel scope or task switch;
    the rest (all of it under TLS, on a full or broken socket) goes Hypercorn's locked way."""
    tcp = tcp_under(protocol)
    if not isinstance(tcp, tuple):
        if tcp is not None:
            shape_changed(tcp)
        return 0
    lock, socket = tcp
    if lock.locked():
        return 0
    try:
        return os.write(socket.fileno(), data)
    except OSError:
        return 0


class IdleTimer:
    """Hypercorn's keep-alive timer of one connection (``TCPServer.idle_task``), as one task
    whose deadline moves, in place of a task started per answer.

    Hypercorn restarts the timer each time the connection falls idle (``restart``: a new task
    in the connection's task group, which waits ``keep_alive_timeout`` or for the server to
    terminate, then closes the connection) and stops it when a request arrives (``stop``: that
    task cancelled); for a stream of small requests that start and cancel are a good part of
    each request's cost. Here one task waits for the server to terminate inside a cancel scope
    whose deadline is the idle deadline; either ending closes the connection as Hypercorn's
    task does. A termination in the middle of a request waits until the connection is idle
    again, as Hypercorn would only start its task then. While a request is in progress the
    deadline stays one ``keep_alive_timeout`` ahead of its start, and if it passes first the
    task ends without closing anything: a connection that ends mid-request (and so never idles
    again) keeps no task alive, and the next idle spell starts a new one.
    """

    __slots__ = ("_idle", "_scope", "_server", "_woken")

    def __init__(self, server: TCPServer) -> None:
        self._server = server
        self._scope: trio.CancelScope | None = None
        self._idle = False
        self._woken: trio.Event | None = None

    async def restart(self, task_group: Any, action: Any) -> None:
        """The connection is idle: close it after ``keep_alive_timeout`` unless a request comes."""
        self._idle = True
        deadline = trio.current_time() + self._server.config.keep_alive_timeout
        if self._scope is None or self._scope.cancel_called:
            self._scope = trio.CancelScope(deadline=deadline)
            task_group.spawn(self._run, self._scope)
        else:
            self._scope.deadline = deadline
        if self._woken is not None:
            self._woken.set()

    async def stop(self) -> None:
        """A request came: no closing for idleness until it has been answered."""
        self._idle = False
        if self._scope is not None and not self._scope.cancel_called:
            self._scope.deadline = trio.current_time() + self._server.config.keep_alive_timeout

    async def _run(self, scope: trio.CancelScope) -> None:
        with scope:
            await self._server.context.terminated.wait()
            while not self._idle:  # The server terminates mid-request: close once it is answered.
                self._woken = trio.Event()
                await self._woken.wait()
        if self._scope is not scope:  # A new idle spell began after this one's deadline passed.
            return
        self._scope = None
        if scope.cancelled_caught and not self._idle:
            return  # A request outlasted the deadline: end; the next idle spell starts afresh.
        with trio.CancelScope(shield=True):
            await self._server._initiate_server_close()


def _time_idleness_cheaply(protocol: H11Protocol) -> None:
    """Put an IdleTimer in place of the connection's own timer, while that one is stopped (as it
    is while a request is in progress), so that nothing it started is left running."""
    server = getattr(protocol.send, "__self__", None)
    timer = getattr(server, "idle_task", None)
    if isinstance(timer, IdleTimer):
        return
    if (
        not isinstance(server, TCPServer)
        or type(timer) is not TrioSingleTask
        or not hasattr(server, "_initiate_server_close")
    ):
        shape_changed(f"TCPServer.idle_task is {type(timer).__name__}, not a TrioSingleTask")
        return
    if getattr(timer, "_handle", True) is None:
        server.idle_task = IdleTimer(server)


def _response_bytes(
    stream: HTTPStream, protocol: H11Protocol, status: int, headers: Headers, body: bytes
) -> bytes | None:
    """What H11Protocol.stream_send makes of the Response, Body and EndBody events; None where
    it would send nothing (the peer broke the protocol, so h11 refuses to answer)."""
    config = protocol.config
    head = list(chain(build_and_validate_headers(headers), config.response_headers("h11")))
    if protocol.keep_alive_requests >= config.keep_alive_max_requests:
        head.append((b"connection", b"close"))
    connection = protocol.connection
    try:
        data = connection.send(h11.Response(headers=head, status_code=status)) or b""
        if body and not suppress_body(stream.scope["method"], status):
            data += connection.send(h11.Data(data=body)) or b""
        data += connection.send(h11.EndOfMessage()) or b""
    except h11.LocalProtocolError:
        if connection.their_state != h11.ERROR:
            raise
        return None
    return data
