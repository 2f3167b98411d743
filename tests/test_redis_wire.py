"""Requests' batches speak to Redis from Trio (chat.bus.wire): reached as redis-py reaches it
from the same URL (password, ACL user, database, Unix socket), answering as redis-py answers."""

from __future__ import annotations

import os
import tempfile

import trio_asyncio
from redis import exceptions as rx
from redis.asyncio import BlockingConnectionPool

from chat.bus import Admission, keys
from chat.bus.link import RedisLink
from chat.bus.resp import packed
from chat.bus.wire import AioWire, TrioWire, open_trio_wire

from .redis_server import RedisServer, open_redis_server
from .test_bus_contract import member, new_room, redis_bus

CONNECT_TIMEOUT = 5.0


async def _clients(server: RedisServer) -> list[dict[str, str]]:
    listing: str = await server.command("CLIENT", "LIST")
    return [dict(item.split("=", 1) for item in line.split(" ") if "=" in item) for line in listing.splitlines()]


async def test_batches_reach_a_redis_with_a_password_a_user_and_a_database() -> None:
    """An ACL user with its password, database 3: rooms are created in database 3, and every
    connection of the instance, the batches' included, is the user's, on database 3, named."""
    options = ["--requirepass", "admin-secret", "--user", "chat", "on", ">chat-secret", "~*", "&*", "+@all"]
    async with open_redis_server(private=True, options=options, password="admin-secret") as server:
        url = f"redis://chat:chat-secret@127.0.0.1:{server.port}/3"
        async with redis_bus(url) as bus:
            room = new_room()
            await bus.create_room(room)
            assert (await bus.admit(room.room_id, member())).status is Admission.ADMITTED
            assert await bus.occupancy(room.room_id) == (room, 1, False)
            assert await server.command("EXISTS", keys.room_meta(room.room_id)) == 0  # Not in database 0.
            await server.command("SELECT", 3)
            assert await server.command("EXISTS", keys.room_meta(room.room_id)) == 1
            ours = [client for client in await _clients(server) if client["user"] == "chat"]
            assert len(ours) >= 3  # A pooled one, the pub/sub reader's, the batches'...
            assert {(client["db"], client["name"]) for client in ours} == {("3", f"ephemeralchat-{bus.instance_id}")}


async def test_batches_reach_a_redis_on_a_unix_socket() -> None:
    with tempfile.TemporaryDirectory() as directory:
        path = os.path.join(directory, "redis.sock")
        async with open_redis_server(private=True, options=["--unixsocket", path]):
            async with redis_bus(f"unix://{path}?db=2") as bus:
                room = new_room(max_users=1)
                await bus.create_room(room)
                assert (await bus.admit(room.room_id, member())).status is Admission.ADMITTED
                assert (await bus.admit(room.room_id, member("Cy"))).status is Admission.FULL


async def test_a_redis_that_refuses_the_password_is_not_reached() -> None:
    async with open_redis_server(private=True, options=["--requirepass", "right"], password="right") as server:
        pool = BlockingConnectionPool.from_url(f"redis://:wrong@127.0.0.1:{server.port}/0")
        try:
            await open_trio_wire(pool.connection_class, pool.connection_kwargs, CONNECT_TIMEOUT)
        except rx.ConnectionError as error:
            assert "WRONGPASS" in str(error) or "invalid" in str(error)
        else:
            raise AssertionError("a wire opened with the wrong password")


async def test_a_tls_url_keeps_redis_pys_connection() -> None:
    pool = BlockingConnectionPool.from_url("rediss://127.0.0.1:6390/0")
    assert await open_trio_wire(pool.connection_class, pool.connection_kwargs, CONNECT_TIMEOUT) is None


async def test_both_wires_answer_alike() -> None:
    """The same commands on a Trio wire and on redis-py's connection (what TLS uses): the same
    replies, decoded; errors, NOSCRIPT among them, as values in their place; the connection
    in step after them."""
    commands = [
        ("SET", "k", "välue"),
        ("GET", "k"),
        ("HSET", "h", "a", 1, "b", "two"),
        ("HGETALL", "h"),
        ("EVALSHA", "0" * 40, 0),
        ("INCR", "k"),
        ("MULTI",),
        ("INCR", "n"),
        ("EXEC",),
        ("GET", "missing"),
    ]
    async with open_redis_server(private=True) as server, trio_asyncio.open_loop() as loop:
        link = RedisLink(server.url, loop, client_name="wire-test")
        pool = link.pool
        trio_wire = await open_trio_wire(pool.connection_class, pool.connection_kwargs, CONNECT_TIMEOUT)
        assert isinstance(trio_wire, TrioWire)
        aio_wire = AioWire(await link.dedicated_connection(), link)
        answers = []
        for wire in (trio_wire, aio_wire):
            await server.command("FLUSHALL")
            answers.append(await wire.exchange(packed(commands), len(commands)))
            assert await wire.exchange(packed([("PING",)]), 1) == ["PONG"]
            await wire.aclose()
        for replies in answers:
            assert replies[:4] == ["OK", "välue", 2, ["a", "1", "b", "two"]]
            assert isinstance(replies[4], rx.NoScriptError)
            assert isinstance(replies[5], rx.ResponseError) and "not an integer" in str(replies[5])
            assert replies[6:] == ["OK", "QUEUED", [1], None]
        assert [type(reply) for reply in answers[0]] == [type(reply) for reply in answers[1]]
        assert [str(reply) for reply in answers[0]] == [str(reply) for reply in answers[1]]
