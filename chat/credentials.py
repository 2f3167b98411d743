"""Password hashes and signed room tokens.

A token grants one display name one role (member or owner) in one room until the room
expires. It is an HMAC over its claims, so any instance holding SECRET_KEY can check it
without shared state.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from typing import Literal, NamedTuple

import orjson
import trio
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from . import clock

Role = Literal["owner", "member"]

# argon2id at OWASP's recommended floor: strong enough offline, cheap enough to verify
# a join in ~20 ms of a worker thread.
_hasher = PasswordHasher(time_cost=2, memory_cost=19_456, parallelism=1)


async def hash_password(password: str) -> str:
    return await trio.to_thread.run_sync(_hasher.hash, password)


async def password_matches(password_hash: str, password: str) -> bool:
    def verify() -> bool:
        try:
            return _hasher.verify(password_hash, password)
        except (VerificationError, InvalidHashError):
            return False

    return await trio.to_thread.run_sync(verify)


class Grant(NamedTuple):  # NamedTuple: see RoomRecord
    room_id: str
    display_name: str
    role: Role
    expires_at: float

    @property
    def is_owner(self) -> bool:
        return self.role == "owner"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class TokenSigner:
    def __init__(self, secret: str) -> None:
        key = hashlib.sha256(b"ephemeralchat-token:" + secret.encode()).digest()
        # Keyed once: each signature copies it (the key's pads are not worked out again).
        self._keyed = hmac.new(key, digestmod=hashlib.sha256)

    def _sign(self, body: str) -> str:
        mac = self._keyed.copy()
        mac.update(body.encode())
        return _b64(mac.digest())

    def issue(self, grant: Grant) -> str:
        claims: dict[str, str | float] = {
            "r": grant.room_id,
            "n": grant.display_name,
            "o": grant.role,
            "e": round(grant.expires_at, 3),
        }
        if grant.role == "member":
            # Each join its own token, so two people who join with one name are two
            # senders (one gets the name) and the owner can remove one without the other.
            claims["j"] = secrets.token_urlsafe(6)
        body = _b64(orjson.dumps(claims))
        return f"{body}.{self._sign(body)}"

    def verify(self, token: str, room_id: str) -> Grant | None:
        """The grant the token carries, if it is authentic, for ``room_id`` and unexpired."""
        body, _, signature = token.partition(".")
        if not body or not hmac.compare_digest(signature.encode(), self._sign(body).encode()):
            return None
        try:
            claims = orjson.loads(_unb64(body))
            grant = Grant(str(claims["r"]), str(claims["n"]), claims["o"], float(claims["e"]))
        except (ValueError, KeyError, TypeError):
            return None
        if grant.room_id != room_id or grant.role not in ("owner", "member"):
            return None
        if grant.expires_at <= clock.now():
            return None
        return grant
