"""End-to-end encrypted rooms: the server relays and keeps envelopes it cannot read, and
refuses plaintext, so a misconfigured client cannot leak.

The format itself (ephemeralchat_client.e2e) is pinned by the test vector that
docs/protocol.md publishes; across two instances on Redis, nothing the server holds or
emits contains what the members wrote.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import orjson
import pytest

from chat import sealed
from ephemeralchat_client import e2e

from .redis_server import RedisServer
from .support import Client, Server, connect, create_room, join_room
from .test_client import client
from .test_scaling import cluster, on

PROTOCOL_DOC = Path(__file__).resolve().parent.parent / "docs" / "protocol.md"
ROOM_ID = "0f1e2d3c4b5a6978"


async def send_sealed(client: Client, key: bytes, text: str, **extra: Any) -> None:
    envelope = e2e.seal(key, client.hello["room_id"], client.connection_id, client.hello["display_name"], text)
    await client.ws.send_message(orjson.dumps({"type": "message", **envelope, **extra}).decode())


def test_envelopes_round_trip_and_bind_room_and_sender() -> None:
    key = e2e.new_key()
    envelope = e2e.seal(key, ROOM_ID, "c-ann", "Ann", "meet at 6 ☕")
    relayed = {**envelope, "room_id": ROOM_ID, "connection_id": "c-ann", "display_name": "Ann"}
    assert e2e.open_message(key, relayed) == "meet at 6 ☕"
    # Moved to another room, shown under another name, or read with another key: no text.
    for moved in ({"room_id": "another"}, {"display_name": "Bob"}, {"connection_id": "c-bob"}):
        assert e2e.open_message(key, {**relayed, **moved}) is None
    assert e2e.open_message(e2e.new_key(), relayed) is None
    assert e2e.open_message(None, relayed) is None
    # Every envelope hides the length inside its bucket, and the server accepts its shape.
    for text in ("", "x" * 62, "x" * 63, "ü" * 4000):
        sealed_bytes = e2e.decode(e2e.seal(key, ROOM_ID, "c", "A", text)["ciphertext"])
        assert len(sealed_bytes) - sealed.TAG_BYTES == sealed.padded_size(len(text.encode()))
    assert sealed.read_envelope(envelope, 4000, None) == sealed.Sealed(envelope["ciphertext"], envelope["iv"])
    assert e2e.fingerprint(key) == e2e.fingerprint(bytes(key)) != e2e.fingerprint(e2e.new_key())


def published_vector() -> dict[str, str]:
    """docs/protocol.md's test vector, read from the document."""
    doc = PROTOCOL_DOC.read_text()
    section = doc[doc.index("### Test vector") :]
    return dict(re.findall(r"^\| `(\w+)` \| `([^`]*)` \|", section, re.MULTILINE))


def test_the_published_test_vector_holds() -> None:
    """docs/protocol.md's vector: other clients check against it."""
    vector = published_vector()
    key = e2e.read_key(vector["key"])
    iv = e2e.decode(vector["iv"])
    envelope = e2e.seal(key, vector["room_id"], vector["connection_id"], vector["display_name"], vector["text"], iv)
    assert envelope == {"ciphertext": vector["ciphertext"], "iv": vector["iv"]}
    assert e2e.fingerprint(key) == vector["fingerprint"]
    derived, join = e2e.password_keys(vector["password"], vector["salt"])
    assert (e2e.encode(derived), join) == (vector["password_key"], vector["join_password"])
    assert join != vector["password"] and derived != e2e.decode(join)


def test_the_server_checks_envelope_shape_and_size() -> None:
    key = e2e.new_key()
    good = e2e.seal(key, ROOM_ID, "c", "A", "hi")
    bad = [
        ({**good, "text": "hi"}, "end-to-end encrypted"),
        ({"ciphertext": good["ciphertext"]}, "'iv' must be 12"),
        ({**good, "iv": good["iv"][:-2]}, "'iv' must be 12"),
        ({**good, "iv": good["iv"] + "=="}, "'iv' must be 12"),
        ({**good, "ciphertext": good["ciphertext"] + "!"}, "unpadded base64url"),
        ({**good, "ciphertext": e2e.encode(b"x" * 40)}, "padded to a power of two"),
        ({**good, "ciphertext": e2e.encode(b"x" * (8192 + 16))}, "longer than 1000 characters"),
    ]
    for data, why in bad:
        with pytest.raises(sealed.BadFrame, match=why):
            sealed.read_envelope(data, 1000, None)
    for frame in ("plain words", '{"type":"message","text":"hi"}', "{not json"):
        with pytest.raises(sealed.BadFrame, match="end-to-end encrypted"):
            sealed.read_sealed_frame(frame, 1000)
    assert sealed.read_sealed_frame('{"type":"typing"}', 1000) == sealed.Typing()


async def test_rest_offers_e2e_and_a_password_salt(server: Server) -> None:
    async with server.client() as http:
        plain = await create_room(http)
        assert (await http.get(f"/rooms/{plain['room_id']}")).json()["e2e"] is False
        salt = e2e.new_salt()
        _, join = e2e.password_keys("hunter2", salt)
        room = await create_room(http, e2e=True, password=join, e2e_salt=salt)
        details = (await http.get(f"/rooms/{room['room_id']}", params={"password": join})).json()
        assert (details["e2e"], details["e2e_salt"]) == (True, salt)
        for body, field in (
            ({"e2e": True, "e2e_salt": "short"}, "e2e_salt"),
            ({"e2e": True, "e2e_salt": salt}, "e2e_salt"),  # No password to derive from.
            ({"e2e_salt": salt, "password": "x"}, "e2e_salt"),  # Not an e2e room.
            ({"e2e": "yes"}, "e2e"),
        ):
            answer = await http.post("/rooms/", json={"owner_name": "Bob", **body})
            assert answer.status_code == 422 and field in answer.json()["detail"], answer.text
        paths = (await http.get("/openapi.json")).json()["paths"]
        create = paths["/rooms/"]["post"]["requestBody"]["content"]["application/json"]["schema"]
        details = paths["/rooms/{room_id}"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
        assert {"e2e", "e2e_salt"} <= set(create["properties"]) & set(details["properties"])


async def test_an_e2e_room_relays_envelopes_and_refuses_plaintext(server: Server) -> None:
    key = e2e.new_key()
    async with server.client() as http:
        room = await create_room(http, owner_name="Bob", e2e=True)
        joined = await join_room(http, room["room_id"], "Ann")
        async with connect(room["ws_url"]) as bob, connect(joined["ws_url"]) as ann:
            assert bob.hello["e2e"] is True and bob.hello["display_name"] == "Bob"
            await bob.receive_until(event="user_online", display_name="Ann")
            # Plaintext, as a client without the key would send it: refused, reaches nobody.
            await ann.ws.send_message('{"type":"message","text":"leak?","client_id":"m1"}')
            refused = await ann.receive_until(type="error")
            assert refused["client_id"] == "m1" and "end-to-end encrypted" in refused["detail"]
            await ann.ws.send_message("plain leak?")
            assert "end-to-end encrypted" in (await ann.receive_until(type="error"))["detail"]
            await send_sealed(ann, key, "the secret plan", client_id="m2")
            assert (await ann.receive_until(type="ack"))["client_id"] == "m2"
            heard = await bob.receive_until(type="message")
            assert "text" not in heard and heard["display_name"] == "Ann" and heard["offset"] == 1
            assert e2e.open_message(key, heard) == "the secret plan"
            # History and the messages route keep the envelope unchanged, and only it.
            kept = (await http.get(f"/rooms/{room['room_id']}/messages")).json()["messages"]
            assert [(m["ciphertext"], m["iv"]) for m in kept] == [(heard["ciphertext"], heard["iv"])]
        plain = await create_room(http, owner_name="Cy")
        async with connect(plain["ws_url"]) as cy:
            assert "e2e" not in cy.hello
            await send_sealed(cy, key, "wrong room kind")
            assert "not end-to-end encrypted" in (await cy.receive_until(type="error"))["detail"]


async def test_nothing_the_servers_hold_or_emit_contains_the_plaintext() -> None:
    """Two instances on Redis, DEBUG logs: after e2e conversations (raw sockets with history,
    and terminal clients), no Redis key or value, no log line and no metric holds a word of them."""
    words = ["Zanzibar-7781", "quokka-pancakes-0193", "ultraviolet-marmot-5510"]
    terminal_words = ["lighthouse-kettle-4402", "saffron-tuba-8815"]
    key = e2e.new_key()
    async with cluster(env={"LOG_LEVEL": "DEBUG"}) as c:
        a, b = c.instances
        async with a.server.client() as http_a, b.server.client() as http_b:
            room = await create_room(http_a, owner_name="Bob", e2e=True)
            joined = await join_room(http_b, room["room_id"], "Ann")
            async with connect(room["ws_url"]) as bob, connect(on(b, joined["ws_url"])) as ann:
                await bob.receive_until(event="user_online", display_name="Ann")
                for i, word in enumerate(words):
                    await send_sealed(bob if i % 2 else ann, key, word)
                    for member in (bob, ann):  # The sender gets its own message too.
                        assert e2e.open_message(key, await member.receive_until(type="message")) == word
                # A newcomer gets the history: the same envelopes, which only the key opens.
                late = await join_room(http_a, room["room_id"], "Cy")
                async with connect(late["ws_url"]) as cy:
                    replayed = [await cy.receive_until(type="message") for _ in words]
                    assert [e2e.open_message(key, m) for m in replayed] == words
                    assert [e2e.open_message(None, m) for m in replayed] == [None] * len(words)
                held = [await everything_in(c.redis)]  # While the room and its history live.
            # The terminal client, as people run it: Ada's room on A, Tom on B by its invite link.
            async with client(a.server, "--create", "Plans", "--e2e", "--name", "Ada") as ada:
                link = (await ada.expect(r"Invite link: (\S+)$")).group(1)
                async with client(b.server, "--join", link.replace(a.url, b.url), "--name", "Tom") as tom:
                    await ada.expect("Tom joined")
                    for i, word in enumerate(terminal_words):
                        await (ada if i % 2 else tom).type(word)
                        for side in (ada, tom):
                            await side.expect(rf": {word}$")
                    held.append(await everything_in(c.redis))
                    metrics = [(await http.get("/metrics")).text for http in (http_a, http_b)]
                    await tom.type("/quit")
                await ada.type("/quit")
    logs = "\n".join(a.output + b.output)
    # Talkative logs; both rooms' history read while they lived.
    assert " DEBUG " in logs and f"room:{{{room['room_id']}}}:log" in held[0] and held[1].count(":log ") >= 1
    for word in words + terminal_words:
        for where in (*held, logs, *metrics):
            assert word not in where


async def everything_in(redis: RedisServer) -> str:
    """Every key of the Redis and every value in it, read by type, as one text."""
    readers = {
        "string": ("GET",),
        "hash": ("HGETALL",),
        "set": ("SMEMBERS",),
        "list": ("LRANGE", 0, -1),
        "zset": ("ZRANGE", 0, -1, "WITHSCORES"),
        "stream": ("XRANGE", "-", "+"),
    }
    parts = []
    for key in await redis.command("KEYS", "*"):
        kind = await redis.command("TYPE", key)
        if kind == "none":
            continue  # Expired since KEYS listed it.
        command, *args = readers[kind]
        parts.append(f"{key} {kind} {await redis.command(command, key, *args)}")
    return "\n".join(parts)
