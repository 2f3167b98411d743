"""Where the client is in the room's stream, and the messages the server has not acknowledged.

The server numbers a room's messages (offsets within an epoch), acknowledges every message
that carries a ``client_id`` and posts a ``client_id`` only once however often it arrives. So
the client remembers the epoch and the newest offset it has shown, reconnects from there,
never shows an offset twice, and resends what was not acknowledged under the same id.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

import orjson


def _offset(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


class Delivery:
    def __init__(self) -> None:
        # A random prefix per process: ids of two clients of one person never collide.
        self.prefix = secrets.token_hex(4)
        self.sent = 0
        self.epoch: str | None = None
        self.offset = 0
        self.pending: dict[str, str] = {}  # client_id -> text, in the order typed
        # In an end-to-end encrypted room: text -> envelope, sealed for the current connection
        # at every (re)send, since a new connection may stamp another connection_id.
        self.seal: Callable[[str], dict[str, str]] | None = None

    def url(self, ws_url: str) -> str:
        """``ws_url`` for the next connection: a resume from the newest offset once in the room."""
        if self.epoch is None:
            return ws_url
        resume = urlencode({"since": self.offset, "epoch": self.epoch})
        return f"{ws_url}{'&' if '?' in ws_url else '?'}{resume}"

    def entered(self, hello: dict[str, Any]) -> bool | None:
        """Takes the hello's position. None on first entry; on a resume, whether nothing was lost."""
        resumed = self.epoch is not None
        recovered = hello.get("recovered") is True
        if resumed and not recovered:
            # Nothing is replayed after a failed resume: live messages continue past the hello's offset.
            self.offset = _offset(hello.get("offset")) or 0
        self.epoch = str(hello.get("epoch") or "")
        return recovered if resumed else None

    def resynced(self, frame: dict[str, Any]) -> None:
        """A system frame with a position (not the hello): the server lost part of the room's
        stream while this client stayed connected; messages go on after the offset it gives."""
        if "epoch" in frame and frame.get("recovered") is False:
            self.epoch = str(frame["epoch"])
            self.offset = _offset(frame.get("offset")) or 0

    def fresh(self, frame: dict[str, Any]) -> bool:
        """True for a message not shown yet; False for one this client already has."""
        offset = _offset(frame.get("offset"))
        if offset is None:
            return True
        if offset <= self.offset:
            return False
        self.offset = offset
        return True

    def send(self, text: str) -> str:
        """The frame for a newly typed message, pending until acknowledged."""
        self.sent += 1
        client_id = f"{self.prefix}-{self.sent}"
        self.pending[client_id] = text
        return self.frame(client_id)

    def frame(self, client_id: str) -> str:
        text = self.pending[client_id]
        body = {"text": text} if self.seal is None else self.seal(text)
        return orjson.dumps({"type": "message", **body, "client_id": client_id}).decode()

    def acknowledged(self, client_id: Any) -> None:
        self.pending.pop(str(client_id), None)

    def refused(self, client_id: Any) -> str | None:
        """The text of a pending message the server refused; it is not resent."""
        return self.pending.pop(str(client_id), None)

    def unacknowledged(self) -> list[str]:
        """Frames to send again on a new connection, oldest first, with their first client_id."""
        return [self.frame(client_id) for client_id in self.pending]
