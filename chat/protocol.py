"""The shapes of the frames a client receives over its WebSocket.

Each frame is encoded once, here, and the same string goes to every member of a room.
"""

from __future__ import annotations

import itertools
import secrets
from typing import Any

import orjson

from . import clock

CONNECTED = "Connected to room"
CLOSED_BY_OWNER = "Room has been closed by owner"
OWNER_OFFLINE = "Room owner went offline shutting down room"
EXPIRED = "Room has expired"
SHUTTING_DOWN = "Server is shutting down; reconnect to continue"

# WebSocket close codes (RFC 6455 section 7.4.1).
CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
CLOSE_POLICY = 1008
CLOSE_TOO_BIG = 1009
CLOSE_INTERNAL = 1011
CLOSE_TRY_AGAIN = 1013

_instance = secrets.token_hex(4)
_sequence = itertools.count(1)


def encode(payload: dict[str, Any]) -> str:
    return orjson.dumps(payload).decode()


def message_id() -> str:
    """Unique across instances without coordination: instance prefix + local counter."""
    return f"{_instance}-{next(_sequence)}"


def system(room_id: str, message: str, **extra: Any) -> str:
    return encode(
        {
            "type": "system",
            "message": message,
            "room_id": room_id,
            **extra,
            "timestamp": clock.iso(clock.now()),
        }
    )


def chat_message(room_id: str, connection_id: str, display_name: str, text: str) -> str:
    return encode(
        {
            "type": "message",
            "id": message_id(),
            "text": text,
            "connection_id": connection_id,
            "display_name": display_name,
            "room_id": room_id,
            "timestamp": clock.iso(clock.now()),
        }
    )


def presence(room_id: str, event: str, connection_id: str, display_name: str, online_count: int) -> str:
    return encode(
        {
            "type": "presence",
            "event": event,
            "connection_id": connection_id,
            "display_name": display_name,
            "room_id": room_id,
            "timestamp": clock.iso(clock.now()),
            "online_count": online_count,
        }
    )


def error(detail: str) -> str:
    return encode({"type": "error", "detail": detail, "timestamp": clock.iso(clock.now())})


class BadFrame(ValueError):
    """A frame from a client that cannot become a chat message; the text says why."""


def message_text(frame: str | bytes, max_chars: int) -> str:
    """The chat text carried by a client frame: ``{"type":"message","text":...}`` or plain text."""
    if isinstance(frame, bytes):
        raise BadFrame("Binary frames are not supported; send text or JSON")
    text = frame
    if frame[:1] == "{":
        try:
            data = orjson.loads(frame)
        except orjson.JSONDecodeError:
            data = None  # Looks like JSON but is not: deliver it as the plain text it is.
        if isinstance(data, dict):
            kind = data.get("type", "message")
            if kind != "message":
                raise BadFrame(f"Unknown message type {str(kind)[:40]!r}; use 'message'")
            candidate = data.get("text")
            if not isinstance(candidate, str):
                raise BadFrame("'text' must be a string")
            text = candidate
    if not text.strip():
        raise BadFrame("Message text is empty")
    if len(text) > max_chars:
        raise BadFrame(f"Message is longer than {max_chars} characters")
    return text
