"""Defences against hostile clients: passwords, limits, origins, headers, logs."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import re
from pathlib import Path
from urllib.parse import quote, urljoin

import orjson
import trio
import trio.testing
from trio_websocket import ConnectionClosed, open_websocket_url

import chat
from chat.bus import keys
from chat.bus.memory import MemoryBus

from .redis_server import open_redis_server
from .support import Client, connect, create_room, join_room, running_app, server_process, settings
from .test_lifecycle import closed_with, refused


async def test_passwords_are_stored_only_as_argon2id_hashes() -> None:
    bus = MemoryBus()
    async with running_app(bus=bus) as server, server.client() as http:
        room = await create_room(http, password="correct horse battery")
        stored = await bus.get_room(room["room_id"])
        assert stored is not None and stored.password_hash is not None
        assert stored.password_hash.startswith("$argon2id$")
        assert "correct horse battery" not in repr(stored)


async def test_redis_holds_no_plaintext_password() -> None:
    async with open_redis_server() as redis, server_process({"REDIS_URL": redis.url}) as running:
        async with running.server.client() as http:
            room = await create_room(http, password="correct horse battery")
        meta = await redis.command("HGETALL", keys.room_meta(room["room_id"]))
        assert any(value.startswith("$argon2id$") for value in meta.values())
        assert "correct horse battery" not in str(meta)


async def test_an_unset_secret_key_is_generated_with_a_warning() -> None:
    async with server_process({"SECRET_KEY": ""}) as running, running.server.client() as http:
        room = await create_room(http)
        async with connect(room["ws_url"]):
            pass
    assert any("SECRET_KEY is not set" in line for line in running.output)


async def test_message_rate_refuses_excess_and_closes_a_flood(autojump_clock: trio.testing.MockClock) -> None:
    config = settings(messages_per_second=2, message_burst=5, flood_debt=10)
    async with running_app(config) as server, server.client() as http:
        room = await create_room(http, owner_name="Bob")
        rid = room["room_id"]
        async with connect(room["ws_url"]) as bob, connect(f"{server.ws}/rooms/{rid}/ws?display_name=Eve") as eve:
            await bob.receive_until(event="user_online", display_name="Eve")
            for i in range(6):
                await eve.ws.send_message(f"burst {i}")
            for i in range(5):
                assert (await bob.receive())["text"] == f"burst {i}"
            assert "Slow down" in (await eve.receive_until(type="error"))["detail"]
            await trio.sleep(1)  # the bucket refills at 2 a second
            await eve.ws.send_message("after a pause")
            assert (await bob.receive())["text"] == "after a pause"
            with contextlib.suppress(ConnectionClosed):  # closed while still flooding
                for i in range(20):
                    await eve.ws.send_message(f"flood {i}")
            code, reason = await closed_with(eve)
            assert (code, reason) == (1008, "Flooding: far too many messages")
            offline = await bob.receive_until(type="presence")
            assert (offline["event"], offline["display_name"]) == ("user_offline", "Eve")
            await bob.say("the room goes on")
            assert (await bob.receive_until(type="message"))["text"] == "the room goes on"


async def test_an_oversized_frame_closes_only_that_socket() -> None:
    async with running_app() as server, server.client() as http:
        room = await create_room(http)
        rid = room["room_id"]
        async with connect(room["ws_url"]) as owner:
            async with open_websocket_url(f"{server.ws}/rooms/{rid}/ws?display_name=Big", max_message_size=2**21) as ws:
                big = Client(ws)
                await big.receive()
                await ws.send_message("x" * 70_000)
                assert (await closed_with(big))[0] == 1009
            await owner.say("still here")
            assert (await owner.receive_until(type="message"))["text"] == "still here"


async def test_room_creations_and_joins_are_limited_per_address() -> None:
    async with running_app(settings(rooms_per_minute=2, joins_per_minute=3)) as server, server.client() as http:
        room = await create_room(http)
        await create_room(http)
        limited = await http.post("/rooms/", json={"owner_name": "a"})
        assert limited.status_code == 429 and "at most 2 a minute" in limited.json()["detail"]
        assert 1 <= int(limited.headers["Retry-After"]) <= 60
        for _ in range(3):
            await join_room(http, room["room_id"], "Ann")
        refused_join = await http.post(f"/rooms/{room['room_id']}/join", json={"display_name": "Ann"})
        assert refused_join.status_code == 429 and "Retry-After" in refused_join.headers
        # The count is said first: no look at rooms, names or bodies past the limit.
        for path, body in (
            ("/rooms/no-such-room/join", {"display_name": "Ann"}),
            (f"/rooms/{room['room_id']}/join", {"display_name": "owner"}),
            (f"/rooms/{room['room_id']}/join", {"display_name": ""}),
        ):
            assert (await http.post(path, json=body)).status_code == 429, path


async def test_joins_are_limited_across_instances_through_redis() -> None:
    async with open_redis_server() as redis:
        env = {"REDIS_URL": redis.url, "JOINS_PER_MINUTE": "3"}
        async with server_process(env) as one, server_process(env) as two:
            async with one.server.client() as first, two.server.client() as second:
                room = await create_room(first)
                codes = [
                    (await client.post(f"/rooms/{room['room_id']}/join", json={"display_name": name})).status_code
                    for client, name in ((first, "Ann"), (second, "owner"), (first, "Cid"), (second, "Dan"))
                ]
                unknown = await first.post("/rooms/no-such-room/join", json={"display_name": "Eve"})
        # The owner's name is taken (409), and still counted; the fourth is one too many.
        assert codes == [200, 409, 200, 429] and unknown.status_code == 429


async def test_limits_hold_across_instances_through_redis() -> None:
    async with open_redis_server() as redis:
        env = {"REDIS_URL": redis.url, "ROOMS_PER_MINUTE": "3"}
        async with server_process(env) as one, server_process(env) as two:
            async with one.server.client() as first, two.server.client() as second:
                codes = [(await client.post("/rooms/", json={"owner_name": "a"})).status_code
                         for client in (first, second, first, second)]
        assert codes == [200, 200, 200, 429]


async def test_a_proxy_can_be_trusted_for_the_client_address_and_scheme() -> None:
    async with running_app(settings(trusted_proxy_hops=1, rooms_per_minute=1)) as server, server.client() as http:
        for address in ("203.0.113.1", "203.0.113.2"):
            response = await http.post("/rooms/", json={"owner_name": "a"},
                                       headers={"X-Forwarded-For": address, "X-Forwarded-Proto": "https"})
            assert response.status_code == 200
            assert response.json()["ws_url"].startswith("wss://")
        again = await http.post("/rooms/", json={"owner_name": "a"}, headers={"X-Forwarded-For": "203.0.113.1"})
        assert again.status_code == 429


async def test_capacity_of_an_instance() -> None:
    async with running_app(settings(max_connections=2, max_live_rooms=1)) as server, server.client() as http:
        room = await create_room(http, preferences={"destroy_on_owner_offline": False})
        other = await create_room(http)
        async with connect(room["ws_url"]):
            assert await refused(other["ws_url"]) == (1013, "Server is at capacity; try again later")
            async with connect(f"{server.ws}/rooms/{room['room_id']}/ws?display_name=B"):
                code, _ = await refused(f"{server.ws}/rooms/{room['room_id']}/ws?display_name=C")
                assert code == 1013


async def test_websocket_origins() -> None:
    async with running_app(settings(allowed_origins="https://chat.example.org")) as server, server.client() as http:
        room = await create_room(http, preferences={"destroy_on_owner_offline": False})
        url = f"{server.ws}/rooms/{room['room_id']}/ws?display_name=B"
        host = server.url.removeprefix("http://")

        async def origin(value: str) -> tuple[int, str] | str:
            async with open_websocket_url(url, extra_headers=[("Origin", value)]) as ws:
                try:
                    return (await Client(ws).receive())["message"]
                except Exception:
                    return await closed_with(Client(ws))

        assert await origin("https://evil.example") == (1008, "Origin not allowed")
        assert await origin(f"http://{host}") == "Connected to room"
        assert await origin("https://chat.example.org") == "Connected to room"


async def test_cors_only_for_configured_origins() -> None:
    async with running_app(settings(allowed_origins="https://chat.example.org")) as server, server.client() as http:
        preflight = await http.options(
            "/rooms/", headers={"Origin": "https://chat.example.org", "Access-Control-Request-Method": "POST"}
        )
        assert preflight.headers["Access-Control-Allow-Origin"] == "https://chat.example.org"
        assert "POST" in preflight.headers["Access-Control-Allow-Methods"]
        other = await http.post("/rooms/", json={"owner_name": "a"}, headers={"Origin": "https://evil.example"})
        assert "Access-Control-Allow-Origin" not in other.headers
    async with running_app() as server, server.client() as http:
        default = await http.post("/rooms/", json={"owner_name": "a"}, headers={"Origin": "https://chat.example.org"})
        assert "Access-Control-Allow-Origin" not in default.headers


async def test_security_headers() -> None:
    async with running_app() as server, server.client() as http:
        page = await http.get("/")
        assert "default-src 'self'" in page.headers["Content-Security-Policy"]
        assert page.headers["X-Content-Type-Options"] == "nosniff"
        assert page.headers["Referrer-Policy"] == "no-referrer"
        assert page.headers["X-Frame-Options"] == "DENY"
        api = await http.get("/rooms/nope")
        assert api.headers["X-Content-Type-Options"] == "nosniff"
        assert api.headers["Referrer-Policy"] == "no-referrer"


async def test_the_page_scripts_are_served_as_javascript_from_this_server() -> None:
    """The client's ES modules, followed import by import: browsers refuse a module script that
    is not served as JavaScript (nosniff), and the page's policy allows scripts from here only."""
    async with running_app() as server, server.client() as http:
        page = await http.get("/")
        assert "script-src 'self'" in page.headers["Content-Security-Policy"]
        pending = [urljoin("/", src) for src in re.findall(r'<script type="module" src="([^"]+)"', page.text)]
        assert pending, "the page loads no module script"
        seen: set[str] = set()
        while pending:
            path = pending.pop()
            if path in seen:
                continue
            seen.add(path)
            script = await http.get(path)
            assert script.status_code == 200, path
            assert script.headers["Content-Type"].startswith("text/javascript"), (path, script.headers)
            imports = re.findall(r'^import .* from "([^"]+)";$', script.text, re.M)
            pending += [urljoin(path, target) for target in imports]
        assert all(path.startswith("/static/") for path in seen), seen
        assert len(seen) > 1, "the entry module imports the others"


async def test_every_script_and_stylesheet_is_pinned_by_its_digest() -> None:
    """Subresource Integrity: the stylesheet and the entry module carry their digests, the import
    map every module's; each matches the bytes served; the policy admits that one inline script."""
    async with running_app() as server, server.client() as http:
        page = await http.get("/")
        css = re.search(r'<link rel="stylesheet" href="(/static/app.css)" integrity="([^"]+)">', page.text)
        entry = re.search(r'<script type="module" src="(/static/js/main.js)" integrity="([^"]+)">', page.text)
        importmap = re.search(r'<script type="importmap">([^<]+)</script>', page.text)
        assert css and entry and importmap, page.text
        pinned = orjson.loads(importmap.group(1))["integrity"]
        assert pinned[entry.group(1)] == entry.group(2)
        modules = sorted(path.name for path in (Path(chat.__file__).parent / "static" / "js").glob("*.js"))
        assert sorted(url.rsplit("/", 1)[1] for url in pinned) == modules
        for url, digest in [*pinned.items(), css.groups()]:
            served = (await http.get(url)).content
            assert digest == "sha384-" + base64.b64encode(hashlib.sha384(served).digest()).decode(), url
        policy = page.headers["Content-Security-Policy"]
        own_hash = base64.b64encode(hashlib.sha256(importmap.group(1).encode()).digest()).decode()
        assert f"script-src 'self' 'sha256-{own_hash}';" in policy and "unsafe-inline" not in policy


async def test_tokens_and_passwords_stay_out_of_the_logs() -> None:
    async with server_process({"LOG_LEVEL": "INFO"}) as running:
        async with running.server.client() as http:
            room = await create_room(http, password="s3cret-pass")
            joined = await join_room(http, room["room_id"], "Ann", "s3cret-pass")
            await http.get(f"/rooms/{room['room_id']}", params={"password": quote("s3cret-pass")})
            async with connect(room["ws_url"]) as owner, connect(joined["ws_url"]):
                await owner.say("a very private message")
                await owner.receive_until(type="message")
    logged = "\n".join(running.output)
    for secret in ("s3cret-pass", room["owner_token"], "a very private message"):
        assert secret not in logged
