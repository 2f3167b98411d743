"""The shapes of the frames a client receives over its WebSocket.

Each frame is encoded once, here, and the same string goes to every member of a room.
"""

from __future__ import annotations

import itertools
import secrets
from dataclasses import dataclass
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
# Never sent: what ASGI reports for a connection lost without a close frame.
CLOSE_ABNORMAL = 1006
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


def hello(room_id: str, connection_id: str, epoch: str, offset: int, recovered: bool | None) -> str:
    """The first frame of every socket: in the room, at ``epoch``/``offset``; ``recovered``
    only when the client asked to resume."""
    extra: dict[str, Any] = {"connection_id": connection_id, "epoch": epoch, "offset": offset}
    if recovered is not None:
        extra["recovered"] = recovered
    return system(room_id, CONNECTED, **extra)


def replayed(frame: str) -> str:
    """A stored message frame as sent from history: the same, marked ``"replayed": true``."""
    return '{"replayed":true,' + frame[1:]


def ack(client_id: str, offset: int) -> str:
    """To a sender alone: its message ``client_id`` is in the room's stream at ``offset``."""
    return encode({"type": "ack", "client_id": client_id, "offset": offset})


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


def error(detail: str, client_id: str | None = None) -> str:
    payload: dict[str, Any] = {"type": "error", "detail": detail}
    if client_id is not None:
        payload["client_id"] = client_id
    payload["timestamp"] = clock.iso(clock.now())
    return encode(payload)


CLIENT_ID_MAX_CHARS = 64


class BadFrame(ValueError):
    """A frame from a client that cannot become a chat message; the text says why."""

    def __init__(self, detail: str, client_id: str | None = None) -> None:
        super().__init__(detail)
        self.client_id = client_id


@dataclass(frozen=True, slots=True)
class Said:
    """A chat message as a client sent it."""

    text: str
    client_id: str | None = None  # Set: acknowledged, and posted once however often resent.


def read_message(frame: str | bytes, max_chars: int) -> Said:
    """The chat message a client frame carries: ``{"type":"message","text":...}`` (with an
    optional ``client_id``) or plain text."""
    if isinstance(frame, bytes):
        raise BadFrame("Binary frames are not supported; send text or JSON")
    text, client_id = frame, None
    if frame[:1] == "{":
        try:
            data = orjson.loads(frame)
        except orjson.JSONDecodeError:
            data = None  # Looks like JSON but is not: deliver it as the plain text it is.
        if isinstance(data, dict):
            client_id = data.get("client_id")
            if client_id is not None and not (
                isinstance(client_id, str) and 0 < len(client_id) <= CLIENT_ID_MAX_CHARS
            ):
                raise BadFrame(f"'client_id' must be a string of 1 to {CLIENT_ID_MAX_CHARS} characters")
            kind = data.get("type", "message")
            if kind != "message":
                raise BadFrame(f"Unknown message type {str(kind)[:40]!r}; use 'message'", client_id)
            candidate = data.get("text")
            if not isinstance(candidate, str):
                raise BadFrame("'text' must be a string", client_id)
            text = candidate
    if not text.strip():
        raise BadFrame("Message text is empty", client_id)
    if len(text) > max_chars:
        raise BadFrame(f"Message is longer than {max_chars} characters", client_id)
    return Said(text, client_id)
