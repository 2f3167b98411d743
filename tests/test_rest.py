"""The REST API of the original document: paths, fields, status codes, JSON errors."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from .support import Server, connect, create_room, join_room, running_app, settings


def parse(ts: str) -> datetime:
    assert ts.endswith("Z"), ts
    return datetime.fromisoformat(ts.replace("Z", "+00:00"))


async def test_create_applies_documented_defaults(server: Server) -> None:
    async with server.client() as http:
        room = await create_room(http, owner_name="John Doe")
        assert set(room) >= {"room_id", "ws_url", "expires_at", "owner_token"}
        assert room["ws_url"].startswith(f"{server.ws}/rooms/{room['room_id']}/ws")
        details = (await http.get(f"/rooms/{room['room_id']}")).json()
        assert details["max_users"] == 20
        assert parse(details["expires_at"]) - parse(details["created_at"]) == timedelta(seconds=600)
        assert details["preferences"] == {"destroy_on_owner_offline": True}
        assert details["owner_name"] == "John Doe" and details["has_password"] is False
        assert (details["is_expired"], details["is_full"], details["online_users"]) == (False, False, [])


async def test_create_with_every_field(server: Server) -> None:
    async with server.client() as http:
        room = await create_room(
            http,
            name="My Chat Room",
            owner_name="John",
            password="secret",
            expiry_seconds=60,
            max_users=3,
            preferences={"destroy_on_owner_offline": False},
        )
        assert (await http.get(f"/rooms/{room['room_id']}")).status_code == 401
        details = (await http.get(f"/rooms/{room['room_id']}", params={"password": "secret"})).json()
        assert details["name"] == "My Chat Room" and details["max_users"] == 3
        assert details["has_password"] is True
        assert details["preferences"]["destroy_on_owner_offline"] is False
        assert "password" not in details and "secret" not in str(details)
        assert parse(details["expires_at"]) - parse(details["created_at"]) == timedelta(seconds=60)


@pytest.mark.parametrize(
    "body, field",
    [
        ({"name": "no owner"}, "owner_name"),
        ({"owner_name": ""}, "owner_name"),
        ({"owner_name": "   "}, "owner_name"),
        ({"owner_name": "x" * 51}, "owner_name"),
        ({"owner_name": "bell\x07"}, "owner_name"),
        ({"owner_name": 42}, "owner_name"),
        ({"owner_name": "a", "expiry_seconds": 0}, "expiry_seconds"),
        ({"owner_name": "a", "expiry_seconds": 10**12}, "expiry_seconds"),
        ({"owner_name": "a", "expiry_seconds": "600"}, "expiry_seconds"),
        ({"owner_name": "a", "max_users": 0}, "max_users"),
        ({"owner_name": "a", "max_users": 10**6}, "max_users"),
        ({"owner_name": "a", "max_users": 2.5}, "max_users"),
        ({"owner_name": "a", "name": "n" * 101}, "name"),
        ({"owner_name": "a", "password": "p" * 129}, "password"),
        ({"owner_name": "a", "preferences": {"destroy_on_owner_offline": "yes"}}, "preferences"),
        ({"owner_name": "a", "preferences": []}, "preferences"),
    ],
)
async def test_create_rejects_bad_input_with_422(server: Server, body: dict, field: str) -> None:
    async with server.client() as http:
        response = await http.post("/rooms/", json=body)
        assert response.status_code == 422, response.text
        assert field in response.json()["detail"]


@pytest.mark.parametrize(
    "path, body, detail",
    [
        ("/rooms/", {"owner_name": "   "}, "owner_name must not be empty."),
        ("/rooms/", {"name": "Retro"}, "owner_name is required."),
        ("/rooms/", {"owner_name": "x" * 51}, "owner_name must be at most 50 characters long."),
        ("/rooms/", {"owner_name": "bell\x07"}, "owner_name must not contain control or invisible characters."),
        ("/rooms/", {"owner_name": 42}, "owner_name must be a string."),
        ("/rooms/", {"owner_name": "Ada", "max_users": 2.5}, "max_users must be a whole number."),
        ("/rooms/", {"owner_name": "Ada", "expiry_seconds": "600"}, "expiry_seconds must be a whole number."),
        ("/rooms/", {"owner_name": "Ada", "preferences": []}, "preferences must be a JSON object."),
        (
            "/rooms/",
            {"owner_name": "Ada", "preferences": {"destroy_on_owner_offline": "yes"}},
            "preferences.destroy_on_owner_offline must be true or false.",
        ),
        (
            "/rooms/",
            {"owner_name": "", "password": "p" * 129},
            "owner_name must not be empty. password must be at most 128 characters long.",
        ),
        ("/rooms/", [1, 2], "The request body must be a JSON object."),
        ("/rooms/{room}/join", {"password": "pw"}, "display_name is required."),
        ("/rooms/{room}/join", {"display_name": "Jane", "read_receipts": "no"}, "read_receipts must be true or false."),
        ("/rooms/{room}/messages?since=abc", None, "since must be a whole number."),
        ("/rooms/{room}/messages?limit=0", None, "limit must be at least 1."),
    ],
)
async def test_bad_input_is_answered_in_a_sentence_naming_the_field(
    server: Server, path: str, body: object, detail: str
) -> None:
    async with server.client() as http:
        room = await create_room(http, owner_name="Ada")
        url = path.format(room=room["room_id"])
        response = await http.get(url) if body is None else await http.post(url, json=body)
        assert response.status_code == 422, response.text
        assert response.json() == {"detail": detail}


@pytest.mark.parametrize("raw", [b"{", b"[1, 2]", b'"text"', b"null", b"\xff\xfe", b'{"owner_name": "a"' + b"]" * 5000])
async def test_malformed_bodies_get_422_json(server: Server, raw: bytes) -> None:
    async with server.client() as http:
        response = await http.post("/rooms/", content=raw, headers={"content-type": "application/json"})
        assert response.status_code == 422
        assert response.json()["detail"]


async def test_unicode_names_are_welcome_and_body_without_content_type_is_json(server: Server) -> None:
    async with server.client() as http:
        response = await http.post("/rooms/", content='{"owner_name": "Zoë 😀 李"}'.encode())
        assert response.status_code == 200
        details = (await http.get(f"/rooms/{response.json()['room_id']}")).json()
        assert details["owner_name"] == "Zoë 😀 李"


async def test_oversized_body_is_refused(server: Server) -> None:
    async with server.client() as http:
        response = await http.post("/rooms/", json={"owner_name": "a", "name": "x" * 200_000})
        assert response.status_code == 413
        assert response.json()["detail"]


async def test_join(server: Server) -> None:
    async with server.client() as http:
        room = await create_room(http, password="pw", max_users=1)
        rid = room["room_id"]
        assert (await http.post("/rooms/nope/join", json={"display_name": "a"})).status_code == 404
        assert (await http.post(f"/rooms/{rid}/join", json={"display_name": "a"})).status_code == 401
        wrong = await http.post(f"/rooms/{rid}/join", json={"display_name": "a", "password": "no"})
        assert wrong.status_code == 401 and wrong.json()["detail"] == "Invalid password"
        assert (await http.post(f"/rooms/{rid}/join", json={"password": "pw"})).status_code == 422
        joined = await join_room(http, rid, "Jane", "pw")
        assert joined["expires_at"] == room["expires_at"]
        assert joined["ws_url"].startswith(f"{server.ws}/rooms/{rid}/ws")
        async with connect(room["ws_url"]):
            full = await http.post(f"/rooms/{rid}/join", json={"display_name": "b", "password": "pw"})
            assert full.status_code == 409 and full.json()["detail"] == "Room is full"


async def test_details_errors(server: Server) -> None:
    async with server.client() as http:
        missing = await http.get("/rooms/abc123def456")
        assert missing.status_code == 404 and missing.json() == {"detail": "Room not found"}
        assert (await http.get("/rooms/" + "x" * 5000)).status_code == 404
        room = await create_room(http, password="pw")
        no_password = await http.get(f"/rooms/{room['room_id']}")
        assert no_password.status_code == 401 and no_password.json()["detail"] == "Password required"
        wrong = await http.get(f"/rooms/{room['room_id']}", params={"password": "wrong"})
        assert wrong.status_code == 401 and wrong.json()["detail"] == "Invalid password"


async def test_leave_acknowledges(server: Server) -> None:
    async with server.client() as http:
        room = await create_room(http)
        response = await http.post(f"/rooms/{room['room_id']}/leave", json={"display_name": "Jane Doe"})
        assert response.json() == {"message": "Leave request acknowledged. Disconnect WebSocket to complete leave."}
        assert (await http.post("/rooms/nope/leave", json={"display_name": "a"})).status_code == 404


async def test_close_needs_the_owner_token(server: Server) -> None:
    async with server.client() as http:
        room = await create_room(http, owner_name="John Doe")
        other = await create_room(http, owner_name="John Doe")
        rid = room["room_id"]
        member_token = (await join_room(http, rid, "Jane"))["ws_url"].split("token=")[1]
        attempts = [
            {"json": {"display_name": "John Doe"}},
            {"json": {"owner_token": member_token}},
            {"json": {"owner_token": other["owner_token"]}},
            {"json": {"owner_token": room["owner_token"][:-2] + "xx"}},
            {"headers": {"Authorization": f"Bearer {member_token}"}},
            {},
        ]
        for attempt in attempts:
            response = await http.post(f"/rooms/{rid}/close", **attempt)
            assert response.status_code == 403, attempt
            assert "owner_token" in response.json()["detail"]
        assert (await http.get(f"/rooms/{rid}")).status_code == 200
        closed = await http.post(f"/rooms/{rid}/close", headers={"Authorization": f"Bearer {room['owner_token']}"})
        assert closed.json() == {"message": "Room closed successfully"}
        assert (await http.get(f"/rooms/{rid}")).status_code == 404
        by_body = await http.post(f"/rooms/{other['room_id']}/close", json={"owner_token": other["owner_token"]})
        assert by_body.status_code == 200
        assert (await http.post(f"/rooms/{rid}/close", json={"owner_token": room["owner_token"]})).status_code == 404


async def test_create_answers_with_or_without_the_trailing_slash(server: Server) -> None:
    async with server.client() as http:
        response = await http.post("/rooms", json={"owner_name": "a"})
        assert response.status_code == 200 and response.json()["room_id"]
        spec = (await http.get("/openapi.json")).json()
        operation_ids = [op["operationId"] for path in spec["paths"].values() for op in path.values()]
        assert len(operation_ids) == len(set(operation_ids))


async def test_unknown_paths_and_methods_answer_json(server: Server) -> None:
    async with server.client() as http:
        assert (await http.get("/nothing")).json()["detail"]
        wrong_method = await http.delete("/rooms/")
        assert wrong_method.status_code == 405 and wrong_method.json()["detail"]


async def test_openapi_and_docs(server: Server) -> None:
    async with server.client() as http:
        spec = (await http.get("/openapi.json")).json()
        assert {
            "/rooms/",
            "/rooms/{room_id}/join",
            "/rooms/{room_id}",
            "/rooms/{room_id}/leave",
            "/rooms/{room_id}/close",
        } <= set(spec["paths"])
        create = spec["paths"]["/rooms/"]["post"]
        assert "requestBody" in create
        docs = await http.get("/docs")
        assert docs.status_code == 200 and "openapi.json" in docs.text


async def test_room_limits_follow_the_configuration() -> None:
    config = settings(default_expiry_seconds=30, max_expiry_seconds=60, default_max_users=3, max_users_limit=4)
    async with running_app(config) as configured, configured.client() as http:
        room = await create_room(http)
        details = (await http.get(f"/rooms/{room['room_id']}")).json()
        assert details["max_users"] == 3
        assert parse(details["expires_at"]) - parse(details["created_at"]) == timedelta(seconds=30)
        too_long = await http.post("/rooms/", json={"owner_name": "a", "expiry_seconds": 61})
        assert too_long.status_code == 422 and too_long.json()["detail"] == "expiry_seconds must be between 1 and 60."
        too_many = await http.post("/rooms/", json={"owner_name": "a", "max_users": 5})
        assert too_many.status_code == 422 and "max_users" in too_many.json()["detail"]
