"""Delivery a member can trust: hello means in, positions, history, resume, acknowledged sends.

"Hello means in": once a member has its hello, everything the room says reaches it, whichever
instance the member and the speaker are on. Every message has an offset in its room's epoch;
a newcomer gets the room's last messages, a client that comes back gets exactly what it
missed, and a message resent with its client_id is posted once.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import orjson

from chat import protocol

from .redis_cluster import Backing
from .support import Client, Server, connect, create_room, cut, join_room, running_app, settings
from .test_lifecycle import closed_with, refused
from .test_scaling import cluster, on

# Rounds of the race between a member's hello and what the room does at that moment.
SENDING_ROUNDS = 150
LEAVING_ROUNDS = 100


def resume_url(ws_url: str, since: int, epoch: str) -> str:
    return f"{ws_url}&since={since}&epoch={epoch}"


async def messages(client: Client, count: int) -> list[dict[str, Any]]:
    """The next ``count`` message frames, skipping presence."""
    return [await client.receive_until(type="message") for _ in range(count)]


async def test_a_newcomer_gets_the_last_messages_then_live_ones(server: Server) -> None:
    async with server.client() as http:
        room = await create_room(http, owner_name="Bob")
        joined = await join_room(http, room["room_id"], "Ann")
        async with connect(room["ws_url"]) as bob:
            assert (bob.hello["epoch"], bob.hello["offset"]) != ("", None)
            assert bob.hello["offset"] == 0 and "recovered" not in bob.hello
            for text in ("one", "two", "three"):
                await bob.say(text)
            sent = await messages(bob, 3)
            assert [(m["offset"], m["text"]) for m in sent] == [(1, "one"), (2, "two"), (3, "three")]
            assert not any("replayed" in m for m in sent)
            async with connect(joined["ws_url"]) as ann:
                assert (ann.hello["epoch"], ann.hello["offset"]) == (bob.hello["epoch"], 3)
                history = [await ann.receive() for _ in range(3)]
                assert [(m["offset"], m["text"], m["replayed"]) for m in history] == [
                    (1, "one", True),
                    (2, "two", True),
                    (3, "three", True),
                ]
                assert history[0] == {**sent[0], "replayed": True}
                await bob.say("four")
                live = await ann.receive_until(type="message")
                assert (live["offset"], live["text"], "replayed" in live) == (4, "four", False)


async def test_history_keeps_the_newest_and_can_be_turned_off() -> None:
    for size, expected in ((2, ["b", "c"]), (0, [])):
        async with running_app(settings(history_size=size)) as server, server.client() as http:
            room = await create_room(http, owner_name="Bob")
            joined = await join_room(http, room["room_id"], "Ann")
            async with connect(room["ws_url"]) as bob:
                for text in "abc":
                    await bob.say(text)
                await messages(bob, 3)
                async with connect(joined["ws_url"]) as ann:
                    assert ann.hello["offset"] == 3
                    await bob.say("live")
                    got = await messages(ann, len(expected) + 1)
                    assert [m["text"] for m in got] == [*expected, "live"], size
                    assert got[-1]["offset"] == 4


async def test_a_resent_message_is_acknowledged_and_posted_once(server: Server) -> None:
    async with server.client() as http:
        room = await create_room(http, owner_name="Bob")
        async with connect(room["ws_url"]) as bob:
            frame = orjson.dumps({"type": "message", "text": "once", "client_id": "m-1"}).decode()
            await bob.ws.send_message(frame)
            await bob.ws.send_message(frame)
            await bob.say("after")
            seen = [await bob.receive() for _ in range(5)]
            kinds = {(f["type"], f.get("offset"), f.get("text") or f.get("client_id")) for f in seen}
            expected = {("message", 1, "once"), ("ack", 1, "m-1"), ("message", 2, "after")}
            assert kinds == {("presence", None, None), *expected}
            assert [f["type"] for f in seen].count("ack") == 2
            # The same client_id from another socket with the same token: still posted once.
            async with connect(room["ws_url"]) as again:
                await again.ws.send_message(frame)
                ack = await again.receive_until(type="ack")
                assert ack == {"type": "ack", "client_id": "m-1", "offset": 1}
                await again.say("next")
                assert (await again.receive_until(type="message", text="next"))["offset"] == 3


async def test_a_refused_message_names_its_client_id(server: Server) -> None:
    async with server.client() as http:
        room = await create_room(http, owner_name="Bob")
        async with connect(room["ws_url"]) as bob:
            for bad, detail in (
                ({"type": "message", "text": "  ", "client_id": "m-2"}, "empty"),
                ({"type": "message", "text": "x" * 4001, "client_id": "m-3"}, "longer"),
                ({"type": "message", "text": "hi", "client_id": ""}, "client_id"),
                ({"type": "message", "text": "hi", "client_id": "c" * 65}, "client_id"),
                ({"type": "message", "text": "hi", "client_id": 7}, "client_id"),
            ):
                await bob.ws.send_message(orjson.dumps(bad).decode())
                error = await bob.receive_until(type="error")
                assert detail in error["detail"], error
                client_id = bad["client_id"]
                valid = isinstance(client_id, str) and 0 < len(client_id) <= 64
                assert error.get("client_id") == (client_id if valid else None), error


async def test_a_client_that_comes_back_gets_exactly_what_it_missed(server: Server) -> None:
    async with server.client() as http:
        room = await create_room(http, owner_name="Bob")
        joined = await join_room(http, room["room_id"], "Ann")
        async with connect(room["ws_url"]) as bob:
            async with connect(joined["ws_url"]) as ann:
                await bob.say("before")
                last = (await ann.receive_until(type="message"))["offset"]
                epoch = ann.hello["epoch"]
            for i in range(5):
                await bob.say(f"missed {i}")
            async with connect(resume_url(joined["ws_url"], last, epoch)) as ann:
                assert ann.hello["recovered"] is True and ann.hello["offset"] == last + 5
                replay = [await ann.receive() for _ in range(5)]
                assert [(m["offset"], m["text"], m["replayed"]) for m in replay] == [
                    (last + 1 + i, f"missed {i}", True) for i in range(5)
                ]
                await bob.say("live")
                assert (await ann.receive_until(type="message"))["offset"] == last + 6
            # Nothing missed is a full recovery too; another epoch or a gap is not.
            async with connect(resume_url(joined["ws_url"], last + 6, epoch)) as ann:
                assert ann.hello["recovered"] is True
            for since, other in ((last, "another-epoch"), (10**6, epoch)):
                async with connect(resume_url(joined["ws_url"], since, other)) as ann:
                    assert ann.hello["recovered"] is False
                    await bob.say("fresh")
                    # Nothing replayed: the first message it gets is the live one.
                    first = await ann.receive_until(type="message")
                    assert (first["text"], "replayed" in first) == ("fresh", False)
            for bad in ("-1", "abc", "1.5", "9" * 19):
                code, reason = await refused(f"{joined['ws_url']}&since={bad}&epoch={epoch}")
                assert code == 1008 and reason.startswith("since must be"), bad


async def test_rest_reads_the_same_history(server: Server) -> None:
    async with server.client() as http:
        room = await create_room(http, owner_name="Bob", password="sesame")
        rid = room["room_id"]
        async with connect(room["ws_url"]) as bob:
            for text in ("one", "two", "three"):
                await bob.say(text)
            await messages(bob, 3)
            assert (await http.get(f"/rooms/{rid}/messages")).status_code == 401
            newest = (await http.get(f"/rooms/{rid}/messages", params={"password": "sesame", "limit": 2})).json()
            assert (newest["offset"], newest["epoch"]) == (3, bob.hello["epoch"])
            assert [m["text"] for m in newest["messages"]] == ["two", "three"] and not newest["complete"]
            after = (
                await http.get(
                    f"/rooms/{rid}/messages", params={"password": "sesame", "since": 1, "epoch": bob.hello["epoch"]}
                )
            ).json()
            assert after["complete"] and [m["offset"] for m in after["messages"]] == [2, 3]
            wrong = (
                await http.get(f"/rooms/{rid}/messages", params={"password": "sesame", "since": 1, "epoch": "nope"})
            ).json()
            assert wrong["messages"] == [] and not wrong["complete"]
            for bad in ({"since": "-1"}, {"limit": "0"}, {"limit": "x"}):
                response = await http.get(f"/rooms/{rid}/messages", params={"password": "sesame", **bad})
                assert response.status_code == 422, bad
        assert (await http.get("/rooms/nope/messages")).status_code == 404


async def test_a_member_resumes_on_the_other_instance(backing: Backing) -> None:
    async with cluster(backing=backing) as c:
        a, b = c.instances
        async with a.server.client() as http:
            room = await create_room(http, owner_name="Bob")
            joined = await join_room(http, room["room_id"], "Ann")
            async with connect(room["ws_url"]) as bob:
                async with connect(on(b, joined["ws_url"])) as ann:
                    await bob.say("seen")
                    last = (await ann.receive_until(type="message"))["offset"]
                for i in range(20):
                    await bob.say(f"gap {i}")
                async with connect(resume_url(on(a, joined["ws_url"]), last, ann.hello["epoch"])) as back:
                    assert back.hello["recovered"] is True
                    got = [await back.receive() for _ in range(20)]
                    assert [m["text"] for m in got] == [f"gap {i}" for i in range(20)]
                    assert [m["offset"] for m in got] == list(range(last + 1, last + 21))



async def rounds_at_the_hello(rounds: int, at_the_hello: Callable[[Client, Client, int], Awaitable[None]]) -> None:
    """Round after round, each in a new room: Bob (the owner) on instance A, Ann enters on B;
    the moment her hello arrives, ``at_the_hello(bob, ann, round)`` acts and checks."""
    async with cluster() as c:
        a, b = c.instances
        async with a.server.client() as http:
            for round_ in range(rounds):
                room = await create_room(http, owner_name="Bob")
                joined = await join_room(http, room["room_id"], "Ann")
                async with connect(room["ws_url"]) as bob, connect(on(b, joined["ws_url"])) as ann:
                    await at_the_hello(bob, ann, round_)


async def test_a_message_sent_at_the_hello_reaches_the_new_member() -> None:
    async def bob_speaks(bob: Client, ann: Client, round_: int) -> None:
        await bob.say(f"round {round_}")
        assert (await ann.receive_until(type="message"))["text"] == f"round {round_}", round_

    await rounds_at_the_hello(SENDING_ROUNDS, bob_speaks)


async def test_the_owner_leaving_at_the_hello_reaches_the_new_member_with_its_reason() -> None:
    async def bob_leaves(bob: Client, ann: Client, round_: int) -> None:
        await bob.ws.aclose()
        ending = await ann.receive_until(type="system")
        assert ending["message"] == protocol.OWNER_OFFLINE, (round_, ending)
        assert await closed_with(ann) == (1000, "Room closed"), round_

    await rounds_at_the_hello(LEAVING_ROUNDS, bob_leaves)


# A drop is not a departure: a socket lost without a goodbye keeps its seat for a resume.


@asynccontextmanager
async def bob_and_ann(grace: float) -> AsyncIterator[tuple[httpx.AsyncClient, dict[str, Any], Client, Client]]:
    """Bob's room (his create answer) on a server with ``grace`` s of RESUME_GRACE_SECONDS, and
    Ann's ws_url from her join; Bob and Ann connected, Bob having seen Ann come online."""
    async with running_app(settings(resume_grace_seconds=grace)) as server, server.client() as http:
        room = await create_room(http, owner_name="Bob")
        joined = await join_room(http, room["room_id"], "Ann")
        async with connect(room["ws_url"]) as bob, connect(joined["ws_url"]) as ann:
            await bob.receive_until(event="user_online", display_name="Ann")
            yield http, {**room, "ann_ws_url": joined["ws_url"]}, bob, ann


async def test_a_member_that_drops_and_resumes_never_left() -> None:
    async with bob_and_ann(grace=60) as (http, room, bob, ann):
        await bob.say("before")
        await bob.receive_until(type="message")
        last = (await ann.receive_until(type="message"))["offset"]
        cut(ann)
        await bob.say("while away")
        async with connect(resume_url(room["ann_ws_url"], last, ann.hello["epoch"])) as back:
            assert back.connection_id == ann.connection_id and back.hello["recovered"] is True
            assert (await back.receive())["text"] == "while away"
            await back.say("back")
            # Bob's next frames: his own message, then hers; no offline/online in between.
            assert [(f["type"], f.get("text")) for f in [await bob.receive(), await bob.receive()]] == [
                ("message", "while away"),
                ("message", "back"),
            ]
            details = (await http.get(f"/rooms/{room['room_id']}")).json()
            assert details["online_users_count"] == 2
        # A clean close is a departure at once, as before.
        gone = await bob.receive()
        assert (gone["event"], gone["connection_id"]) == ("user_offline", ann.connection_id)


async def test_a_dropped_seat_is_freed_once_the_grace_is_over() -> None:
    async with bob_and_ann(grace=0.2) as (_, _, bob, ann):
        cut(ann)
        gone = await bob.receive()
        assert (gone["event"], gone["connection_id"]) == ("user_offline", ann.connection_id)
        assert gone["online_count"] == 1


async def test_the_owner_dropping_ends_the_room_only_if_it_does_not_come_back() -> None:
    async with bob_and_ann(grace=0.5) as (_, room, bob, ann):
        cut(bob)
        async with connect(resume_url(room["ws_url"], 0, bob.hello["epoch"])) as back:
            assert back.connection_id == bob.connection_id
            await back.say("still mine")
            assert (await ann.receive_until(type="message"))["text"] == "still mine"
            cut(back)
            ending = await ann.receive_until(type="system")
            assert ending["message"] == protocol.OWNER_OFFLINE
            assert await closed_with(ann) == (1000, "Room closed")


async def test_without_a_grace_a_drop_departs_at_once() -> None:
    async with bob_and_ann(grace=0) as (_, room, bob, ann):
        cut(ann)
        assert (await bob.receive())["event"] == "user_offline"
        async with connect(resume_url(room["ann_ws_url"], 0, ann.hello["epoch"])) as back:
            assert back.connection_id != ann.connection_id
            assert (await bob.receive())["event"] == "user_online"
