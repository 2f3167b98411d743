"""The WebSocket as the room code sees it: ASGI, with batched writes when Hypercorn serves it.

Frames reach the socket as pre-framed bytes (chat.ws.wire). Under Hypercorn they go down through
``chat.ws.hypercorn_adapter`` (a batch per write, and a way to cut a peer that stopped reading); under
any other server, as one ASGI message each.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Protocol
from urllib.parse import parse_qsl

from pydantic import TypeAdapter, ValidationError

from ..protocol import CLOSE_ABNORMAL, CLOSE_TOO_BIG
from ..schemas import Name
from . import wire
from .hypercorn_adapter import HypercornTransport, hypercorn_stream

log = logging.getLogger(__name__)

DEFAULT_DISPLAY_NAME = "Anonymous"
_names = TypeAdapter(Name)


class InvalidName(ValueError):
    pass


class Disconnected(Exception):
    """The peer closed the WebSocket or the connection dropped."""


class Transport(Protocol):
    """The connection under a socket, for what ASGI cannot say: ``HypercornTransport``, or
    ``RawWebSocket`` for a socket served on its connection (chat.connections)."""

    @property
    def direct(self) -> bool: ...

    def write_now(self, data: bytes) -> int: ...

    async def write(self, data: bytes) -> None: ...

    def give_up_unacknowledged_after(self, seconds: float) -> None: ...

    def goodbye_received(self) -> bool: ...

    async def abort(self) -> None: ...


class AsgiSocket:
    __slots__ = (
        "_own_scope",
        "_receive",
        "_send",
        "_transport",
        "closed",
        "disconnected",
        "dropped",
        "frame_max_bytes",
        "scope",
    )

    def __init__(
        self,
        scope: dict[str, Any],
        receive: Any,
        send: Any,
        frame_max_bytes: int | None = None,
        transport: Transport | None = None,
    ) -> None:
        self.scope = scope
        self.frame_max_bytes = frame_max_bytes
        self._receive = receive
        self._send = send
        # A transport handed in comes with a scope made for this socket alone (chat.connections).
        self._own_scope = transport is not None
        if transport is None and (stream := hypercorn_stream(send)) is not None:
            transport = HypercornTransport(stream)
        self._transport = transport
        self.closed = False
        self.disconnected = False
        # The connection ended without the peer's close frame (network lost, peer killed).
        self.dropped = False

    @property
    def write_now(self) -> Callable[[bytes], int] | None:
        """A synchronous, non-blocking write of frame bytes, when this connection has one."""
        return self._transport.write_now if self._transport is not None and self._transport.direct else None

    def give_up_unacknowledged_after(self, seconds: float) -> None:
        """Where the connection is plain TCP under Hypercorn: let the kernel end it once
        what we sent (pings included) has gone unacknowledged for ``seconds``."""
        if self._transport is not None:
            self._transport.give_up_unacknowledged_after(seconds)

    def header(self, name: str) -> str | None:
        wanted = name.lower().encode()
        for key, value in self.scope.get("headers", ()):
            if key.lower() == wanted:
                return bytes(value).decode("latin-1")
        return None

    def entered(self) -> None:
        """Its headers were read on the way in (origin, host): a scope of our own (a socket
        served on its connection) lets go of them rather than keep them for the socket's life."""
        if self._own_scope:
            self.scope.pop("headers", None)

    def arg(self, name: str) -> str | None:
        # Parsed on each call (twice per connection) rather than kept for its whole life.
        query = self.scope.get("query_string", b"").decode("latin-1")
        return dict(parse_qsl(query, keep_blank_values=True)).get(name) or None

    def token(self) -> str | None:
        """The room token from ``ws_url``, also when a client appended ``?display_name=``
        to it with a second "?" (a token never contains one)."""
        raw = self.arg("token")
        return raw.split("?", 1)[0] or None if raw else None

    def display_name(self) -> str:
        """The ``display_name`` query parameter, validated like a REST display name."""
        raw = self.arg("display_name")
        if raw is None:
            return DEFAULT_DISPLAY_NAME
        try:
            return _names.validate_python(raw)
        except ValidationError as error:
            reason = error.errors(include_url=False)[0]["msg"]
            raise InvalidName(f"display_name: {reason}") from None

    async def accept(self) -> None:
        if (await self._receive())["type"] != "websocket.connect":
            raise Disconnected()
        await self._send({"type": "websocket.accept"})

    async def receive(self) -> str | bytes:
        if self.disconnected:
            raise Disconnected()
        event = await self._receive()
        if event["type"] != "websocket.receive":
            self.disconnected = True
            if self._transport is not None:
                self.dropped = not self._transport.goodbye_received()
            else:
                self.dropped = event.get("code") == CLOSE_ABNORMAL
            raise Disconnected()
        text = event.get("text")
        if text is None:
            return event.get("bytes") or b""
        # Hypercorn holds a text frame to the limit in characters, up to 4 bytes each: the
        # limit is in bytes. Only a frame of over a quarter of it in characters needs encoding.
        limit = self.frame_max_bytes
        if limit is not None and len(text) > limit // 4 and len(text.encode()) > limit:
            await self.close(CLOSE_TOO_BIG, "Frame too large")
            raise Disconnected()
        return text

    async def send_frames(self, frames: list[bytes]) -> None:
        if self._transport is not None:
            await self._transport.write(frames[0] if len(frames) == 1 else b"".join(frames))
            return
        for frame in frames:
            await self._send({"type": "websocket.send", "text": wire.text_of(frame)})

    async def close(self, code: int, reason: str) -> None:
        if self.closed:
            return
        self.closed = True
        # A close reason must fit in 123 bytes of UTF-8.
        reason = reason.encode()[:120].decode(errors="ignore")
        await self._send({"type": "websocket.close", "code": code, "reason": reason})

    async def finish_closing(self) -> None:
        """After our close frame: read until the peer answers it. Closing the transport with
        the peer's data still unread would make the kernel reset the connection, and a reset
        can destroy our close frame before the peer reads it."""
        try:
            while True:
                await self.receive()
        except Disconnected:
            pass

    async def abort(self) -> None:
        """Drop the connection now, even while a write to it is stuck."""
        if self._transport is not None:
            await self._transport.abort()
