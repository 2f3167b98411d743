"""Unique names, the owner's hand and the room-life log, across two real instances on one
real Redis (and one process's own log)."""

from __future__ import annotations

from typing import Any

import orjson
import trio
from trio_websocket import ConnectionClosed, open_websocket_url

from chat import protocol

from .redis_server import wait_until
from .support import connect, create_room, join_room, server_process
from .test_lifecycle import closed_with, refused
from .test_scaling import cluster, on

JANE_FULL_WIDTH = "\uff2a\uff21\uff2e\uff25"  # "JANE" in full-width letters: NFKC makes it "JANE".
REMOVED_YOU = "You were removed from this room by its owner"


async def _enter(url: str, outcomes: trio.MemorySendChannel[Any], ready: trio.Event, done: trio.Event) -> None:
    """Knock once ``ready`` is set; tell "in" for a hello (and hold the seat until ``done``),
    else the close code and reason."""
    await ready.wait()
    async with open_websocket_url(url) as ws:
        try:
            first = orjson.loads(await ws.get_message())
        except ConnectionClosed as closed:
            await outcomes.send((closed.reason.code, closed.reason.reason))
            return
        assert first["message"] == protocol.CONNECTED, first
        await outcomes.send("in")
        await done.wait()


async def test_two_joining_as_jane_and_full_width_jane_on_two_instances_get_one_seat() -> None:
    async with cluster() as c:
        a, b = c.instances
        async with a.server.client() as http_a, b.server.client() as http_b:
            for _ in range(3):
                room = await create_room(http_a, owner_name="Bob")
                # Both REST joins pass (neither is in yet); the seats are decided at admission.
                jane = await join_room(http_a, room["room_id"], "Jane")
                wide = await join_room(http_b, room["room_id"], JANE_FULL_WIDTH)
                told, outcome = trio.open_memory_channel[Any](2)
                ready, done = trio.Event(), trio.Event()
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(_enter, on(a, jane["ws_url"]), told, ready, done)
                    nursery.start_soon(_enter, on(b, wide["ws_url"]), told, ready, done)
                    ready.set()
                    with trio.fail_after(30):
                        outcomes = [await outcome.receive(), await outcome.receive()]
                    details = (await http_b.get(f"/rooms/{room['room_id']}")).json()
                    done.set()
                assert outcomes.count("in") == 1, outcomes
                (code, reason) = next(o for o in outcomes if o != "in")
                assert code == protocol.CLOSE_POLICY and "is already taken in this room" in reason
                assert len(details["online_users"]) == 1
                assert details["online_users"][0]["display_name"] in ("Jane", JANE_FULL_WIDTH)
            # Now that one is in, the REST join of the other says so with a sentence.
            async with connect(on(b, jane["ws_url"])):
                taken = await http_b.post(f"/rooms/{room['room_id']}/join", json={"display_name": "jANE"})
                assert taken.status_code == 409
                assert taken.json()["detail"].startswith("The name \u201cjANE\u201d is already taken in this room")
                bare = f"{a.server.ws}/rooms/{room['room_id']}/ws?display_name=JANE"
                code, reason = await refused(bare)
                assert code == protocol.CLOSE_POLICY and "already taken" in reason


async def test_the_owners_name_is_the_owners_while_offline_and_the_owner_is_marked() -> None:
    async with cluster() as c:
        a, b = c.instances
        async with a.server.client() as http_a, b.server.client() as http_b:
            room = await create_room(http_a, owner_name="Bob", preferences={"destroy_on_owner_offline": False})
            rid = room["room_id"]
            joined = await join_room(http_b, rid, "Ann")
            async with connect(on(a, joined["ws_url"])) as ann:
                async with connect(on(b, room["ws_url"])):
                    online = await ann.receive_until(event="user_online", display_name="Bob")
                    assert online["is_owner"] is True
                    details = (await http_a.get(f"/rooms/{rid}")).json()
                    marks = {u["display_name"]: u["is_owner"] for u in details["online_users"]}
                    assert marks == {"Bob": True, "Ann": False}
                offline = await ann.receive_until(event="user_offline", display_name="Bob")
                assert offline["is_owner"] is True
                for name in ("bob", "BOB", "\uff42\uff4f\uff42"):
                    answer = await http_b.post(f"/rooms/{rid}/join", json={"display_name": name})
                    assert answer.status_code == 409, name
                code, reason = await refused(f"{b.server.ws}/rooms/{rid}/ws?display_name=Bob")
                assert code == protocol.CLOSE_POLICY and "already taken" in reason
                # The owner comes back with the owner token, on either instance.
                async with connect(on(a, room["ws_url"])):
                    back = await ann.receive_until(event="user_online", display_name="Bob")
                    assert back["is_owner"] is True


async def test_the_owner_removes_a_member_connected_to_the_other_instance() -> None:
    async with cluster() as c:
        a, b = c.instances
        async with a.server.client() as http_a, b.server.client() as http_b:
            room = await create_room(http_a, owner_name="Bob")
            rid, owner = room["room_id"], {"Authorization": f"Bearer {room['owner_token']}"}
            jane = await join_room(http_a, rid, "Jane")
            joe = await join_room(http_b, rid, "Joe")
            async with (
                connect(on(a, room["ws_url"])) as bob,
                connect(on(b, jane["ws_url"])) as jane_ws,
                connect(on(a, joe["ws_url"])) as joe_ws,
            ):
                await bob.receive_until(event="user_online", display_name="Joe")
                remove = f"/rooms/{rid}/members/{jane_ws.connection_id}/remove"
                assert (await http_a.post(remove)).status_code == 403
                member_token = {"Authorization": "Bearer " + jane["ws_url"].split("token=")[1]}
                assert (await http_a.post(remove, headers=member_token)).status_code == 403
                unknown = await http_a.post(f"/rooms/{rid}/members/nobody/remove", headers=owner)
                assert unknown.status_code == 404 and unknown.json()["detail"].startswith("No such member")
                elsewhere = f"/rooms/0123456789abcdef/members/{jane_ws.connection_id}/remove"
                gone = await http_a.post(elsewhere, headers=owner)
                assert gone.status_code == 404
                themself = await http_b.post(f"/rooms/{rid}/members/{bob.connection_id}/remove", headers=owner)
                assert themself.status_code == 409 and "owner cannot be removed" in themself.json()["detail"]
                # On instance A; Jane's socket is on B. The token may come in the body too.
                removed = await http_a.post(remove, json={"owner_token": room["owner_token"]})
                assert removed.status_code == 200 and removed.json() == {"message": "Member removed"}
                told = await jane_ws.receive_until(type="system")
                assert told["message"] == "You were removed from the room by its owner"
                assert await closed_with(jane_ws) == (protocol.CLOSE_POLICY, "Removed by the room owner")
                for other in (bob, joe_ws):
                    line = await other.receive_until(type="system")
                    assert line["message"] == "Jane was removed by the room owner"
                    left = await other.receive_until(event="user_offline")
                    assert (left["display_name"], left["is_owner"]) == ("Jane", False)
                # Her token is refused for the room's life: a connect, a resume, a rejoin.
                for url in (on(a, jane["ws_url"]), on(b, jane["ws_url"]) + "&since=0"):
                    assert await refused(url) == (protocol.CLOSE_POLICY, REMOVED_YOU)
                rejoin = await http_b.post(f"/rooms/{rid}/join", json={"display_name": "Jane"}, headers=member_token)
                assert rejoin.status_code == 403 and rejoin.json()["detail"] == REMOVED_YOU
                details = (await http_b.get(f"/rooms/{rid}")).json()
                assert sorted(u["display_name"] for u in details["online_users"]) == ["Bob", "Joe"]
                await joe_ws.say("still here")
                assert (await bob.receive_until(type="message"))["text"] == "still here"
        await c.no_keys_left(rid)  # Bob left: the room ended, its names and revocations with it.


async def test_the_log_tells_room_life_without_names_text_passwords_or_tokens() -> None:
    secrets = {"name": "Zebulon-Quartz", "owner": "Ottoline-Marsh", "text": "plover-seventeen", "password": "s3same-pw"}
    async with server_process({"LOG_LEVEL": "INFO"}) as process:
        async with process.server.client() as http:
            room = await create_room(http, owner_name=secrets["owner"], password=secrets["password"], max_users=7)
            rid = room["room_id"]
            joined = await join_room(http, rid, secrets["name"], secrets["password"])
            async with connect(room["ws_url"]) as owner:
                async with connect(joined["ws_url"]) as member:
                    await owner.receive_until(event="user_online", display_name=secrets["name"])
                    await member.say(secrets["text"])
                    await owner.receive_until(type="message")
                await owner.receive_until(event="user_offline")
                closed = await http.post(f"/rooms/{rid}/close", json={"owner_token": room["owner_token"]})
                assert closed.status_code == 200
                await closed_with(owner)

        async def told(line: str) -> bool:
            return any(line in logged for logged in process.output)

        # The lines are flushed before each answer; the pipe may still hold them a moment.
        for line in (
            f"room {rid} created: at most 7 members, ends in 600 s",
            f"member joined room {rid}: 1 online",
            f"member joined room {rid}: 2 online",
            f"member left room {rid}: 1 online",
            f"room {rid} ended: closed by owner",
        ):
            await wait_until(lambda line=line: told(line), 10)  # type: ignore[misc]
    everything = "\n".join(process.output)
    for value in (*secrets.values(), room["owner_token"], joined["ws_url"].split("token=")[1]):
        assert value not in everything, value


async def test_a_room_that_expires_or_loses_its_owner_says_why_in_the_log() -> None:
    async with server_process({"LOG_LEVEL": "INFO"}) as process:
        async with process.server.client() as http:
            lost = await create_room(http, owner_name="Bob")
            async with connect(lost["ws_url"]):
                pass
            short = await create_room(http, owner_name="Ann", expiry_seconds=1)
            async with connect(short["ws_url"]) as ann:
                assert (await ann.receive_until(type="system", within=15))["message"] == protocol.EXPIRED

        async def told(line: str) -> bool:
            return any(line in logged for logged in process.output)

        await wait_until(lambda: told(f"room {lost['room_id']} ended: owner offline"), 10)
        await wait_until(lambda: told(f"room {short['room_id']} ended: expired"), 10)
