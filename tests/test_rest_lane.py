"""Room creation and joining on plain ASGI (chat/rest_lane.py) answer exactly as Quart did.

One server serves the app as it runs, and under /quart/ the same app through Quart alone, as
every request went before; each request is sent both ways and the answers compared: status,
headers (but the date) and body (but what is new per call: room ids, tokens, expiry times).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import httpx
import pytest
import trio
from hypercorn.trio import serve
from quart_trio import QuartTrio

from chat.__main__ import hypercorn_config
from chat.bus import RoomRecord
from chat.bus.memory import MemoryBus
from chat.config import Settings
from chat.http import create_app

from .support import settings

ORIGIN = "https://friends.example"


@asynccontextmanager
async def both_ways(config: Settings, bus: MemoryBus | None = None) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(config, bus)
    quart_alone = partial(QuartTrio.asgi_app, app)

    async def asgi(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"].startswith("/quart/"):
            scope = {**scope, "path": scope["path"].removeprefix("/quart"), "raw_path": scope["raw_path"][6:]}
            await quart_alone(scope, receive, send)
        else:
            await app.asgi_app(scope, receive, send)

    async with trio.open_nursery() as nursery:
        binds = await nursery.start(lambda task_status: serve(asgi, hypercorn_config(config), task_status=task_status))
        async with httpx.AsyncClient(base_url=binds[0], timeout=10) as http:
            yield http
        nursery.cancel_scope.cancel()


def without_date(response: httpx.Response) -> list[tuple[str, str]]:
    return [(name, value) for name, value in response.headers.multi_items() if name != "date"]


def comparable(response: httpx.Response) -> tuple[int, list[tuple[str, str]], Any]:
    assert response.headers["content-length"] == str(len(response.content))
    # A token's length varies with its expiry time, and the body's length with it.
    headers = [(name, "n" if name == "content-length" else value) for name, value in without_date(response)]
    body = response.json()
    for field in ("room_id", "owner_token", "ws_url", "expires_at"):
        if isinstance(body, dict) and field in body:
            body[field] = field  # new per call: compared by shape below
    if isinstance(body, dict) and "ws_url" in response.json():
        assert response.json()["ws_url"].startswith("ws://")
    return response.status_code, headers, body


async def same_answer(http: httpx.AsyncClient, path: str, **request: Any) -> httpx.Response:
    lane = await http.post(path, **request)
    quart = await http.post("/quart" + path, **request)
    assert comparable(lane) == comparable(quart), path
    return lane


@pytest.mark.parametrize(
    "request_",
    [
        {"json": {"owner_name": "Ada", "name": "Retro", "expiry_seconds": 60, "max_users": 3}},
        {"json": {"owner_name": "Ada", "password": "pw", "e2e": True, "e2e_salt": "c2FsdHNhbHRzYWx0c2FsdA"}},
        {"json": {"owner_name": "Ada"}, "headers": {"Origin": ORIGIN}},
        {"json": {"owner_name": "Ada"}, "headers": {"Origin": "https://elsewhere.example"}},
        {"content": '{"owner_name": "Zoë 😀 李"}'.encode()},
        {"json": {"name": "no owner"}},
        {"json": {"owner_name": "", "password": "p" * 129}},
        {"json": {"owner_name": "a", "max_users": 10**6}},
        {"json": {"owner_name": "a", "e2e_salt": "c2FsdHNhbHRzYWx0c2FsdA"}},
        {"json": [1, 2]},
        {"content": b"{", "headers": {"content-type": "application/json"}},
        {"content": b"\xff\xfe"},
        {"content": b""},
        {"json": {"owner_name": "a", "name": "x" * 200_000}},
    ],
)
@pytest.mark.parametrize("path", ["/rooms/", "/rooms"])
async def test_creating_a_room_answers_as_quart_did(path: str, request_: dict[str, Any]) -> None:
    async with both_ways(settings(allowed_origins=ORIGIN)) as http:
        await same_answer(http, path, **request_)


async def test_joining_a_room_answers_as_quart_did() -> None:
    async with both_ways(settings(allowed_origins=ORIGIN)) as http:
        room = (await http.post("/rooms/", json={"owner_name": "Ada", "password": "pw", "max_users": 5})).json()
        sealed = {"owner_name": "Bo", "password": "pw", "e2e": True, "e2e_salt": "c2FsdHNhbHRzYWx0c2FsdA"}
        e2e = (await http.post("/rooms/", json=sealed)).json()
        rid = room["room_id"]
        joined = await same_answer(http, f"/rooms/{rid}/join", json={"display_name": "Jane", "password": "pw"})
        assert f"/rooms/{rid}/ws?token=" in joined.json()["ws_url"]
        for path, request_ in [
            (f"/rooms/{rid}/join", {"json": {"display_name": "Jo", "password": "pw", "read_receipts": False}}),
            (f"/rooms/{rid}/join", {"json": {"display_name": "Jo", "password": "pw"}, "headers": {"Origin": ORIGIN}}),
            (f"/rooms/{rid}/join", {"json": {"display_name": "Jo"}}),
            (f"/rooms/{rid}/join", {"json": {"display_name": "Jo", "password": "no"}}),
            (f"/rooms/{e2e['room_id']}/join", {"json": {"display_name": "Jo", "password": "no"}}),
            (f"/rooms/{rid}/join", {"json": {"display_name": "ada", "password": "pw"}}),
            (f"/rooms/{rid}/join", {"json": {"password": "pw"}}),
            (f"/rooms/{rid}/join", {"json": {"display_name": "Jo", "read_receipts": "no"}}),
            (f"/rooms/{rid}/join/", {"json": {"display_name": "Jo", "password": "pw"}}),
            ("/rooms/nope/join", {"json": {"display_name": "Jo"}}),
            ("/rooms/" + "x" * 5000 + "/join", {"json": {"display_name": "Jo"}}),
        ]:
            await same_answer(http, path, **request_)


async def test_a_client_over_its_rate_is_told_when_to_come_back_either_way() -> None:
    async with both_ways(settings(rooms_per_minute=2)) as http:
        for path in ("/rooms/", "/quart/rooms/"):
            assert (await http.post(path, json={"owner_name": "Ada"})).status_code == 200
        lane = await http.post("/rooms/", json={"name": "no owner"})
        quart = await http.post("/quart/rooms/", json={"name": "no owner"})
        assert lane.status_code == quart.status_code == 429  # the limit comes before the body's faults
        assert lane.json() == quart.json() and "try again in" in lane.json()["detail"]
        assert int(lane.headers["Retry-After"]) >= 59 and int(quart.headers["Retry-After"]) >= 59


async def test_a_fault_of_ours_is_a_500_in_json_and_counted_either_way() -> None:
    class BrokenBus(MemoryBus):
        async def create_room(self, room: RoomRecord) -> None:
            raise RuntimeError("disk on fire")

    async with both_ways(settings(), BrokenBus()) as http:
        answered = await same_answer(http, "/rooms/", json={"owner_name": "Ada"})
        assert answered.status_code == 500 and answered.json() == {"detail": "Internal server error"}
        metrics = (await http.get("/metrics")).text
        assert 'ephemeralchat_errors_total{kind="unhandled"} 2.0' in metrics


async def test_other_methods_on_the_lanes_paths_are_quarts() -> None:
    async with both_ways(settings(allowed_origins=ORIGIN)) as http:
        for method in ("GET", "DELETE", "OPTIONS"):
            lane = await http.request(method, "/rooms/", headers={"Origin": ORIGIN})
            quart = await http.request(method, "/quart/rooms/", headers={"Origin": ORIGIN})
            assert (lane.status_code, without_date(lane), lane.content) == (
                quart.status_code,
                without_date(quart),
                quart.content,
            ), method
