"""Typing indicators and read receipts: paced per member, never sent back to their sender.

The pacing runs on Trio's clock (MockClock here); the relay is the LiveRoom's, with sockets
that record what they are sent (tests/fakes.py); the end-to-end rules over real sockets are
at the bottom, on one instance (across two: tests/test_scaling.py).
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest
import trio
import trio.testing

from chat import protocol
from chat.bus import with_count
from chat.config import READ_RECEIPT_INTERVAL_SECONDS, TYPING_INTERVAL_SECONDS
from chat.rooms import Entry, Rooms
from chat.ws.receipts import ReadReceipts, TypingThrottle

from .fakes import RecordingSocket, recording_member, room_record, running_hub
from .support import Client, Server, connect, create_room, join_room, running_app, settings
from .test_rooms import new_room
from .test_scaling import cluster, on


def test_clients_send_typing_and_read_frames() -> None:
    assert protocol.read_frame('{"type":"typing"}', 100) == protocol.TYPING
    assert protocol.read_frame('{"type":"read","offset":7}', 100) == protocol.ReadUpTo(7)
    assert protocol.read_frame('{"type":"message","text":"hi"}', 100) == protocol.Said("hi")
    assert protocol.read_frame("plain", 100) == protocol.Said("plain")
    for offset in ("-1", "1.5", '"3"', "true", "null", str(10**19)):
        with pytest.raises(protocol.BadFrame, match="'offset' must be a whole number"):
            protocol.read_frame(f'{{"type":"read","offset":{offset}}}', 100)
    with pytest.raises(protocol.BadFrame, match="use 'message', 'typing' or 'read'"):
        protocol.read_frame('{"type":"shout","text":"hi"}', 100)


async def test_relayed_frames_name_their_sender_without_decoding() -> None:
    typing = protocol.typing("r1", "c-ann", "Ann")
    read = protocol.read_receipt("c-ann", "Ann", 4)
    assert protocol.relayed_from(typing) == ("c-ann", False)
    assert protocol.relayed_from(read) == ("c-ann", True)
    assert orjson.loads(read) == {"type": "read", "connection_id": "c-ann", "display_name": "Ann", "offset": 4}
    assert set(orjson.loads(typing)) == {"type", "connection_id", "display_name", "room_id", "timestamp"}
    presence = with_count(protocol.presence("r1", "user_online", "c-ann", "Ann"), 1)
    for other in (presence, protocol.system("r1", "x"), "text"):
        assert protocol.relayed_from(other) is None


async def test_typing_goes_out_at_most_once_per_interval(autojump_clock: trio.testing.MockClock) -> None:
    throttle = TypingThrottle(TYPING_INTERVAL_SECONDS)
    relayed = []
    start = trio.current_time()
    # A client that sends typing every 0.1 s for 5 s.
    for _ in range(50):
        if throttle.allows():
            relayed.append(round(trio.current_time() - start, 1))
        await trio.sleep(0.1)
    assert relayed == [0.0, 2.0, 4.0]


async def test_reads_are_coalesced_newest_wins_and_the_last_is_never_lost(
    autojump_clock: trio.testing.MockClock,
) -> None:
    sent: list[tuple[float, int]] = []
    start = trio.current_time()

    async def send(offset: int) -> None:
        sent.append((round(trio.current_time() - start, 2), offset))

    async with trio.open_nursery() as nursery:
        receipts = ReadReceipts(send, READ_RECEIPT_INTERVAL_SECONDS, nursery)
        receipts.note(3)  # The first goes out at once.
        await trio.sleep(0.1)
        for offset in (4, 6, 5):  # Within the interval: only the newest, when it is over.
            receipts.note(offset)
            await trio.sleep(0.1)
        await trio.sleep(2)
        receipts.note(6)  # Nothing new: nothing sent.
        await trio.sleep(2)
        receipts.note(8)  # Long after: at once again.
        await trio.sleep(0.1)
        receipts.note(9)
        receipts.stop()  # The member leaves within the interval: pacing ends, ...
        receipts.note(10)  # ... and nothing more goes out on its own.
    await receipts.flush()  # The member left before the interval was over: its last read goes too.
    assert sent == [(0.0, 3), (1.0, 6), (4.4, 8), (4.5, 10)]


async def received(socket: RecordingSocket) -> list[dict[str, Any]]:
    await trio.testing.wait_all_tasks_blocked()
    return [orjson.loads(text) for text in socket.texts()]


async def test_the_room_relays_typing_and_reads_to_the_others_only() -> None:
    async with running_hub() as (bus, hub, nursery):
        record = room_record()
        await bus.create_room(record)
        ann, ann_socket = recording_member("ann", nursery)
        bob, bob_socket = recording_member("bob", nursery)
        cid, cid_socket = recording_member("cid", nursery)
        cid.read_receipts = False
        for member in (ann, bob, cid):
            await hub.add(record, member)
        await bus.publish("r1", protocol.typing("r1", ann.connection_id, "ann"))
        await bus.publish("r1", "between")
        await bus.publish("r1", protocol.read_receipt(ann.connection_id, "ann", 1))
        await bus.publish("r1", protocol.read_receipt(bob.connection_id, "bob", 1))
        await bus.publish("r1", "after")
        await trio.testing.wait_all_tasks_blocked()

        def kinds(socket: RecordingSocket) -> list[str]:
            out = []
            for text in socket.texts():
                frame = orjson.loads(text) if text.startswith("{") else text
                out.append(frame if isinstance(frame, str) else f"{frame['type']}:{frame['display_name']}")
            return out

        # In the order published, each to everyone but its sender; reads not to cid.
        assert kinds(ann_socket) == ["between", "read:bob", "after"]
        assert kinds(bob_socket) == ["typing:ann", "between", "read:ann", "after"]
        assert kinds(cid_socket) == ["typing:ann", "between", "after"]


async def test_read_offsets_never_go_back_nor_past_the_newest_message() -> None:
    async with running_hub() as (bus, hub, nursery):
        rooms = Rooms(bus, settings())
        record, _ = await rooms.create(new_room())
        ann, ann_socket = recording_member("ann", nursery)
        bob, bob_socket = recording_member("bob", nursery)
        for member in (ann, bob):
            await bus.admit(record.room_id, member.record)
            await hub.add(record, member)
        for text in ("one", "two", "three"):
            await bus.post(record.room_id, protocol.chat_message(record.room_id, "c-bob", "bob", text))
        entry = Entry(record, ann.record)
        for offset in (2, 1, 2, 99, 50):
            await rooms.read(entry, offset)
        reads = [f["offset"] for f in await received(bob_socket) if f["type"] == "read"]
        assert reads == [2, 3]  # 99 is kept as 3, the newest message; 50 moves nothing.
        assert [f for f in await received(ann_socket) if f["type"] == "read"] == []
        _, _, offsets = await rooms.details(record.room_id, None)
        assert offsets == {ann.connection_id: 3}


# End to end, over real sockets, one instance.


async def next_frame_but_presence(client: Client) -> dict[str, Any]:
    while True:
        frame = await client.receive()
        if frame["type"] != "presence":
            return frame


async def test_typing_reaches_the_others_once_per_interval_and_never_its_sender(server: Server) -> None:
    async with server.client() as http:
        room = await create_room(http, owner_name="Bob")
        joined = await join_room(http, room["room_id"], "Ann")
        async with connect(room["ws_url"]) as bob, connect(joined["ws_url"]) as ann:
            await bob.receive_until(event="user_online", display_name="Ann")
            for _ in range(5):  # However often a client sends it: one per interval.
                await ann.ws.send_message('{"type":"typing"}')
            await ann.say("done")
            typing = await bob.receive()
            assert typing["type"] == "typing"
            assert (typing["connection_id"], typing["display_name"]) == (ann.connection_id, "Ann")
            assert typing["room_id"] == room["room_id"] and typing["timestamp"].endswith("Z")
            assert (await bob.receive())["text"] == "done"  # Only one typing frame before it.
            # Never stored, never replayed.
            history = (await http.get(f"/rooms/{room['room_id']}/messages")).json()["messages"]
            assert [m["text"] for m in history] == ["done"]
            # Ann's own stream: her message, no typing of hers before it.
            assert (await next_frame_but_presence(ann))["text"] == "done"


async def test_reads_reach_the_others_and_the_details_unless_a_member_opted_out(server: Server) -> None:
    async with server.client() as http:
        room = await create_room(http, owner_name="Bob")
        rid = room["room_id"]
        ann_url = (await join_room(http, rid, "Ann"))["ws_url"]
        response = await http.post(f"/rooms/{rid}/join", json={"display_name": "Cid", "read_receipts": False})
        cid_url = response.json()["ws_url"]
        assert cid_url.endswith("&read_receipts=false")
        async with connect(room["ws_url"]) as bob, connect(ann_url) as ann, connect(cid_url) as cid:
            await bob.receive_until(event="user_online", display_name="Cid")
            await bob.say("one")
            for client in (bob, ann, cid):
                await client.receive_until(type="message", text="one")
            await cid.ws.send_message('{"type":"read","offset":1}')  # Opted out: ignored.
            await ann.ws.send_message('{"type":"read","offset":1}')
            read = await bob.receive()
            assert read == {"type": "read", "connection_id": ann.connection_id, "display_name": "Ann", "offset": 1}
            await bob.say("two")
            assert (await next_frame_but_presence(cid))["text"] == "two"  # No read for Cid.
            assert (await next_frame_but_presence(ann))["text"] == "two"  # Nor her own.
            users = (await http.get(f"/rooms/{rid}")).json()["online_users"]
            offsets = {u["display_name"]: u["read_offset"] for u in users}
            assert offsets == {"Bob": None, "Ann": 1, "Cid": None}
            bad = '{"type":"read","offset":-1}'
            await ann.ws.send_message(bad)
            error = await next_frame_but_presence(ann)
            assert error["type"] == "error" and "offset" in error["detail"]


async def test_typing_and_reads_cross_instances_and_never_come_back() -> None:
    async with cluster() as c:
        a, b = c.instances
        async with a.server.client() as http_a, b.server.client() as http_b:
            room = await create_room(http_a, owner_name="Bob")
            rid = room["room_id"]
            joined = await join_room(http_b, rid, "Ann")
            async with connect(room["ws_url"]) as bob, connect(on(b, joined["ws_url"])) as ann:
                await bob.receive_until(event="user_online", display_name="Ann")
                for _ in range(3):
                    await ann.ws.send_message('{"type":"typing"}')
                await ann.say("from B")
                typing = await bob.receive()
                assert (typing["type"], typing["display_name"]) == ("typing", "Ann")
                assert (await bob.receive())["text"] == "from B"
                assert (await next_frame_but_presence(ann))["text"] == "from B"
                await bob.ws.send_message('{"type":"typing"}')
                await bob.ws.send_message('{"type":"read","offset":1}')
                assert (await ann.receive())["type"] == "typing"
                read = await ann.receive()
                assert read == {"type": "read", "connection_id": bob.connection_id, "display_name": "Bob", "offset": 1}
                await bob.say("from A")
                assert (await next_frame_but_presence(bob))["text"] == "from A"  # Neither came back.
                for http in (http_a, http_b):
                    users = (await http.get(f"/rooms/{rid}")).json()["online_users"]
                    assert {u["display_name"]: u["read_offset"] for u in users} == {"Bob": 1, "Ann": None}
        await c.no_keys_left(rid)


async def test_typing_and_read_frames_count_against_the_message_rate() -> None:
    async with running_app(settings(messages_per_second=0.001, message_burst=2)) as server:
        async with server.client() as http:
            room = await create_room(http, owner_name="Bob")
            async with connect(room["ws_url"]) as bob:
                await bob.ws.send_message('{"type":"typing"}')
                await bob.ws.send_message('{"type":"read","offset":0}')
                await bob.say("one too many")
                refused = await next_frame_but_presence(bob)
                assert refused["type"] == "error" and refused["detail"].startswith("Slow down")
