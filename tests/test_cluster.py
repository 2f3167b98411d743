"""What a Redis Cluster adds: rooms spread over the shards, connections bounded per node; and
a cluster that stops answering is an outage, as one Redis that stops answering is."""

from __future__ import annotations

from contextlib import AsyncExitStack

import pytest
import trio
from redis.crc import key_slot

from chat.bus import BusUnavailable, keys
from chat.bus.link import POOL_CONNECTIONS
from chat.bus.redis import CLIENT_NAME_PREFIX, RedisBus

from .redis_cluster import SharedCluster, open_redis_cluster
from .redis_server import wait_until
from .test_bus_contract import new_room, redis_bus

ROOMS = 192


async def test_rooms_spread_over_the_masters_with_one_subscription_connection_each(
    shared_cluster: SharedCluster,
) -> None:
    cluster = await shared_cluster.get()
    async with redis_bus("", cluster_nodes=cluster.seeds) as bus, AsyncExitStack() as stack:
        rooms = [new_room() for _ in range(ROOMS)]
        for room in rooms:
            await bus.create_room(room)
            await stack.enter_async_context(bus.subscribe(room.room_id))
        owners = await cluster.slots()
        masters = await cluster.masters()
        held = {master.port: 0 for master in masters}
        for room in rooms:
            held[owners[key_slot(keys.room_meta(room.room_id).encode())].port] += 1
        share = ROOMS / len(masters)
        print(f"rooms per master (share {share:.0f}): {held}")
        assert all(count <= 1.5 * share for count in held.values()), held

        name = f"name={CLIENT_NAME_PREFIX}{bus.instance_id} "
        for master in masters:
            ours = [line for line in (await master.command("CLIENT", "LIST")).splitlines() if name in line]
            subscribers = [line for line in ours if " ssub=0 " not in line]
            # One connection carries every room of this shard; commands use a bounded few.
            assert len(subscribers) == 1, ours
            assert len(ours) <= POOL_CONNECTIONS + 1, ours


async def test_a_cluster_that_stops_answering_counts_as_down_until_it_answers_again() -> None:
    async with open_redis_cluster() as cluster, redis_bus("", cluster_nodes=cluster.seeds, command_timeout=1) as bus:
        room = new_room()
        await bus.create_room(room)
        cluster.pause()
        try:
            with pytest.raises(BusUnavailable):
                await bus.get_room(room.room_id)
            # The slot map cannot be read again from any node: the instance is not ready.
            await wait_until(lambda: _ready(bus, False), 10)
        finally:
            cluster.resume()
        with trio.fail_after(20):
            await bus.until_ready()
        assert await bus.get_room(room.room_id) == room


async def _ready(bus: RedisBus, ready: bool) -> bool:
    return bus.ready is ready
