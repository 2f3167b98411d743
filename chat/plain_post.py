"""The common room creation or join request, read without h11.

h11 reads a request head in about 80 µs here (its event objects, state machine and per-header
checks), a tenth of a room creation's server time. Nearly every such request is the same
plain shape: ``POST``, HTTP/1.1, a ``Content-Length`` body, nothing to negotiate. This reads
that shape with two regular expressions taken from h11's own grammar, and only that shape:
any head it does not recognise in full (another method or version, an ``Expect``,
``Transfer-Encoding``, ``Upgrade``, a missing ``Host``, a second ``Content-Length``, folded or
malformed lines, bare line feeds) is left to h11 and answered exactly as before
(chat.connections). So a head read here is one h11 reads the same way: the same method,
target, version, headers (names lower-cased, values without surrounding white space) and
body length.

``KnownLength`` then stands in for h11's connection while the body is read: the part of its
interface chat.raw_http uses (events, states, the bytes left over for the next request).
"""

from __future__ import annotations

import re
from typing import Any

import h11

Headers = list[tuple[bytes, bytes]]

# RFC 9110 token and field-value, as h11's _abnf module writes them.
_TOKEN = rb"[-!#$%&'*+.^_`|~0-9A-Za-z]+"
_VCHAR_OR_OBS = rb"[\x21-\x7e\x80-\xff]"
_REQUEST_LINE = re.compile(rb"POST (/[\x21-\x7e]*) HTTP/1\.1\r\n")
_FIELD_VALUE = rb"(?:" + _VCHAR_OR_OBS + rb"(?:[ \t\x21-\x7e\x80-\xff]*" + _VCHAR_OR_OBS + rb")?)?"
_HEADER_LINE = re.compile(rb"(" + _TOKEN + rb"):[ \t]*(" + _FIELD_VALUE + rb")[ \t]*\r\n")
# What only h11 handles: body framing other than a length, 100-continue, protocol changes.
_LEFT_TO_H11 = frozenset({b"transfer-encoding", b"expect", b"upgrade"})
# A longer length is no body we take (MAX_CONTENT_LENGTH is far below), nor an int to make.
_LENGTH_DIGITS = 18


class PlainPost:
    """A plain POST's head, with the attributes of h11's Request that chat.connections reads."""

    __slots__ = ("body_starts", "headers", "length", "target")

    method = b"POST"
    http_version = b"1.1"

    def __init__(self, target: bytes, headers: Headers, length: int, body_starts: int) -> None:
        self.target, self.headers, self.length, self.body_starts = target, headers, length, body_starts


def plain_post(data: bytes | bytearray, head_ends: int, most: int) -> PlainPost | None:
    """The POST whose head is ``data[:head_ends]`` (up to its blank line's CRLF CRLF, not
    included), if it has the plain shape in full and is at most ``most`` bytes; else None."""
    if head_ends + 4 > most:
        return None
    line = _REQUEST_LINE.match(data, 0, head_ends + 2)
    if line is None:
        return None
    headers: Headers = []
    length: int | None = None
    hosts = 0
    at = line.end()
    while at < head_ends + 2:
        header = _HEADER_LINE.match(data, at, head_ends + 2)
        if header is None:
            return None
        name, value = header[1].lower(), header[2]
        if name in _LEFT_TO_H11:
            return None
        if name == b"content-length":
            if length is not None or not value.isdigit() or len(value) > _LENGTH_DIGITS:
                return None
            length = int(value)
        elif name == b"host":
            hosts += 1
        headers.append((name, value))
        at = header.end()
    if length is None or hosts != 1:
        return None
    return PlainPost(line[1], headers, length, head_ends + 4)


class KnownLength:
    """The body of a ``PlainPost``, read as h11 would read it, as far as chat.raw_http and
    chat.connections ask: ``next_event``, ``receive_data``, ``their_state``, ``trailing_data``."""

    __slots__ = ("_buffer", "_closed", "_ended", "_failed", "_left")

    # Taken by h11 alone: a plain POST never asks for it.
    client_is_waiting_for_100_continue = False

    def __init__(self, after_head: bytes | bytearray, length: int, closed: bool) -> None:
        self._buffer = bytearray(after_head)
        self._left = length
        self._closed = closed
        self._ended = self._failed = False

    @property
    def their_state(self) -> Any:
        if self._failed:
            return h11.ERROR
        return h11.DONE if self._ended else h11.SEND_BODY

    def receive_data(self, data: bytes) -> None:
        if data:
            self._buffer += data
        else:
            self._closed = True

    def next_event(self) -> Any:
        if self._ended:
            return h11.PAUSED
        if self._left == 0:
            self._ended = True
            return h11.EndOfMessage()
        if self._buffer:
            chunk = bytes(self._buffer[: self._left])
            del self._buffer[: len(chunk)]
            self._left -= len(chunk)
            return h11.Data(data=chunk)
        if self._closed:
            self._failed = True
            raise h11.RemoteProtocolError("peer closed connection without sending complete message body")
        return h11.NEED_DATA

    def whole_body(self) -> bytes | None:
        """The whole body, taken at once if all of it has arrived (None, taking nothing, if
        not): what ``next_event`` would hand out as Data then EndOfMessage, without making them."""
        if self._ended or len(self._buffer) < self._left:
            return None
        body = bytes(self._buffer[: self._left])
        del self._buffer[: self._left]
        self._left, self._ended = 0, True
        return body

    def send(self, event: Any) -> bytes:
        raise RuntimeError("a plain POST is answered by chat.raw_http, not through its parser")

    @property
    def trailing_data(self) -> tuple[bytes, bool]:
        """What arrived behind the body (the next request's first bytes), and whether the
        client closed its side."""
        return bytes(self._buffer), self._closed
