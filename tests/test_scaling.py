"""Several ``ephemeralchat`` processes sharing one real Redis behave as one server."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import trio
from trio_websocket import ConnectionClosed, open_websocket_url

from chat import protocol
from chat.bus.channels import SESSION_CONNECTIONS
from chat.bus.link import POOL_CONNECTIONS
from chat.bus.redis import CLIENT_NAME_PREFIX

from .redis_cluster import Backing
from .redis_server import RedisServer, open_redis_server, wait_until
from .support import ServerProcess, chat_both_ways, connect, create_room, join_room, server_process
from .test_lifecycle import closed_with

# Small, so a killed instance's members are reaped within seconds in these tests.
PRESENCE_TIMEOUT = 2.0
ROOMS = 500


@dataclass
class Cluster:
    redis: RedisServer
    instances: list[ServerProcess]

    async def no_keys_left(self, *names: str) -> None:
        """No key of ours remains (on a shared Redis: none naming these rooms or members)."""

        async def clean() -> bool:
            return await self.redis.leftovers(*names) == []

        # Expiry happens inside Redis, which has no event for it: poll, bounded.
        await wait_until(clean, 5)


@asynccontextmanager
async def cluster(
    count: int = 2,
    redis: RedisServer | None = None,
    env: dict[str, str] | None = None,
    backing: Backing | None = None,
) -> AsyncIterator[Cluster]:
    """``count`` instances on one Redis (a shared or private one) or on ``backing``, each with
    ``env`` on top."""
    async with AsyncExitStack() as stack:
        if backing is None:
            if redis is None:
                redis = await stack.enter_async_context(open_redis_server())
            backing = Backing(redis, {"REDIS_URL": redis.url})
        # Some tests create hundreds of rooms from one address: lift that limit here.
        env = {
            **backing.env,
            "PRESENCE_TIMEOUT_SECONDS": str(PRESENCE_TIMEOUT),
            "ROOMS_PER_MINUTE": "100000",
            **(env or {}),
        }
        instances = [await stack.enter_async_context(server_process(env)) for _ in range(count)]
        yield Cluster(backing.redis, instances)


def on(instance: ServerProcess, ws_url: str) -> str:
    """The same ws_url, pointed at another instance (as a load balancer would route it)."""
    return ws_url.replace(urlsplit(ws_url).netloc, urlsplit(instance.url).netloc, 1)


async def test_instances_share_messages_presence_and_details(backing: Backing) -> None:
    async with cluster(backing=backing) as c:
        a, b = c.instances
        async with a.server.client() as http_a, b.server.client() as http_b:
            room = await create_room(http_a, name="Lobby", owner_name="Bob")
            joined = await join_room(http_b, room["room_id"], "Ann")
            assert urlsplit(joined["ws_url"]).netloc == urlsplit(b.url).netloc
            async with connect(room["ws_url"]) as bob, connect(joined["ws_url"]) as ann:
                await chat_both_ways(bob, ann, "hello from B", "hello from A")
                for http in (http_a, http_b):
                    details = (await http.get(f"/rooms/{room['room_id']}")).json()
                    assert details["online_users_count"] == 2
                    assert {u["display_name"] for u in details["online_users"]} == {"Bob", "Ann"}
            # Ann's socket closed first (contexts exit in reverse): Bob on A sees her go.
        async with a.server.client() as http_a:

            async def ended() -> bool:
                return (await http_a.get(f"/rooms/{room['room_id']}")).status_code == 404

            # The owner left: its instance ends the room once its departure is through Redis,
            # which a client closing its socket does not wait for.
            await wait_until(ended, 10)


async def test_an_instance_with_no_member_joins_and_details_the_room() -> None:
    async with cluster() as c:
        a, b = c.instances
        async with a.server.client() as http_a, b.server.client() as http_b:
            room = await create_room(http_a, owner_name="Bob", password="open-sesame", max_users=5)
            details = await http_b.get(f"/rooms/{room['room_id']}", params={"password": "open-sesame"})
            assert details.status_code == 200 and details.json()["online_users_count"] == 0
            assert (await http_b.get(f"/rooms/{room['room_id']}")).status_code == 401
            joined = await join_room(http_b, room["room_id"], "Ann", "open-sesame")
            async with connect(joined["ws_url"]) as ann:
                online = await ann.receive_until(event="user_online")
                assert online["online_count"] == 1
                details = await http_a.get(f"/rooms/{room['room_id']}", params={"password": "open-sesame"})
                assert [u["display_name"] for u in details.json()["online_users"]] == ["Ann"]


async def test_owner_closes_the_room_on_every_instance(backing: Backing) -> None:
    async with cluster(backing=backing) as c:
        a, b = c.instances
        async with a.server.client() as http_a, b.server.client() as http_b:
            room = await create_room(http_a, owner_name="Bob")
            joined = await join_room(http_b, room["room_id"], "Ann")
            async with connect(on(b, room["ws_url"])) as bob, connect(on(a, joined["ws_url"])) as ann:
                await bob.receive_until(event="user_online", display_name="Ann")
                closed = await http_b.post(
                    f"/rooms/{room['room_id']}/close", headers={"Authorization": f"Bearer {room['owner_token']}"}
                )
                assert closed.status_code == 200
                for member in (bob, ann):
                    notice = await member.receive_until(type="system")
                    assert notice["message"] == protocol.CLOSED_BY_OWNER
                    assert (await closed_with(member))[0] == protocol.CLOSE_NORMAL
            for http in (http_a, http_b):
                assert (await http.get(f"/rooms/{room['room_id']}")).status_code == 404
        await c.no_keys_left(room["room_id"], bob.connection_id, ann.connection_id)


async def test_owner_going_offline_ends_the_room_on_the_other_instance(backing: Backing) -> None:
    async with cluster(backing=backing) as c:
        a, b = c.instances
        async with a.server.client() as http_a:
            room = await create_room(http_a, owner_name="Bob")
            joined = await join_room(http_a, room["room_id"], "Ann")
        async with connect(on(b, joined["ws_url"])) as ann:
            async with connect(room["ws_url"]):
                await ann.receive_until(event="user_online", display_name="Bob")
            offline = await ann.receive_until(type="presence", event="user_offline")
            assert offline["display_name"] == "Bob"
            notice = await ann.receive_until(type="system")
            assert notice["message"] == protocol.OWNER_OFFLINE
            await closed_with(ann)
        await c.no_keys_left(room["room_id"], offline["connection_id"], ann.connection_id)


async def test_rooms_expire_on_every_instance_and_leave_no_key() -> None:
    async with cluster() as c:
        a, b = c.instances
        async with a.server.client() as http_a:
            room = await create_room(http_a, owner_name="Bob", expiry_seconds=2)
            joined = await join_room(http_a, room["room_id"], "Ann")
        async with connect(room["ws_url"]) as bob, connect(on(b, joined["ws_url"])) as ann:
            for member in (bob, ann):
                notice = await member.receive_until(type="system")
                assert notice["message"] == protocol.EXPIRED
                await closed_with(member)
        await c.no_keys_left(room["room_id"], bob.connection_id, ann.connection_id)


async def _knock(url: str, outcomes: list[str], everyone_knocked: trio.Event) -> None:
    """One client racing for a seat; an admitted one keeps its seat until all have tried."""
    async with open_websocket_url(url) as ws:
        try:
            with trio.fail_after(20):
                await ws.get_message()  # The hello: admitted.
        except ConnectionClosed as closed:
            outcomes.append(closed.reason.reason or "")
            return
        outcomes.append("admitted")
        await everyone_knocked.wait()


async def test_admission_is_atomic_across_instances(backing: Backing) -> None:
    async with cluster(backing=backing) as c:
        a, b = c.instances
        async with a.server.client() as http_a:
            room = await create_room(http_a, owner_name="Bob", max_users=20)
        outcomes: list[str] = []
        everyone_knocked = trio.Event()
        async with trio.open_nursery() as nursery:
            for i in range(100):
                instance = (a, b)[i % 2]
                url = f"{instance.server.ws}/rooms/{room['room_id']}/ws?display_name=guest{i}"
                nursery.start_soon(_knock, url, outcomes, everyone_knocked)
            with trio.fail_after(60):
                await wait_until(lambda: _all(outcomes, 100), 60)
            async with b.server.client() as http_b:
                details = (await http_b.get(f"/rooms/{room['room_id']}")).json()
            everyone_knocked.set()
        assert Counter(outcomes) == {"admitted": 20, "Room is full": 80}
        assert details["online_users_count"] == 20 and details["is_full"]


async def test_the_newest_presence_counts_both_when_they_enter_on_two_instances_at_once(backing: Backing) -> None:
    """Twenty rooms, each entered at the same moment by its owner on A and a member on B, so
    each room's two arrivals are told in either order. Once both have heard both messages,
    the newest presence frame each got says 2. Counts taken at admission left about one such
    room in four with someone's newest frame saying 1."""
    newest: dict[tuple[str, str], int] = {}

    async def enter(url: str, name: str, room_id: str, heard_both: trio.Event, other: trio.Event) -> None:
        async with connect(url) as client:
            await client.say(name)
            heard: set[str] = set()
            while len(heard) < 2:
                frame = await client.receive()
                if frame["type"] == "presence":
                    newest[room_id, name] = frame["online_count"]
                elif frame["type"] == "message":
                    heard.add(frame["text"])
            heard_both.set()
            await other.wait()  # Neither leaves before both have heard everything.

    async with cluster(backing=backing) as c:
        a, b = c.instances
        async with a.server.client() as http_a, b.server.client() as http_b, trio.open_nursery() as nursery:
            for _ in range(20):
                room = await create_room(http_a, owner_name="Olga")
                member = await join_room(http_b, room["room_id"], "Bob")
                owner_done, member_done = trio.Event(), trio.Event()
                nursery.start_soon(enter, room["ws_url"], "Olga", room["room_id"], owner_done, member_done)
                nursery.start_soon(enter, member["ws_url"], "Bob", room["room_id"], member_done, owner_done)
    assert len(newest) == 40
    assert {key: count for key, count in newest.items() if count != 2} == {}


async def _all(outcomes: list[Any], count: int) -> bool:
    return len(outcomes) >= count


async def _named_clients(redis: RedisServer) -> int:
    listing: str = await redis.command("CLIENT", "LIST")
    return sum(f"name={CLIENT_NAME_PREFIX}" in line for line in listing.splitlines())


# Its 500 members may take up to 90 s to come in on a busy machine (the step's own limit).
@pytest.mark.deadline(180)
async def test_redis_connections_stay_constant_as_rooms_grow() -> None:
    async with cluster(count=1) as c:
        (a,) = c.instances
        members_in = trio.Semaphore(0)
        done = trio.Event()
        setting_up = trio.CapacityLimiter(25)

        async def member_of_new_room(http: httpx.AsyncClient) -> None:
            async with AsyncExitStack() as stack:
                async with setting_up:
                    room = await create_room(http, owner_name="Bob")
                    bob = await stack.enter_async_context(connect(room["ws_url"]))
                    await bob.receive_until(event="user_online")
                members_in.release()
                await done.wait()

        async with a.server.client() as http, trio.open_nursery() as nursery:
            nursery.start_soon(member_of_new_room, http)
            await members_in.acquire()
            one_room = await _named_clients(c.redis)
            for _ in range(ROOMS - 1):
                nursery.start_soon(member_of_new_room, http)
            with trio.fail_after(90):
                for _ in range(ROOMS - 1):
                    await members_in.acquire()
            many_rooms = await _named_clients(c.redis)
            listing: str = await c.redis.command("CLIENT", "LIST")
            done.set()
        # Every room is subscribed, all on the one pub/sub connection.
        assert [line for line in listing.splitlines() if f" sub={ROOMS} " in line]
        assert 1 <= one_room <= many_rooms <= SESSION_CONNECTIONS + POOL_CONNECTIONS, (one_room, many_rooms)


async def test_members_of_a_killed_instance_are_reaped_within_the_timeout() -> None:
    async with cluster() as c:
        a, b = c.instances
        async with a.server.client() as http:
            kept = await create_room(http, owner_name="Bob")
            kept_member = await join_room(http, kept["room_id"], "Ann")
            lost = await create_room(http, owner_name="Cid")
            lost_member = await join_room(http, lost["room_id"], "Dee")
            async with connect(kept["ws_url"]) as bob, connect(on(b, kept_member["ws_url"])) as ann:
                await bob.receive_until(event="user_online", display_name="Ann")
                async with connect(lost_member["ws_url"]) as dee, connect(on(b, lost["ws_url"])):
                    await dee.receive_until(event="user_online", display_name="Cid")
                    killed_at = trio.current_time()
                    b.proc.kill()  # SIGKILL: no goodbye from B for Ann or Cid.
                    with trio.fail_after(PRESENCE_TIMEOUT * 3):
                        gone = await bob.receive_until(event="user_offline")
                        ann_reaped = trio.current_time() - killed_at
                        owner_gone = await dee.receive_until(event="user_offline")
                        notice = await dee.receive_until(type="system")
                    cid_reaped = trio.current_time() - killed_at
                    assert (gone["display_name"], gone["connection_id"], gone["online_count"]) == (
                        "Ann", ann.connection_id, 1)
                    assert owner_gone["display_name"] == "Cid"
                    assert notice["message"] == protocol.OWNER_OFFLINE
                    await closed_with(dee)
                details = (await http.get(f"/rooms/{kept['room_id']}")).json()
                assert [u["display_name"] for u in details["online_users"]] == ["Bob"]
                assert (await http.get(f"/rooms/{lost['room_id']}")).status_code == 404
    print(f"ghosts reaped {ann_reaped:.2f} s and {cid_reaped:.2f} s after kill -9 (timeout {PRESENCE_TIMEOUT} s)")
    assert max(ann_reaped, cid_reaped) <= PRESENCE_TIMEOUT + 1.0


async def _all_ready(instances: list[ServerProcess], ready: bool) -> bool:
    for instance in instances:
        async with instance.server.client() as http:
            response = await http.get("/readyz")
        if (response.status_code == 200) != ready:
            return False
    return True


async def test_redis_outage_keeps_sockets_open_and_chat_resumes() -> None:
    async with open_redis_server(private=True) as redis, cluster(redis=redis) as c:
        a, b = c.instances
        async with a.server.client() as http_a:
            room = await create_room(http_a, owner_name="Bob")
            joined = await join_room(http_a, room["room_id"], "Ann")
            short = await create_room(http_a, owner_name="Cid", expiry_seconds=2)
        async with connect(room["ws_url"]) as bob, connect(on(b, joined["ws_url"])) as ann:
            await bob.receive_until(event="user_online", display_name="Ann")
            await ann.say("before")
            assert (await bob.receive_until(type="message"))["text"] == "before"

            async with connect(short["ws_url"]) as cid:
                await redis.stop()
                await wait_until(lambda: _all_ready(c.instances, False), 10)
                # A room that expires while Redis is away still ends in order on its own.
                assert (await cid.receive_until(type="system"))["message"] == protocol.EXPIRED
                await closed_with(cid)
            async with a.server.client() as http_a:
                refused = await http_a.post("/rooms/", json={"owner_name": "Eve"})
                assert refused.status_code == 503 and refused.json()["detail"]
                assert (await http_a.get(f"/rooms/{room['room_id']}")).status_code == 503
            await ann.say("during")
            error = await ann.receive_until(type="error")
            assert "unavailable" in error["detail"]

            await redis.start()
            restarted_at = trio.current_time()
            await wait_until(lambda: _all_ready(c.instances, True), 15)
            recovered = trio.current_time() - restarted_at
            await ann.say("after")
            assert (await bob.receive_until(type="message"))["text"] == "after"
            await bob.say("welcome back")
            assert (await ann.receive_until(type="message", display_name="Bob"))["text"] == "welcome back"
            # Redis came back empty: the instances put their rooms and members back.
            async with b.server.client() as http_b:
                details = (await http_b.get(f"/rooms/{room['room_id']}")).json()
            assert {u["display_name"] for u in details["online_users"]} == {"Bob", "Ann"}
    print(f"ready again {recovered:.2f} s after redis-server restarted")
    for instance in c.instances:
        assert instance.proc.returncode == 0, instance.output[-20:]
