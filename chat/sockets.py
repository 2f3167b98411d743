"""The WebSocket as the room code sees it: a thin adapter over Quart's websocket object."""

from __future__ import annotations

import logging

from pydantic import TypeAdapter, ValidationError
from quart.wrappers import Websocket

from .schemas import Name

log = logging.getLogger(__name__)

DEFAULT_DISPLAY_NAME = "Anonymous"
_names = TypeAdapter(Name)


class InvalidName(ValueError):
    pass


class QuartSocket:
    def __init__(self, ws: Websocket) -> None:
        self._ws = ws
        self.closed = False

    def arg(self, name: str) -> str | None:
        return self._ws.args.get(name) or None

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
        await self._ws.accept()

    async def receive(self) -> str | bytes:
        return await self._ws.receive()

    async def send(self, frame: str) -> None:
        await self._ws.send(frame)

    async def close(self, code: int, reason: str) -> None:
        if self.closed:
            return
        self.closed = True
        try:
            await self._ws.close(code, reason[:120])  # A close reason must fit in 123 bytes.
        except Exception:  # The peer is already gone; there is nobody left to tell.
            log.debug("close after disconnect", exc_info=True)
