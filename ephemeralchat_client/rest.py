"""The server's REST API as the client uses it: create or join a room, its details, errors."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import quote

import httpx

from . import e2e

HTTP_TIMEOUT_SECONDS = 15
HINTS = {
    401: "check the password (--password)",
    403: "only the room owner can do that",
    404: "check the room id; the room may have expired or been closed",
    409: "try again when someone leaves",
}


class ClientError(Exception):
    """Something the user can act on; printed as is, exit status 1."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class Session:
    server: str
    room_id: str
    name: str
    ws_url: str
    expires_at: datetime
    password: str | None  # As sent: in a password-keyed e2e room, the join secret.
    owner_token: str | None
    key: bytes | None = None  # An end-to-end encrypted room's key, when this client has it.
    key_in_link: bool = False  # The invite link must carry the key (not derived from the password).


def parse_time(value: Any) -> datetime | None:
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None


def _error(response: httpx.Response, doing: str) -> ClientError:
    try:
        detail = str(response.json().get("detail") or response.reason_phrase)
    except (ValueError, AttributeError):
        detail = response.reason_phrase or "unexpected response"
    hint = HINTS.get(response.status_code)
    message = f"Could not {doing}: {detail} (HTTP {response.status_code})" + (f"; {hint}" if hint else "")
    return ClientError(message, response.status_code)


async def request(http: httpx.AsyncClient, method: str, path: str, doing: str, **kwargs: Any) -> dict[str, Any]:
    """A REST call's JSON answer; any failure as a ClientError that says what went wrong."""
    try:
        response = await http.request(method, path, **kwargs)
    except httpx.HTTPError as error:
        reason = str(error) or type(error).__name__
        raise ClientError(f"Could not {doing}: cannot reach {http.base_url} ({reason})") from None
    if response.status_code >= 400:
        raise _error(response, doing)
    return response.json()


def room_path(room_id: str, suffix: str = "") -> str:
    return f"/rooms/{quote(room_id)}{suffix}"


async def salt_of(http: httpx.AsyncClient, room_id: str) -> str | None:
    """The salt of a room whose e2e key comes from its password (a 401 answer carries it)."""
    try:
        response = await http.get(room_path(room_id))
        return str(response.json()["e2e_salt"]) if response.status_code == 401 else None
    except (httpx.HTTPError, ValueError, KeyError, TypeError):
        return None


async def open_session(http: httpx.AsyncClient, args: argparse.Namespace, server: str) -> Session:
    """Creates the room (as its owner) or joins it, as the command line says."""
    password, key = args.password, getattr(args, "key", None)
    if args.create is not None:
        body: dict[str, Any] = {
            "name": args.create or None,
            "owner_name": args.name,
            "password": password,
            "preferences": {"destroy_on_owner_offline": not args.keep_room},
        }
        if args.e2e:
            body["e2e"] = True
            if password:  # The key comes from the password; the server gets a derived secret.
                body["e2e_salt"] = e2e.new_salt()
                key, password = e2e.password_keys(password, body["e2e_salt"])
                body["password"] = password
            else:
                key = e2e.new_key()
        if args.expiry is not None:
            body["expiry_seconds"] = args.expiry
        if args.max_users is not None:
            body["max_users"] = args.max_users
        created = await request(http, "POST", "/rooms/", "create the room", json=body)
        room_id, token = created["room_id"], created["owner_token"]
    else:
        room_id, token = args.join, None
        salt = await salt_of(http, room_id) if password else None
        if salt is not None:
            key, password = e2e.password_keys(password, salt)
        created = await request(
            http, "POST", room_path(room_id, "/join"), "join the room",
            json={"display_name": args.name, "password": password},
        )
    expires = parse_time(created["expires_at"]) or datetime.now().astimezone()
    in_link = args.create is not None and args.e2e and not args.password
    return Session(server, room_id, args.name, created["ws_url"], expires, password, token, key, in_link)
