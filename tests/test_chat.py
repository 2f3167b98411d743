"""Two members chatting: the document's message and presence frames, end to end."""

from __future__ import annotations

import orjson
import trio

from chat.bus import AdmitResult, MemberRecord, Reading
from chat.bus.memory import MemoryBus

from .support import Server, connect, create_room, join_room, running_app


async def test_members_chat_and_see_presence(server: Server) -> None:
    async with server.client() as http:
        room = await create_room(http, name="Lobby", owner_name="Bob")
        joined = await join_room(http, room["room_id"], "Ann")
        async with connect(room["ws_url"]) as bob:
            online = await bob.receive()
            assert online["type"] == "presence" and online["event"] == "user_online"
            assert online["display_name"] == "Bob" and online["online_count"] == 1
            async with connect(joined["ws_url"]) as ann:
                seen = await bob.receive()
                assert (seen["event"], seen["display_name"], seen["online_count"]) == ("user_online", "Ann", 2)
                await ann.receive_until(event="user_online", display_name="Ann")
                await ann.ws.send_message("plain text works")
                await ann.say("json works")
                for member in (ann, bob):
                    first = await member.receive()
                    second = await member.receive()
                    assert [first["text"], second["text"]] == ["plain text works", "json works"]
                    assert first["type"] == "message" and first["display_name"] == "Ann"
                    assert first["connection_id"] == ann.connection_id
                    assert first["room_id"] == room["room_id"]
                    assert first["timestamp"].endswith("Z")
                    assert first["id"] != second["id"]
                details = (await http.get(f"/rooms/{room['room_id']}")).json()
                assert details["online_users_count"] == 2
                listed = {(u["display_name"], u["connection_id"]) for u in details["online_users"]}
                assert listed == {("Bob", bob.connection_id), ("Ann", ann.connection_id)}
            gone = await bob.receive()
            assert (gone["event"], gone["display_name"], gone["online_count"]) == ("user_offline", "Ann", 1)
            details = (await http.get(f"/rooms/{room['room_id']}")).json()
            assert [u["display_name"] for u in details["online_users"]] == ["Bob"]


class SlowToSeat(MemoryBus):
    """Ann's admission is made, then its answer waits for ``go``: her socket enters late."""

    def __init__(self) -> None:
        super().__init__()
        self.seated, self.go = trio.Event(), trio.Event()

    async def admit(
        self, room_id: str, member: MemberRecord, sender: str = "", name_key: str = "", read: Reading | None = None
    ) -> AdmitResult:
        result = await super().admit(room_id, member, sender, name_key, read)
        if member.display_name == "Ann":
            self.seated.set()
            await self.go.wait()
        return result


async def test_the_newest_presence_counts_everyone_online_whatever_order_members_entered_in() -> None:
    """Ann is seated before Bob, but Bob's socket is in first, as with two instances where
    Ann's took longer to subscribe. Olga's newest presence frame still says three are online."""
    bus = SlowToSeat()
    async with running_app(bus=bus) as server, server.client() as http:
        room = await create_room(http, owner_name="Olga")
        ann_url = (await join_room(http, room["room_id"], "Ann"))["ws_url"]
        bob_url = (await join_room(http, room["room_id"], "Bob"))["ws_url"]
        async with connect(room["ws_url"]) as olga, trio.open_nursery() as nursery:
            await olga.receive_until(event="user_online", display_name="Olga")

            async def ann() -> None:
                async with connect(ann_url):
                    await trio.sleep_forever()

            nursery.start_soon(ann)
            with trio.fail_after(10):
                await bus.seated.wait()
            async with connect(bob_url):
                bob = await olga.receive_until(event="user_online")
                assert (bob["display_name"], bob["online_count"]) == ("Bob", 3)
                bus.go.set()
                ann_in = await olga.receive_until(event="user_online")
                assert (ann_in["display_name"], ann_in["online_count"]) == ("Ann", 3)
                nursery.cancel_scope.cancel()
                gone = await olga.receive_until(event="user_offline")
                assert (gone["display_name"], gone["online_count"]) == ("Ann", 2)
            gone = await olga.receive_until(event="user_offline")
            assert (gone["display_name"], gone["online_count"]) == ("Bob", 1)


async def test_bad_frames_get_an_error_and_the_room_carries_on(server: Server) -> None:
    async with server.client() as http:
        room = await create_room(http)
        async with connect(room["ws_url"]) as owner:
            await owner.receive()  # own user_online
            for bad in [orjson.dumps({"type": "dance"}).decode(), "   ", '{"type":"message","text":5}', "x" * 4001]:
                await owner.ws.send_message(bad)
                error = await owner.receive()
                assert error["type"] == "error" and error["detail"], bad
            await owner.ws.send_message(b"\x00\x01")
            assert (await owner.receive())["type"] == "error"
            await owner.say("still here")
            assert (await owner.receive())["text"] == "still here"
