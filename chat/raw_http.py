"""One REST request served on its connection (chat.connections): ASGI ``receive`` and ``send``
over the connection's h11 parser (or, for a plain POST, chat.plain_post's ``KnownLength``).

Hypercorn serves a request with a task and a memory channel of its own, an h11 event per step
and a locked, shielded write per ASGI message (benchmarks/RESULTS.md: about 40% of a room
creation's server time). Room creation and joining come in bursts, so chat.connections serves
them itself, in the connection's task, through chat.rest_lane as before: the body is read when
the route asks for it (with a ``100 Continue`` first when the client waits for one, as Hypercorn
sends it), and the answer is encoded as h11 encodes it, with Hypercorn's ``date`` and
``server`` headers, and written in one go.
"""

from __future__ import annotations

import os
import re
from time import time
from typing import Any
from weakref import WeakKeyDictionary

import h11
import trio
from hypercorn.config import Config
from hypercorn.utils import build_and_validate_headers

from .plain_post import KnownLength

# Most bytes read from a connection at once, as Hypercorn reads them.
MAX_RECV = 2**16
_LINE_BREAK = re.compile(rb"\r\n|\r|\n")
_DISCONNECT: dict[str, Any] = {"type": "http.disconnect"}
# The most of a body left unread by an answer that is read and dropped to keep the connection.
DROPPED_BODY_BYTES = 1024 * 1024


def server_headers(config: Config) -> list[tuple[bytes, bytes]]:
    """Hypercorn's ``date``, ``server`` (and ``alt-svc``) headers, for every answer made on our
    connections: its own, the date made once a second rather than per answer. Not to be changed
    in place: the list is shared for that second."""
    if not config.include_date_header:
        return config.response_headers("h11")
    now = int(time())
    cached = _DATED.get(config)
    if cached is None or cached[0] != now:
        cached = _DATED[config] = (now, config.response_headers("h11"))
    return cached[1]


async def next_bytes(stream: trio.SocketStream) -> bytes:
    """What the client sends next (b"" once it closed its side): waited for, then read in one
    call. Trio's ``receive_some`` tries the read first and waits only when it fails, and here
    it nearly always fails: the next request head is rarely in yet when the answer to the last
    has just gone (that failed read was about 3% of a room creation's server time)."""
    fd = stream.socket.fileno()
    while True:
        await trio.lowlevel.wait_readable(stream.socket)
        try:
            return os.read(fd, MAX_RECV)
        except BlockingIOError:
            continue  # Woken with nothing to read after all: wait again.
        except OSError as error:
            raise trio.BrokenResourceError(error) from error


# Per server's Config: the second its headers were made in, and those headers.
_DATED: WeakKeyDictionary[Config, tuple[int, list[tuple[bytes, bytes]]]] = WeakKeyDictionary()


class RawExchange:
    """One request and its answer, on a connection this task alone reads and writes."""

    __slots__ = ("_close", "_config", "_last", "_parser", "_pending", "_start", "_stream", "answered")

    def __init__(
        self,
        stream: trio.SocketStream,
        parser: h11.Connection | KnownLength,
        config: Config,
        *,
        keep_alive: bool,
        last: bool,
    ) -> None:
        self._stream, self._parser, self._config = stream, parser, config
        # Whether the client keeps the connection (HTTP/1.1 without ``connection: close``), and
        # whether this is the last request the connection's budget allows: either ends it.
        self._close, self._last = not keep_alive, last
        self._start: dict[str, Any] | None = None
        # Messages parsed ahead (``body_at_hand``) that ``receive`` has not handed out yet.
        self._pending: list[dict[str, Any]] = []
        self.answered = False

    async def receive(self) -> dict[str, Any]:
        if self._pending:
            return self._pending.pop(0)
        parser = self._parser
        while True:
            message = self._parsed()
            if message is not None:
                return message
            if parser.client_is_waiting_for_100_continue and not self.answered:
                continuing = h11.InformationalResponse(status_code=100, headers=server_headers(self._config))
                await self._write(parser.send(continuing) or b"")
            try:
                data = await self._stream.receive_some(MAX_RECV)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                data = b""
            parser.receive_data(data)

    def body_at_hand(self) -> bytes | None:
        """The whole request body, if all of it has arrived with the head (as a small POST's
        does): read without waiting, so without a time bound around the wait. None, having
        given out nothing, if some of it is still to come."""
        pending = self._pending
        if not pending and isinstance(self._parser, KnownLength):
            return self._parser.whole_body()  # A plain POST's: no events made on the way.
        while not pending or (pending[-1] is not _DISCONNECT and pending[-1]["more_body"]):
            message = self._parsed()
            if message is None:
                return None
            pending.append(message)
        if pending[-1] is _DISCONNECT:
            return None  # ``receive`` says so, in turn.
        body = b"".join(message["body"] for message in pending)
        pending.clear()
        return body

    def _parsed(self) -> dict[str, Any] | None:
        """The next ASGI message from the bytes in, None if more must arrive first."""
        try:
            event = self._parser.next_event()
        except h11.RemoteProtocolError:
            return _DISCONNECT
        if event is h11.NEED_DATA:
            return None
        if isinstance(event, h11.Data):
            return {"type": "http.request", "body": bytes(event.data), "more_body": True}
        if isinstance(event, h11.EndOfMessage):
            return {"type": "http.request", "body": b"", "more_body": False}
        return _DISCONNECT

    async def send(self, message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            self._start = message
            return
        if message["type"] != "http.response.body" or self._start is None or message.get("more_body", False):
            raise RuntimeError(f"Unexpected ASGI message {message['type']!r}: answers here go whole")
        await self.answer(self._start["status"], self._start["headers"], message.get("body", b""))

    async def answer(self, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
        """The whole answer in one write. Encoded here as h11 encodes it, without its
        per-header checks and state (the connection's next request gets a parser of its own):
        the headers are ours, and a CR or LF in one is refused all the same."""
        self.answered = True
        if self._parser.their_state is h11.ERROR:
            return  # The client broke the protocol: nothing can be said to it.
        head = [*build_and_validate_headers(headers), *server_headers(self._config)]
        if self._close:  # As h11 answers a client that will not keep the connection.
            head = [(name, value) for name, value in head if name.lower() != b"connection"]
            head.append((b"Connection", b"close"))
        elif self._last:  # As Hypercorn ends a connection whose request budget is spent.
            head.append((b"connection", b"close"))
        data = b"".join([b"HTTP/1.1 %d \r\n" % status, *(b"%s: %s\r\n" % pair for pair in head), b"\r\n", body])
        if len(_LINE_BREAK.findall(data, 0, len(data) - len(body))) != len(head) + 2:
            raise ValueError("A header of the answer holds a line break")
        await self._write(data)

    @property
    def body_left(self) -> bool:
        """Answered with some of the request's body still to read (``drop_the_rest``)."""
        return self.answered and self._parser.their_state is h11.SEND_BODY

    async def drop_the_rest(self) -> None:
        """Read what is left of the request's body, up to DROPPED_BODY_BYTES, and drop it."""
        dropped = 0
        while self.body_left and dropped <= DROPPED_BODY_BYTES:
            message = await self.receive()
            if message["type"] == "http.disconnect":
                return
            dropped += len(message["body"])

    @property
    def keeps_connection(self) -> bool:
        """Answered, the request read to its end, and nobody asked for the connection to end."""
        return self.answered and not (self._close or self._last) and self._parser.their_state is h11.DONE

    async def _write(self, data: bytes) -> None:
        """All of ``data``: at once when the socket takes it (an answer nearly always fits),
        else the rest shielded: half an answer would leave the connection unusable."""
        try:
            sent = os.write(self._stream.socket.fileno(), data)
        except OSError:
            sent = 0  # Full (EAGAIN) or broken: send_all waits, or finds out.
        if sent < len(data):
            with trio.CancelScope(shield=True):
                try:
                    await self._stream.send_all(data[sent:])
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    pass
