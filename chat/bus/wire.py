"""A connection to Redis spoken from Trio: commands out, their replies back, no bridge crossing.

Requests' batches (chat.bus.batches) are one round trip each. Through redis-py's asyncio
connection a round trip costs a handoff to asyncio, an asyncio task step to write, a reader
task woken through trio-asyncio, another task step to parse, and the way back: with one room
created at a time, 0.65 ms of server CPU per creation against 0.31 on MemoryBus
(benchmarks/RESULTS.md, 2026-12-04 "evening"). ``TrioWire`` writes the commands on a Trio
socket and parses the replies with hiredis (the parser redis-py reads with), in the task that
gathered them.

It opens its connection as redis-py opens one from the same URL: TCP or a Unix socket, then
``AUTH`` (user and password, or the password alone), ``SELECT`` of a database other than 0 and
``CLIENT SETNAME``; replies decoded as UTF-8 and Redis's errors made into redis-py's exception
classes, as values in the list of replies rather than raised. A TLS URL (``rediss://``) keeps
redis-py's connection (``AioWire``): the same calls, one crossing to asyncio per round trip.
"""

from __future__ import annotations

from typing import Any, Protocol

import hiredis
import trio
from redis import exceptions as rx
from redis._parsers.base import BaseParser
from redis.asyncio.connection import AbstractConnection, Connection, UnixDomainSocketConnection

from .resp import packed

# Most bytes read at once, as redis-py's asyncio connection reads them.
READ_SIZE = 2**16
_MORE = object()  # hiredis's answer while the next reply is not in yet.


class Wire(Protocol):
    async def exchange(self, data: bytes, count: int) -> list[Any]:
        """Send ``data`` (packed commands) and read ``count`` replies, an error reply as the
        redis-py exception it stands for."""
        ...

    async def aclose(self) -> None: ...


class TrioWire:
    def __init__(self, stream: trio.abc.Stream) -> None:
        self._stream = stream
        self._reader = hiredis.Reader(
            # Bytes that are not RESP leave the stream out of step: a connection to drop.
            protocolError=rx.ConnectionError,
            replyError=BaseParser.parse_error,
            encoding="utf-8",
            notEnoughData=_MORE,
        )

    async def exchange(self, data: bytes, count: int) -> list[Any]:
        try:
            await self._stream.send_all(data)
            replies: list[Any] = []
            while len(replies) < count:
                reply = self._reader.gets()
                if reply is _MORE:
                    received = await self._stream.receive_some(READ_SIZE)
                    if not received:
                        raise rx.ConnectionError("Redis closed the connection")
                    self._reader.feed(received)
                else:
                    replies.append(reply)
            return replies
        except (trio.BrokenResourceError, trio.ClosedResourceError) as error:
            raise rx.ConnectionError(f"connection to Redis broken: {error}") from error

    async def aclose(self) -> None:
        await trio.aclose_forcefully(self._stream)


class AioWire:
    """redis-py's own connection, for what ``TrioWire`` does not speak (TLS)."""

    def __init__(self, connection: AbstractConnection, link: Any) -> None:
        self._connection = connection
        self._link = link

    async def exchange(self, data: bytes, count: int) -> list[Any]:
        result: list[Any] = await self._link.aio(self._exchange, data, count)
        return result

    async def _exchange(self, data: bytes, count: int) -> list[Any]:
        """Runs on asyncio."""
        await self._connection.send_packed_command(data, check_health=False)
        return [await _reply(self._connection) for _ in range(count)]

    async def aclose(self) -> None:
        await self._link.close_connection(self._connection)


async def open_trio_wire(connection_class: type, options: dict[str, Any], connect_timeout: float) -> TrioWire | None:
    """A ``TrioWire`` to the Redis that redis-py's ``connection_class`` with ``options`` (a
    pool's ``connection_kwargs``) would reach, or None for a kind it does not speak."""
    if connection_class not in (Connection, UnixDomainSocketConnection):
        return None
    try:
        with trio.fail_after(connect_timeout):
            if connection_class is Connection:
                stream: trio.abc.Stream = await trio.open_tcp_stream(
                    options.get("host", "localhost"), int(options.get("port", 6379))
                )
            else:
                stream = await trio.open_unix_socket(options["path"])
    except trio.TooSlowError as error:
        raise rx.TimeoutError("timed out connecting to Redis") from error
    wire = TrioWire(stream)
    try:
        with trio.fail_after(connect_timeout):
            await _hello(wire, options)
    except trio.TooSlowError as error:
        await wire.aclose()
        raise rx.TimeoutError("Redis did not answer the connection's first commands") from error
    except BaseException:
        await wire.aclose()
        raise
    return wire


async def _hello(wire: TrioWire, options: dict[str, Any]) -> None:
    """The commands redis-py opens a connection with, as far as ours use them."""
    commands: list[tuple[Any, ...]] = []
    password, username = options.get("password"), options.get("username")
    if password is not None:
        commands.append(("AUTH", username, password) if username else ("AUTH", password))
    if int(options.get("db") or 0):
        commands.append(("SELECT", int(options["db"])))
    if options.get("client_name"):
        commands.append(("CLIENT", "SETNAME", options["client_name"]))
    if not commands:
        return
    for reply in await wire.exchange(packed(commands), len(commands)):
        if isinstance(reply, Exception):
            raise rx.ConnectionError(f"Redis refused the connection: {reply}") from reply


async def _reply(connection: AbstractConnection) -> Any:
    """Runs on asyncio: the next reply, or the error Redis answered instead."""
    try:
        return await connection.read_response()
    except rx.ResponseError as error:  # Read whole: the connection stays in step.
        return error
