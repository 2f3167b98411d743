"""End-to-end encrypted rooms, as the server sees them: envelopes it checks but cannot open.

A member of an ``e2e`` room sends ``{"type": "message", "ciphertext": …, "iv": …}``: AES-256-GCM
under a key that lives only in the invite link's fragment (docs/protocol.md, "End-to-end
encrypted rooms"). The server checks the envelope's shape and size, never its content, and
relays it with its usual fields. A frame with plaintext ``text`` in such a room is refused, so
a misconfigured client cannot leak what its user wrote.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass

import orjson

from . import clock
from .protocol import BadFrame, ReadUpTo, Said, Typing, encode, message_id, read_client_id, read_frame

IV_BYTES = 12
TAG_BYTES = 16
# Plaintexts are padded to a power of two of at least this many bytes, so lengths leak less.
SMALLEST_PADDED = 64
SALT_MIN_BYTES = 16
SALT_MAX_BYTES = 64
_BASE64URL = re.compile(r"[A-Za-z0-9_-]*")

REFUSED_TEXT = (
    "This room is end-to-end encrypted: send 'ciphertext' and 'iv', never 'text' "
    "(your client needs the key from the invite link)"
)


@dataclass(frozen=True, slots=True)
class Sealed:
    """A chat message the server cannot read, as the client sent it."""

    ciphertext: str
    iv: str
    client_id: str | None = None


def padded_size(plaintext_bytes: int) -> int:
    """The bucket a plaintext of this many bytes is padded to (one 0x80 byte, then zeros)."""
    size = SMALLEST_PADDED
    while size < plaintext_bytes + 1:
        size *= 2
    return size


def largest_ciphertext(max_chars: int) -> int:
    """Bytes of the longest envelope a message of ``max_chars`` characters can need (UTF-8: 4 a char)."""
    return padded_size(4 * max_chars) + TAG_BYTES


def decode_base64url(value: object) -> bytes | None:
    """The bytes of unpadded base64url text, or None when it is not that."""
    if not isinstance(value, str) or len(value) % 4 == 1 or not _BASE64URL.fullmatch(value):
        return None
    try:
        return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except (binascii.Error, ValueError):
        return None


def read_sealed_frame(frame: str | bytes, max_chars: int) -> Sealed | Typing | ReadUpTo:
    """What a client frame in an ``e2e`` room says: an envelope, typing, or a read receipt."""
    try:
        data = orjson.loads(frame) if isinstance(frame, str) and frame[:1] == "{" else None
    except orjson.JSONDecodeError:
        data = None
    if not isinstance(data, dict):
        raise BadFrame(REFUSED_TEXT)  # Plain text, which an e2e room never carries.
    if data.get("type", "message") != "message":
        said = read_frame(frame, max_chars)
        assert not isinstance(said, Said)  # Only a frame of type message is one.
        return said
    return read_envelope(data, max_chars, read_client_id(data))


def read_envelope(data: dict[str, object], max_chars: int, client_id: str | None) -> Sealed:
    """The envelope a client frame of an ``e2e`` room carries; BadFrame says what is wrong."""
    if "text" in data:
        raise BadFrame(REFUSED_TEXT, client_id)
    iv = decode_base64url(data.get("iv"))
    if iv is None or len(iv) != IV_BYTES:
        raise BadFrame(f"'iv' must be {IV_BYTES} random bytes in unpadded base64url", client_id)
    sealed = decode_base64url(data.get("ciphertext"))
    if sealed is None:
        raise BadFrame("'ciphertext' must be unpadded base64url", client_id)
    body = len(sealed) - TAG_BYTES
    if len(sealed) > largest_ciphertext(max_chars):
        raise BadFrame(f"Message is longer than {max_chars} characters", client_id)
    if body < SMALLEST_PADDED or body & (body - 1):
        # Unpadded ciphertexts would tell everyone the exact length of what was written.
        raise BadFrame(
            f"'ciphertext' must hold a plaintext padded to a power of two of at least {SMALLEST_PADDED} bytes",
            client_id,
        )
    return Sealed(str(data["ciphertext"]), str(data["iv"]), client_id)


def sealed_message(room_id: str, connection_id: str, display_name: str, sealed: Sealed) -> str:
    """The frame every member gets: the envelope unchanged, with the usual message fields."""
    return encode(
        {
            "type": "message",
            "id": message_id(),
            "ciphertext": sealed.ciphertext,
            "iv": sealed.iv,
            "connection_id": connection_id,
            "display_name": display_name,
            "room_id": room_id,
            "timestamp": clock.iso(clock.now()),
        }
    )


def valid_salt(value: str) -> bool:
    salt = decode_base64url(value)
    return salt is not None and SALT_MIN_BYTES <= len(salt) <= SALT_MAX_BYTES
