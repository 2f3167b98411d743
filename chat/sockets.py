"""The WebSocket as the room code sees it: ASGI, plus a batched write path through Hypercorn.

Frames reach the socket as pre-framed bytes (chat.wire). When Hypercorn serves us, a batch of
frames goes down as one ``Data`` event on the connection's ``WSStream``: one lock, one
``send_all``, one syscall for everything a member has queued, instead of one trip through the
ASGI send path per frame. That stream is the object whose bound ``app_send`` Hypercorn passes
as the ASGI ``send`` callable. Under any other server the plain ASGI path is used.

The same stream lets us ``abort()`` a connection whose peer stopped reading: Hypercorn
shields its socket writes from cancellation, so only closing the transport frees a writer
stuck in one (``StreamClosed`` closes it without waiting for the send lock).
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import parse_qsl

from hypercorn.protocol.events import Data, StreamClosed
from hypercorn.protocol.ws_stream import ASGIWebsocketState, WSStream
from pydantic import TypeAdapter, ValidationError

from . import wire
from .schemas import Name

log = logging.getLogger(__name__)

DEFAULT_DISPLAY_NAME = "Anonymous"
_names = TypeAdapter(Name)


class InvalidName(ValueError):
    pass


class Disconnected(Exception):
    """The peer closed the WebSocket or the connection dropped."""


def _hypercorn_stream(send: Any) -> WSStream | None:
    stream = getattr(send, "__self__", None)
    return stream if isinstance(stream, WSStream) else None


class AsgiSocket:
    def __init__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        self.scope = scope
        self._receive = receive
        self._send = send
        self._stream = _hypercorn_stream(send)
        self.args = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True))
        self.closed = False
        self.disconnected = False

    @property
    def batched(self) -> bool:
        """True when frames go down in batches straight through Hypercorn."""
        return self._stream is not None

    def header(self, name: str) -> str | None:
        wanted = name.lower().encode()
        for key, value in self.scope.get("headers", ()):
            if key.lower() == wanted:
                return bytes(value).decode("latin-1")
        return None

    def arg(self, name: str) -> str | None:
        return self.args.get(name) or None

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
            raise Disconnected()
        text = event.get("text")
        return text if text is not None else (event.get("bytes") or b"")

    async def send_frames(self, frames: list[bytes]) -> None:
        stream = self._stream
        if stream is None:
            for frame in frames:
                await self._send({"type": "websocket.send", "text": wire.text_of(frame)})
        elif not stream.closed and stream.state == ASGIWebsocketState.CONNECTED:
            await stream.send(Data(stream_id=stream.stream_id, data=b"".join(frames)))

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
        stream = self._stream
        if stream is not None and not stream.closed:
            await stream.send(StreamClosed(stream_id=stream.stream_id))
