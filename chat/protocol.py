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
# To a member the owner removed, then its close reason (code 1008).
REMOVED_YOU = "You were removed from the room by its owner"
REMOVED_REASON = "Removed by the room owner"


def removed(display_name: str) -> str:
    """The system line everyone else sees when the owner removed a member."""
    return f"{display_name} was removed by the room owner"


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


def hello(
    room_id: str,
    connection_id: str,
    display_name: str,
    epoch: str,
    offset: int,
    recovered: bool | None,
    e2e: bool = False,
) -> str:
    """The first frame of every socket: in the room as ``display_name`` (as stamped on the
    member's messages), at ``epoch``/``offset``; ``recovered`` only when the client asked to
    resume; ``e2e`` only in an end-to-end encrypted room."""
    extra: dict[str, Any] = {
        "connection_id": connection_id,
        "display_name": display_name,
        "epoch": epoch,
        "offset": offset,
    }
    if recovered is not None:
        extra["recovered"] = recovered
    if e2e:
        extra["e2e"] = True
    return system(room_id, CONNECTED, **extra)


RESYNCED = "Some messages may be missing: the server lost part of this room's history"


def resync(room_id: str, epoch: str, offset: int) -> str:
    """To every member after the server lost part of the room's stream: it is at ``epoch``
    now, and the messages after ``offset`` follow (``recovered`` false, as in a hello)."""
    return system(room_id, RESYNCED, epoch=epoch, offset=offset, recovered=False)


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


def presence(room_id: str, event: str, connection_id: str, display_name: str, is_owner: bool = False) -> str:
    """A presence frame without its ``online_count``, which the bus adds as it publishes it
    (``Bus.announce``), so that the count follows the order members get frames in."""
    return encode(
        {
            "type": "presence",
            "event": event,
            "connection_id": connection_id,
            "display_name": display_name,
            "room_id": room_id,
            "timestamp": clock.iso(clock.now()),
            "is_owner": is_owner,
        }
    )


# A member's typing and read frames start with these, the sender's connection id next: a
# LiveRoom reads who sent one (``relayed_from``) without decoding it, to skip that member.
TYPING_PREFIX = '{"type":"typing","connection_id":"'
READ_PREFIX = '{"type":"read","connection_id":"'
RELAYED = (TYPING_PREFIX, READ_PREFIX)


def typing(room_id: str, connection_id: str, display_name: str) -> str:
    """To the room's other members: ``display_name`` is composing a message."""
    return encode(
        {
            "type": "typing",
            "connection_id": connection_id,
            "display_name": display_name,
            "room_id": room_id,
            "timestamp": clock.iso(clock.now()),
        }
    )


def read_receipt(connection_id: str, display_name: str, offset: int) -> str:
    """To the room's other members: ``display_name`` has seen every message up to ``offset``."""
    return encode({"type": "read", "connection_id": connection_id, "display_name": display_name, "offset": offset})


def relayed_from(frame: str) -> tuple[str, bool] | None:
    """Who sent a typing or read frame, and whether it is a read; None for any other frame."""
    if not frame.startswith(RELAYED):
        return None
    is_read = frame.startswith(READ_PREFIX)
    start = len(READ_PREFIX if is_read else TYPING_PREFIX)
    return frame[start : frame.find('"', start)], is_read


def error(detail: str, client_id: str | None = None) -> str:
    payload: dict[str, Any] = {"type": "error", "detail": detail}
    if client_id is not None:
        payload["client_id"] = client_id
    payload["timestamp"] = clock.iso(clock.now())
    return encode(payload)


CLIENT_ID_MAX_CHARS = 64
# Largest offset a read frame may name: offsets are counters, never this long.
OFFSET_MAX = 10**18


NOT_SEALED = "This room is not end-to-end encrypted: send 'text'"


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


@dataclass(frozen=True, slots=True)
class Typing:
    """The member is composing a message."""


@dataclass(frozen=True, slots=True)
class ReadUpTo:
    """The member has seen every message up to ``offset``."""

    offset: int


TYPING = Typing()


def read_client_id(data: dict[str, Any]) -> str | None:
    """A message's optional ``client_id``; BadFrame when it is not a short string."""
    client_id = data.get("client_id")
    if client_id is not None and not (isinstance(client_id, str) and 0 < len(client_id) <= CLIENT_ID_MAX_CHARS):
        raise BadFrame(f"'client_id' must be a string of 1 to {CLIENT_ID_MAX_CHARS} characters")
    return client_id


def read_frame(frame: str | bytes, max_chars: int) -> Said | Typing | ReadUpTo:
    """What a client frame says: a chat message, as ``{"type":"message","text":...}`` (with an
    optional ``client_id``) or plain text; ``{"type":"typing"}``; or ``{"type":"read","offset":N}``."""
    if isinstance(frame, bytes):
        raise BadFrame("Binary frames are not supported; send text or JSON")
    text, client_id = frame, None
    if frame[:1] == "{":
        try:
            data = orjson.loads(frame)
        except orjson.JSONDecodeError:
            data = None  # Looks like JSON but is not: deliver it as the plain text it is.
        if isinstance(data, dict):
            kind = data.get("type", "message")
            if kind == "typing":
                return TYPING
            if kind == "read":
                offset = data.get("offset")
                if not (isinstance(offset, int) and not isinstance(offset, bool) and 0 <= offset <= OFFSET_MAX):
                    raise BadFrame("'offset' must be a whole number of at least 0 (the newest message you have seen)")
                return ReadUpTo(offset)
            client_id = read_client_id(data)
            if kind != "message":
                raise BadFrame(
                    f"Unknown message type {str(kind)[:40]!r}; use 'message', 'typing' or 'read'", client_id
                )
            candidate = data.get("text")
            if candidate is None and "ciphertext" in data:
                raise BadFrame(NOT_SEALED, client_id)
            if not isinstance(candidate, str):
                raise BadFrame("'text' must be a string", client_id)
            text = candidate
    if not text.strip():
        raise BadFrame("Message text is empty", client_id)
    if len(text) > max_chars:
        raise BadFrame(f"Message is longer than {max_chars} characters", client_id)
    return Said(text, client_id)


def read_message(frame: str | bytes, max_chars: int) -> Said:
    """The chat message a client frame carries (see ``read_frame``); BadFrame for any other."""
    said = read_frame(frame, max_chars)
    if not isinstance(said, Said):
        raise BadFrame("Expected a chat message")
    return said
