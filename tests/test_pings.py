"""Keep-alive: every member is pinged once per interval, from one task for the whole instance,
and its socket is told to give up on a peer that stops acknowledging."""

from __future__ import annotations

import gc
import itertools
import socket

import pytest
import trio
import trio.testing
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, Event, Ping, Request, TextMessage

from .support import create_room, running_app, settings

PING_SECONDS = 20.0


class RawClient:
    """A WebSocket client that shows control frames too (trio-websocket answers pings unseen)."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.ws = WSConnection(ConnectionType.CLIENT)

    async def open(self, host: str, target: str) -> None:
        await self.stream.send_all(self.ws.send(Request(host=host, target=target)))
        assert isinstance(await self.next_event(), AcceptConnection)

    async def next_event(self) -> Event:
        while True:
            for event in self.ws.events():
                return event
            self.ws.receive_data(await self.stream.receive_some())


async def test_members_are_pinged_every_interval(autojump_clock: trio.testing.MockClock) -> None:
    config = settings(ws_ping_seconds=PING_SECONDS)
    async with running_app(config) as server, server.client() as http:
        room = await create_room(http, expiry_seconds=3600)
        url = room["ws_url"].removeprefix(server.ws)
        host, port = server.url.removeprefix("http://").split(":")
        clients = []
        for _ in range(3):
            client = RawClient(await trio.open_tcp_stream(host, int(port)))
            await client.open(f"{host}:{port}", url)
            clients.append(client)
        joined = trio.current_time()
        pings: list[list[float]] = [[] for _ in clients]

        async def three_pings(client: RawClient, seen: list[float]) -> None:
            while len(seen) < 3:  # Hello and presence frames come too, pings among them.
                event = await client.next_event()
                if isinstance(event, Ping):
                    seen.append(trio.current_time())
                    await client.stream.send_all(client.ws.send(event.response()))
                else:
                    assert isinstance(event, TextMessage)

        async with trio.open_nursery() as nursery:
            for client, seen in zip(clients, pings, strict=True):
                nursery.start_soon(three_pings, client, seen)
        for seen in pings:
            # The first within two intervals of joining (it joined mid-round), then one a round.
            assert seen[0] - joined <= 2 * PING_SECONDS
            assert [b - a for a, b in itertools.pairwise(seen)] == pytest.approx([PING_SECONDS] * 2)
        for client in clients:
            await client.stream.aclose()


def server_side_of(client: trio.SocketStream) -> trio.socket.SocketType:
    """The server's socket of a connection, this process being the server too."""
    wanted = client.socket.getsockname()
    (found,) = [s for s in gc.get_objects() if _is_open_socket(s) and _peer(s) == wanted]
    return found


def _is_open_socket(obj: object) -> bool:
    try:
        return isinstance(obj, trio.socket.SocketType) and obj.fileno() != -1
    except ReferenceError:  # A dead weak proxy among the objects.
        return False


def _peer(s: trio.socket.SocketType) -> object:
    try:
        return s.getpeername()
    except OSError:
        return None


async def test_each_socket_gives_up_on_a_peer_that_stops_acknowledging() -> None:
    async with running_app(settings(ws_ping_seconds=PING_SECONDS)) as server, server.client() as http:
        room = await create_room(http)
        host, port = server.url.removeprefix("http://").split(":")
        client = RawClient(await trio.open_tcp_stream(host, int(port)))
        await client.open(f"{host}:{port}", room["ws_url"].removeprefix(server.ws))
        await client.next_event()  # hello: the member is in
        ours = server_side_of(client.stream)
        # The kernel's bound on unacknowledged data (pings included), in milliseconds.
        assert ours.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT) == 2 * PING_SECONDS * 1000
        await client.stream.aclose()
