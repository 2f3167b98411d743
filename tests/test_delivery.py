"""Delivery a member can trust, across real instances on one real Redis.

"Hello means in": once a member has its hello, everything the room says reaches it,
whichever instance the member and the speaker are on.
"""

from __future__ import annotations

from chat import protocol

from .support import connect, create_room, join_room
from .test_lifecycle import closed_with
from .test_scaling import cluster, on

SENDING_ROUNDS = 150
LEAVING_ROUNDS = 100


async def test_a_message_sent_at_the_hello_reaches_the_new_member() -> None:
    """Round after round: Ann enters on B; the moment her hello arrives, Bob on A speaks."""
    async with cluster() as c:
        a, b = c.instances
        async with a.server.client() as http:
            for round_ in range(SENDING_ROUNDS):
                room = await create_room(http, owner_name="Bob")
                joined = await join_room(http, room["room_id"], "Ann")
                async with connect(room["ws_url"]) as bob:
                    async with connect(on(b, joined["ws_url"])) as ann:
                        await bob.say(f"round {round_}")
                        heard = await ann.receive_until(type="message")
                        assert heard["text"] == f"round {round_}", round_


async def test_the_owner_leaving_at_the_hello_reaches_the_new_member_with_its_reason() -> None:
    """Round after round: Ann enters on B; the moment her hello arrives, Bob (the owner) on A
    goes offline, and Ann hears why the room ends before it closes."""
    async with cluster() as c:
        a, b = c.instances
        async with a.server.client() as http:
            for round_ in range(LEAVING_ROUNDS):
                room = await create_room(http, owner_name="Bob")
                joined = await join_room(http, room["room_id"], "Ann")
                async with connect(room["ws_url"]) as bob:
                    async with connect(on(b, joined["ws_url"])) as ann:
                        await bob.ws.aclose()
                        ending = await ann.receive_until(type="system")
                        assert ending["message"] == protocol.OWNER_OFFLINE, (round_, ending)
                        assert await closed_with(ann) == (1000, "Room closed"), round_
