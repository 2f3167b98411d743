"""One REST request served on its connection (chat.connections): ASGI ``receive`` and ``send``
over the connection's h11 parser.

Hypercorn serves a request with a task and a memory channel of its own, an h11 event per step
and a locked, shielded write per ASGI message (benchmarks/RESULTS.md: about 40% of a room
creation's server time). Room creation and joining come in bursts, so chat.connections serves
them itself, in the connection's task, through chat.rest_lane as before: the body is read when
the route asks for it (with a ``100 Continue`` first when the client waits for one, as Hypercorn
sends it), and the answer is made by h11 with Hypercorn's ``date`` and ``server`` headers and
written in one go.
"""

from __future__ import annotations

import os
from itertools import chain
from typing import Any

import h11
import trio
from hypercorn.config import Config
from hypercorn.utils import build_and_validate_headers

from .ws.raw import MAX_RECV


class RawExchange:
    """One request and its answer, on a connection this task alone reads and writes."""

    __slots__ = ("_close", "_config", "_parser", "_start", "_stream", "answered")

    def __init__(self, stream: trio.SocketStream, parser: h11.Connection, config: Config, *, close: bool) -> None:
        self._stream, self._parser, self._config = stream, parser, config
        self._close = close  # The connection's request budget is spent: say so, and end it.
        self._start: dict[str, Any] | None = None
        self.answered = False

    async def receive(self) -> dict[str, Any]:
        parser = self._parser
        while True:
            try:
                event = parser.next_event()
            except h11.RemoteProtocolError:
                return {"type": "http.disconnect"}
            if event is h11.NEED_DATA:
                if parser.client_is_waiting_for_100_continue:
                    headers = self._config.response_headers("h11")
                    await self._write(parser.send(h11.InformationalResponse(status_code=100, headers=headers)) or b"")
                try:
                    data = await self._stream.receive_some(MAX_RECV)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    data = b""
                parser.receive_data(data)
                continue
            if isinstance(event, h11.Data):
                return {"type": "http.request", "body": bytes(event.data), "more_body": True}
            if isinstance(event, h11.EndOfMessage):
                return {"type": "http.request", "body": b"", "more_body": False}
            return {"type": "http.disconnect"}

    async def send(self, message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            self._start = message
            return
        if message["type"] != "http.response.body" or self._start is None or message.get("more_body", False):
            raise RuntimeError(f"Unexpected ASGI message {message['type']!r}: answers here go whole")
        await self.answer(self._start["status"], self._start["headers"], message.get("body", b""))

    async def answer(self, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
        head = list(chain(build_and_validate_headers(headers), self._config.response_headers("h11")))
        if self._close:
            head.append((b"connection", b"close"))
        parser = self._parser
        self.answered = True
        try:
            data = parser.send(h11.Response(status_code=status, headers=head)) or b""
            if body:
                data += parser.send(h11.Data(data=body)) or b""
            data += parser.send(h11.EndOfMessage()) or b""
        except h11.LocalProtocolError:
            if parser.their_state is not h11.ERROR:
                raise
            return  # The client broke the protocol: nothing can be said to it.
        with trio.CancelScope(shield=True):  # Half an answer would leave the connection unusable.
            await self._write(data)

    async def _write(self, data: bytes) -> None:
        try:
            sent = os.write(self._stream.socket.fileno(), data)
        except OSError:
            sent = 0  # Full (EAGAIN) or broken: send_all waits, or finds out.
        if sent < len(data):
            try:
                await self._stream.send_all(data[sent:])
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass
