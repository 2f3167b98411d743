"""The public API as a client sees it: create a room, join it, and the WebSocket address to dial."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import httpx

REST_TIMEOUT_SECONDS = 30.0


class ApiError(RuntimeError):
    """The server answered a REST call with something other than success."""


@dataclass(frozen=True)
class Room:
    index: int
    room_id: str
    base: str
    owner_name: str
    owner_ws_url: str


@dataclass(frozen=True)
class MemberSpec:
    """One WebSocket member, as handed to a worker process (plain data, so it pickles)."""

    room: int
    room_id: str
    name: str
    base: str
    # Set for the owner (the ws_url create returned); everyone else joins first.
    ws_url: str | None = None
    # Global sender id when this member sends traffic.
    sender: int | None = None
    # Stops reading after its hello (the slow-consumer scenario).
    stall: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def with_display_name(ws_url: str, name: str) -> str:
    """``ws_url`` exactly as the server gave it, plus ``display_name=`` in its query."""
    parts = urlsplit(ws_url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "display_name"]
    query.append(("display_name", name))
    return urlunsplit(parts._replace(query=urlencode(query)))


def room_body(index: int, max_users: int, expiry_seconds: int) -> dict[str, Any]:
    return {
        "name": f"bench{index}",
        "owner_name": f"owner{index}",
        "max_users": max_users,
        "expiry_seconds": expiry_seconds,
    }


def _checked(response: httpx.Response) -> dict[str, Any]:
    if response.status_code >= 300:
        raise ApiError(
            f"{response.request.method} {response.request.url.path} -> {response.status_code} {response.text[:200]}"
        )
    body: dict[str, Any] = response.json()
    return body


def create_rooms(urls: list[str], count: int, max_users: int, expiry_seconds: int) -> list[Room]:
    """Rooms 0..count-1, room i created through ``urls[i % len(urls)]`` (parent side, sequential)."""
    rooms = []
    with httpx.Client(timeout=REST_TIMEOUT_SECONDS) as client:
        for index in range(count):
            base = urls[index % len(urls)]
            body = room_body(index, max_users, expiry_seconds)
            created = _checked(client.post(f"{base}/rooms/", json=body))
            rooms.append(Room(index, created["room_id"], base, body["owner_name"], created["ws_url"]))
    return rooms


async def join(client: httpx.AsyncClient, member: MemberSpec) -> str:
    """The member's own ws_url, from POST /rooms/{id}/join on the instance it will dial."""
    answer = _checked(
        await client.post(f"{member.base}/rooms/{member.room_id}/join", json={"display_name": member.name})
    )
    ws_url: str = answer["ws_url"]
    return ws_url


async def create_one(client: httpx.AsyncClient, base: str, index: int, expiry_seconds: int) -> None:
    _checked(await client.post(f"{base}/rooms/", json=room_body(index, 20, expiry_seconds)))


def layout(
    rooms: list[Room],
    urls: list[str],
    members: int,
    senders: int,
    stall_member: int | None = None,
) -> list[MemberSpec]:
    """Every member of every room, owners first (the reference ties ownership to being online).

    Member j of room i joins through ``urls[(i + j) % len(urls)]``, so with several instances
    every room spans all of them and each message crosses the shared backend.
    """
    specs: list[MemberSpec] = []
    for j in range(members):
        for room in rooms:
            owner = j == 0
            specs.append(
                MemberSpec(
                    room=room.index,
                    room_id=room.room_id,
                    name=room.owner_name if owner else f"m{room.index}_{j}",
                    base=room.base if owner else urls[(room.index + j) % len(urls)],
                    ws_url=room.owner_ws_url if owner else None,
                    sender=room.index * senders + j if j < senders else None,
                    stall=j == stall_member,
                )
            )
    return specs
