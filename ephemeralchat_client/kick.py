"""The owner's hand from the terminal: ``/kick NAME`` removes a member from the room."""

from __future__ import annotations

import unicodedata
from typing import Any

import httpx

from .rest import ClientError, Session, request, room_path


def name_key(name: str) -> str:
    """A name as the server compares names: "Jane", "JANE" and full-width "JANE" (U+FF2A...) are one."""
    return unicodedata.normalize("NFKC", name).casefold()


def member_named(name: str, present: dict[str, str], online_users: list[dict[str, Any]]) -> str | None:
    """The connection id of the member called ``name``: from the presence frames seen
    (connection id -> name), else from the room's details (members online before we came)."""
    key = name_key(name)
    for connection_id, shown in present.items():
        if name_key(shown) == key:
            return connection_id
    for user in online_users:
        if name_key(str(user.get("display_name", ""))) == key:
            return str(user["connection_id"])
    return None


async def kick(http: httpx.AsyncClient, session: Session, connection_id: str) -> None:
    if not session.owner_token:
        raise ClientError("Only the room owner can remove members")
    await request(
        http,
        "POST",
        room_path(session.room_id, f"/members/{connection_id}/remove"),
        "remove the member",
        headers={"Authorization": f"Bearer {session.owner_token}"},
    )
