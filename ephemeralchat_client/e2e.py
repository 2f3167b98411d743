"""End-to-end encrypted rooms: the one message format every client speaks (docs/protocol.md).

The key is 32 random bytes that travel only in the invite link's fragment (``#room=ID&key=…``),
which browsers never send to a server; or, for a password room created with a salt, it is
derived from the password so that what the server checks at join can never decrypt:

    master = PBKDF2-HMAC-SHA256(password, "ephemeralchat-e2e-v1\\0" + salt, 600000, 32)
    key    = HKDF-SHA256(master, info="ephemeralchat-e2e-v1 key", 32)
    join   = base64url(HKDF-SHA256(master, info="ephemeralchat-e2e-v1 join", 32))  # sent as the password

A message is AES-256-GCM under the key with a fresh random 96-bit IV. Its plaintext is the
UTF-8 text, a 0x80 byte and zeros up to a power of two of at least 64 bytes (lengths leak
less); its associated data binds the room and the sender as the server stamps them, so an
envelope cannot be replayed into another room or shown under another member's name.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import secrets
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

VERSION = "ephemeralchat-e2e-v1"
KEY_BYTES = 32
IV_BYTES = 12
SALT_BYTES = 16
SMALLEST_PADDED = 64
PBKDF2_ITERATIONS = 600_000
CANNOT_DECRYPT = "cannot decrypt this message (wrong or missing key)"


def encode(data: bytes) -> str:
    """Unpadded base64url, the encoding of every binary value in the protocol."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def decode(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as error:
        raise ValueError("not unpadded base64url") from error


def new_key() -> bytes:
    return secrets.token_bytes(KEY_BYTES)


def new_salt() -> str:
    return encode(secrets.token_bytes(SALT_BYTES))


def read_key(text: str) -> bytes:
    """A key as a link's fragment carries it; ValueError when it is not one."""
    key = decode(text)
    if len(key) != KEY_BYTES:
        raise ValueError(f"an end-to-end key is {KEY_BYTES} bytes")
    return key


def fingerprint(key: bytes) -> str:
    """A short digest of the key that members compare out of band (e.g. "3f2a 91c0 77de 0b14")."""
    digest = hashlib.sha256(f"{VERSION} fingerprint\0".encode() + key).hexdigest()[:16]
    return " ".join(digest[i : i + 4] for i in range(0, 16, 4))


def password_keys(password: str, salt: str) -> tuple[bytes, str]:
    """The key a password and the room's public salt give, and the password to send instead."""
    master = hashlib.pbkdf2_hmac(
        "sha256", password.encode(), f"{VERSION}\0".encode() + decode(salt), PBKDF2_ITERATIONS, KEY_BYTES
    )

    def expand(purpose: str) -> bytes:
        return HKDF(hashes.SHA256(), KEY_BYTES, salt=None, info=f"{VERSION} {purpose}".encode()).derive(master)

    return expand("key"), encode(expand("join"))


def associated_data(room_id: str, connection_id: str, display_name: str) -> bytes:
    return "\0".join((VERSION, room_id, connection_id, display_name)).encode()


def pad(data: bytes) -> bytes:
    size = SMALLEST_PADDED
    while size < len(data) + 1:
        size *= 2
    return data + b"\x80" + bytes(size - len(data) - 1)


def unpad(data: bytes) -> bytes:
    body = data.rstrip(b"\0")
    if not body.endswith(b"\x80"):
        raise ValueError("bad padding")
    return body[:-1]


def seal(
    key: bytes, room_id: str, connection_id: str, display_name: str, text: str, iv: bytes | None = None
) -> dict[str, str]:
    """The envelope of ``text`` sent by this member: ``{"ciphertext", "iv"}``."""
    iv = secrets.token_bytes(IV_BYTES) if iv is None else iv
    sealed = AESGCM(key).encrypt(iv, pad(text.encode()), associated_data(room_id, connection_id, display_name))
    return {"ciphertext": encode(sealed), "iv": encode(iv)}


def open_message(key: bytes | None, frame: dict[str, Any]) -> str | None:
    """The text of a relayed envelope, or None when it cannot be decrypted (wrong or missing
    key, or an envelope moved to another room or sender)."""
    if key is None:
        return None
    try:
        plain = AESGCM(key).decrypt(
            decode(str(frame["iv"])),
            decode(str(frame["ciphertext"])),
            associated_data(str(frame["room_id"]), str(frame["connection_id"]), str(frame["display_name"])),
        )
        return unpad(plain).decode()
    except (InvalidTag, KeyError, ValueError):
        return None
