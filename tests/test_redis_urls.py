"""Every connection of an instance to Redis reaches it as REDIS_URL says: an ACL user and its
password, a database, a Unix socket."""

from __future__ import annotations

import os
import tempfile

from chat.bus import Admission, keys

from .redis_server import RedisServer, open_redis_server
from .test_bus_contract import member, new_room, redis_bus


async def _clients(server: RedisServer) -> list[dict[str, str]]:
    listing: str = await server.command("CLIENT", "LIST")
    return [dict(item.split("=", 1) for item in line.split(" ") if "=" in item) for line in listing.splitlines()]


async def test_an_instance_reaches_a_redis_with_a_password_a_user_and_a_database() -> None:
    """An ACL user with its password, database 3: rooms are created in database 3, and every
    connection of the instance (its pool's, the pub/sub reader's, the publisher's, the batches')
    is the user's, on database 3, named."""
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


async def test_an_instance_reaches_a_redis_on_a_unix_socket() -> None:
    with tempfile.TemporaryDirectory() as directory:
        path = os.path.join(directory, "redis.sock")
        async with open_redis_server(private=True, options=["--unixsocket", path]) as server:
            async with redis_bus(f"unix://{path}?db=2") as bus:
                room = new_room(max_users=1)
                await bus.create_room(room)
                assert (await bus.admit(room.room_id, member())).status is Admission.ADMITTED
                assert (await bus.admit(room.room_id, member("Cy"))).status is Admission.FULL
                ours = [client for client in await _clients(server) if client["name"].startswith("ephemeralchat-")]
                assert len(ours) >= 3 and {client["db"] for client in ours} == {"2"}
                assert all(client["addr"].startswith(path) for client in ours)
