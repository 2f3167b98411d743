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
connection ready for its next request, or closes it).

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
