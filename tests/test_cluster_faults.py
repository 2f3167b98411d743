"""Two instances on a Redis Cluster through its faults: a master killed, a slot moved.

Each test has a private cluster (it breaks it). The timings printed are what the report
quotes; none is asserted beyond a generous bound.
"""

from __future__ import annotations

import itertools
from typing import Any

import orjson
import pytest
import trio
from redis.crc import key_slot

from chat.bus import keys

from .redis_cluster import Backing, ClusterKeys, Node, RedisCluster, open_redis_cluster
from .support import Client, connect, create_room, join_room
from .test_scaling import Cluster, cluster, on

# Within this, chat in a room whose master died must work again (the issue asks for 15 s;
# the bound is looser so a busy machine does not fail it, and the time taken is printed).
RECOVERY_BOUND_SECONDS = 45
HISTORY = "200"
probes = itertools.count()


async def probe(sender: Client, within: float = 20) -> tuple[str, dict[str, Any]]:
    """One message with a client_id; its ack, or the error frame that says it did not go out."""
    client_id = f"p{next(probes)}"
    text = f"probe {client_id}"
    await sender.ws.send_message(orjson.dumps({"type": "message", "text": text, "client_id": client_id}).decode())
    with trio.fail_after(within):  # Neither ack nor error: a silent loss, which fails the test.
        while True:
            frame = await sender.receive(within)
            if frame.get("client_id") == client_id and frame["type"] in ("ack", "error"):
                return text, frame


async def acked_probe(sender: Client, bound: float = 20) -> str:
    """Probes until one is acknowledged (each refusal is an error frame, never silence)."""
    with trio.fail_after(bound):
        while True:
            text, answer = await probe(sender)
            if answer["type"] == "ack":
                return text
            await trio.sleep(0.1)  # Pacing the next attempt, not waiting for an event.


async def until_heard(
    sender: Client, listener: Client, bound: float, heard: list[str] | None = None
) -> tuple[float, list[str], int]:
    """Probes until one reaches ``listener``: (seconds taken, texts acked, error frames).
    Every message ``listener`` hears meanwhile goes into ``heard``."""
    heard = [] if heard is None else heard
    started = trio.current_time()
    acked: list[str] = []
    errors = 0
    with trio.fail_after(bound):
        while True:
            text, answer = await probe(sender)
            if answer["type"] == "error":
                errors += 1
                await trio.sleep(0.1)  # Pacing the next attempt, not waiting for an event.
                continue
            acked.append(text)
            with trio.move_on_after(3):
                while True:
                    heard.append((await listener.receive_until(bound, type="message"))["text"])
                    if heard[-1] == text:
                        return trio.current_time() - started, acked, errors


async def room_pair(
    c: Cluster, redis_cluster: RedisCluster, avoid: Node | None = None
) -> tuple[dict[str, Any], dict[str, Any], Node]:
    """A room made on A and joined by a second member, whose master is not ``avoid``: the
    create and join answers, and its master."""
    a, _ = c.instances
    async with a.server.client() as http:
        while True:
            room = await create_room(http, owner_name="Bob")
            master = await redis_cluster.master_of(keys.room_meta(room["room_id"]))
            if master is not avoid:
                return room, await join_room(http, room["room_id"], "Ann"), master


@pytest.mark.deadline(150)
async def test_a_room_whose_master_is_killed_works_again_and_other_shards_keep_working() -> None:
    async with open_redis_cluster() as redis_cluster:
        backing = Backing(ClusterKeys(redis_cluster), {"REDIS_CLUSTER_NODES": redis_cluster.seeds, "REDIS_URL": ""})
        # Heartbeats that outlive the failover (2-3 s here): an instance whose heartbeat key sat
        # on the killed master is not taken for dead, with its members, while the replica takes over.
        env = {"HISTORY_SIZE": HISTORY, "PRESENCE_TIMEOUT_SECONDS": "10"}
        async with cluster(backing=backing, env=env) as c:
            _, b = c.instances
            room, joined, master = await room_pair(c, redis_cluster)
            other, other_joined, _ = await room_pair(c, redis_cluster, avoid=master)
            async with (
                connect(room["ws_url"]) as bob,
                connect(on(b, joined["ws_url"])) as ann,
                connect(other["ws_url"]) as olga,
                connect(on(b, other_joined["ws_url"])) as pat,
            ):
                await bob.receive_until(event="user_online", display_name="Ann")
                await olga.receive_until(event="user_online", display_name="Ann")
                before = await until_heard(bob, ann, 10)
                assert before[2] == 0
                killed_at = trio.current_time()
                redis_cluster.kill(master)
                heard: list[str] = []
                results: dict[str, tuple[float, list[str], int]] = {}

                async def measure(name: str, sender: Client, listener: Client, into: list[str]) -> None:
                    results[name] = await until_heard(sender, listener, RECOVERY_BOUND_SECONDS, into)

                # Both rooms at once, from the moment of the kill.
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(measure, "room", bob, ann, heard)
                    nursery.start_soon(measure, "other", olga, pat, [])
                seconds, acked, errors = results["room"]
                other_seconds, _, other_errors = results["other"]
                await redis_cluster.until_promoted(master)
                promoted = trio.current_time() - killed_at
                print(
                    f"\nfailover: chat in the room works again {seconds:.1f} s after kill -9 of its master "
                    f"({errors} error frames meanwhile, none silent); the cluster reported its replica promoted "
                    f"{promoted:.1f} s after; a room on another shard answered in {other_seconds:.1f} s "
                    f"({other_errors} error frames)"
                )
                # Rooms whose shard lived on never noticed.
                assert other_errors == 0
                # Every message acknowledged reached the other member exactly once, late or not.
                # (The sender's instance may still be between sessions, its map of the cluster
                # read while the cluster was down: it refuses with an error frame until it is back.)
                last = await acked_probe(bob)
                acked.append(last)
                with trio.move_on_after(5):
                    while last not in heard:
                        heard.append((await ann.receive_until(5, type="message"))["text"])
                assert [text for text in heard if text in acked] == acked, (acked, heard)


@pytest.mark.deadline(120)
async def test_a_live_rooms_slot_moving_to_another_master_keeps_the_room_working() -> None:
    async with open_redis_cluster() as redis_cluster:
        backing = Backing(ClusterKeys(redis_cluster), {"REDIS_CLUSTER_NODES": redis_cluster.seeds, "REDIS_URL": ""})
        async with cluster(backing=backing, env={"HISTORY_SIZE": HISTORY}) as c:
            _, b = c.instances
            room, joined, master = await room_pair(c, redis_cluster)
            async with connect(room["ws_url"]) as bob, connect(on(b, joined["ws_url"])) as ann:
                await bob.receive_until(event="user_online", display_name="Ann")
                await until_heard(bob, ann, 10)
                slot = key_slot(keys.room_meta(room["room_id"]).encode())
                target = next(m for m in await redis_cluster.masters() if m is not master)
                started = trio.current_time()
                await redis_cluster.move_slot(slot, target)
                moved = trio.current_time() - started
                seconds, _, errors = await until_heard(bob, ann, RECOVERY_BOUND_SECONDS)
                print(
                    f"\nreshard: slot {slot} moved in {moved:.2f} s; chat in its room answered {seconds:.2f} s "
                    f"later ({errors} error frames meanwhile)"
                )
                # Its history moved with it: a newcomer reads what was said before the move.
                async with c.instances[0].server.client() as http:
                    cy = await join_room(http, room["room_id"], "Cy")
                async with connect(cy["ws_url"]) as newcomer:
                    assert (await newcomer.receive_until(type="message"))["replayed"] is True
