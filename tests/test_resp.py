"""Commands packed for Redis (chat.bus.resp) are the bytes redis-py packs for them."""

from __future__ import annotations

import pytest
from redis.asyncio.connection import Connection

from chat.bus.resp import packed


def redis_py(commands: list[tuple[object, ...]]) -> bytes:
    return b"".join(Connection(decode_responses=True).pack_commands(commands))


def test_arguments_of_every_kind_are_packed_as_redis_py_packs_them() -> None:
    commands: list[tuple[object, ...]] = [
        ("MULTI",),
        ("HSET", "room:{a}:meta", "name", "Café ☕", "max_users", 205, "expires_at", 1764000000.125),
        ("PUBLISH", "room:{a}", "x" * 70_000),  # past redis-py's size for a separate buffer
        ("EVALSHA", "ab" * 20, 1, b"raw\r\nbytes", -3, 0.1),
        ("EXEC",),
    ]
    assert packed(commands) == redis_py(commands)


def test_a_command_given_as_a_list_is_packed_as_the_same_tuple() -> None:
    assert packed([["SET", "room:{a}:meta", 7]]) == packed([("SET", "room:{a}:meta", 7)])


@pytest.mark.parametrize("argument", [True, None, ["a"]])
def test_an_argument_redis_py_refuses_is_refused(argument: object) -> None:
    with pytest.raises(TypeError):
        packed([("SET", "k", argument)])
