"""How rooms end: closed by the owner, the owner going offline, expiry; and who gets in."""

from __future__ import annotations

from urllib.parse import quote

import pytest
import trio
from trio_websocket import ConnectionClosed, open_websocket_url

from chat import protocol

from .support import Client, Server, connect, create_room, join_room


async def closed_with(client: Client) -> tuple[int, str]:
    """Reads until the server closes the socket; the close code and reason."""
    with trio.fail_after(10):
        while True:
            try:
                await client.ws.get_message()
            except ConnectionClosed as closed:
                return closed.reason.code, closed.reason.reason or ""


async def refused(url: str) -> tuple[int, str]:
    async with open_websocket_url(url) as ws:
        return await closed_with(Client(ws))


async def test_owner_closes_the_room(server: Server) -> None:
    async with server.client() as http:
        room = await create_room(http, owner_name="John")
        rid = room["room_id"]
        async with connect(room["ws_url"]) as owner, connect((await join_room(http, rid, "Jane"))["ws_url"]) as jane:
            await jane.receive_until(event="user_online", display_name="Jane")
            response = await http.post(f"/rooms/{rid}/close", json={"owner_token": room["owner_token"]})
            assert response.status_code == 200
            for member in (owner, jane):
                notice = await member.receive_until(type="system")
                assert notice["message"] == "Room has been closed by owner" and notice["room_id"] == rid
                assert await closed_with(member) == (1000, "Room closed")
        assert (await http.get(f"/rooms/{rid}")).status_code == 404
        assert await refused(room["ws_url"]) == (1008, "Room not found")


async def test_owner_going_offline_destroys_the_room(server: Server) -> None:
    async with server.client() as http:
        room = await create_room(http, owner_name="John")
        rid = room["room_id"]
        async with connect((await join_room(http, rid, "Jane"))["ws_url"]) as jane:
            async with connect(room["ws_url"]) as owner:
                await owner.receive_until(event="user_online", display_name="John")
                await jane.receive_until(event="user_online", display_name="John")
            offline = await jane.receive()
            assert (offline["event"], offline["display_name"], offline["online_count"]) == ("user_offline", "John", 1)
            notice = await jane.receive()
            assert notice["type"] == "system" and notice["message"] == "Room owner went offline shutting down room"
            assert await closed_with(jane) == (1000, "Room closed")
        assert (await http.get(f"/rooms/{rid}")).status_code == 404


async def test_room_survives_its_owner_when_asked_to(server: Server) -> None:
    async with server.client() as http:
        room = await create_room(http, owner_name="John", preferences={"destroy_on_owner_offline": False})
        rid = room["room_id"]
        async with connect((await join_room(http, rid, "Jane"))["ws_url"]) as jane:
            async with connect(room["ws_url"]):
                await jane.receive_until(event="user_online", display_name="John")
            await jane.receive_until(event="user_offline", display_name="John")
            await jane.say("still open")
            assert (await jane.receive())["text"] == "still open"
        assert (await http.get(f"/rooms/{rid}")).status_code == 200


async def test_room_expires_at_its_deadline(server: Server, autojump_clock: trio.testing.MockClock) -> None:
    async with server.client() as http:
        room = await create_room(http, expiry_seconds=300)
        rid = room["room_id"]
        idle = await create_room(http, expiry_seconds=120)
        async with connect(room["ws_url"]) as owner, connect((await join_room(http, rid, "Jane"))["ws_url"]) as jane:
            await jane.receive_until(event="user_online", display_name="Jane")
            start = trio.current_time()
            for member in (owner, jane):
                notice = await member.receive_until(within=400, type="system")
                assert notice["message"] == protocol.EXPIRED
                assert await closed_with(member) == (1000, "Room expired")
            assert 299 <= trio.current_time() - start <= 301
        assert (await http.get(f"/rooms/{rid}")).status_code == 404
        assert (await http.get(f"/rooms/{idle['room_id']}")).status_code == 404
        assert await refused(room["ws_url"]) == (1008, "Room not found")


async def test_unknown_room_closes_with_1008(server: Server) -> None:
    assert (await refused(f"{server.ws}/rooms/abc123def456/ws?display_name=X"))[0] == 1008


async def test_full_room_refuses_the_next_socket(server: Server) -> None:
    async with server.client() as http:
        room = await create_room(http, max_users=2)
        rid = room["room_id"]
        async with connect(room["ws_url"]) as owner, connect(f"{server.ws}/rooms/{rid}/ws?display_name=A"):
            assert await refused(f"{server.ws}/rooms/{rid}/ws?display_name=B") == (1008, "Room is full")
            details = (await http.get(f"/rooms/{rid}")).json()
            assert details["online_users_count"] == 2 and details["is_full"] is True
            await owner.say("the two of us")
            assert (await owner.receive_until(type="message"))["text"] == "the two of us"


async def test_admission_is_atomic_under_a_burst(server: Server) -> None:
    async with server.client() as http:
        room = await create_room(http, max_users=5)
        url = f"{server.ws}/rooms/{room['room_id']}/ws?display_name=racer"
        outcomes: list[str] = []
        everyone_answered = trio.Event()

        async def racer() -> None:
            async with open_websocket_url(url) as ws:
                try:
                    outcomes.append((await Client(ws).receive())["message"])
                except ConnectionClosed as closed:
                    outcomes.append(closed.reason.reason or "")
                if len(outcomes) == 30:
                    everyone_answered.set()
                await everyone_answered.wait()

        async with trio.open_nursery() as nursery:
            for _ in range(30):
                nursery.start_soon(racer)
        assert outcomes.count("Connected to room") == 5
        assert outcomes.count("Room is full") == 25


async def test_bare_display_name_connection_works_for_open_rooms(server: Server) -> None:
    async with server.client() as http:
        room = await create_room(http, owner_name="John")
        rid = room["room_id"]
        async with connect(f"{server.ws}/rooms/{rid}/ws?display_name=Guest") as guest:
            online = await guest.receive()
            assert online["display_name"] == "Guest"
        async with connect(f"{server.ws}/rooms/{rid}/ws") as anonymous:
            assert (await anonymous.receive())["display_name"] == "Anonymous"


@pytest.mark.parametrize("name", ["x" * 51, "tab\there", "   "])
async def test_bad_display_name_is_refused(server: Server, name: str) -> None:
    async with server.client() as http:
        room = await create_room(http)
        code, reason = await refused(f"{server.ws}/rooms/{room['room_id']}/ws?display_name={quote(name)}")
        assert code == 1008 and "display_name" in reason


async def test_password_room_needs_a_token(server: Server) -> None:
    async with server.client() as http:
        room = await create_room(http, password="pw")
        rid = room["room_id"]
        code, reason = await refused(f"{server.ws}/rooms/{rid}/ws?display_name=Eve")
        assert code == 1008 and "password" in reason
        other = await create_room(http, password="pw")
        foreign = other["ws_url"].replace(other["room_id"], rid)
        assert (await refused(foreign))[0] == 1008
        tampered = room["ws_url"][:-3] + ("A" if room["ws_url"][-3] != "A" else "B") + room["ws_url"][-2:]
        assert (await refused(tampered))[0] == 1008
        async with connect((await join_room(http, rid, "Jane", "pw"))["ws_url"]) as jane:
            assert (await jane.receive())["display_name"] == "Jane"


async def test_owner_display_name_does_not_make_an_owner(server: Server) -> None:
    async with server.client() as http:
        room = await create_room(http, owner_name="John")
        rid = room["room_id"]
        async with connect(room["ws_url"]) as owner:
            # The owner's name is the owner's: an impostor by name does not even get in.
            code, reason = await refused(f"{server.ws}/rooms/{rid}/ws?display_name=John")
            assert code == 1008 and "already taken" in reason
            await owner.say("room still here")
            assert (await owner.receive_until(type="message"))["text"] == "room still here"
            refused_close = await http.post(f"/rooms/{rid}/close", json={"display_name": "John"})
            assert refused_close.status_code == 403
        assert (await http.get(f"/rooms/{rid}")).status_code == 404


async def test_owner_url_with_another_display_name_stays_owner(server: Server) -> None:
    """The token, not the query, says who you are: ws_url plus display_name= as the document allows."""
    async with server.client() as http:
        room = await create_room(http, owner_name="John")
        async with connect(room["ws_url"] + "&display_name=Mallory") as owner:
            assert (await owner.receive())["display_name"] == "John"
            # Appended with a second "?" by a client that did not parse the URL: still the owner.
            async with connect(room["ws_url"] + "?display_name=Mallory") as again:
                assert (await again.receive())["display_name"] == "John"
        assert (await http.get(f"/rooms/{room['room_id']}")).status_code == 404
