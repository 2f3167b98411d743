"""Room sockets served on their own connections (chat.connections, chat.ws.raw), and every other
request still answered by Hypercorn as the connection arrived."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import hypercorn.trio.run as hypercorn_run
import trio
from hypercorn.trio import serve
from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    CloseConnection,
    Event,
    Ping,
    Pong,
    RejectConnection,
    Request,
    TextMessage,
)
from wsproto.extensions import PerMessageDeflate
from wsproto.frame_protocol import FrameProtocol

from chat import connections
from chat.__main__ import hypercorn_config
from chat.http import create_app

from .support import Server, connect, create_room, join_room, running_app, settings


class RawClient:
    """A WebSocket client on a bare TCP stream: what a browser or phone may send, frame by frame."""

    def __init__(self, stream: trio.SocketStream, ws: WSConnection) -> None:
        self.stream, self.ws = stream, ws
        self.events: list[Event] = []

    async def next_event(self) -> Event:
        with trio.fail_after(10):
            while not self.events:
                data = await self.stream.receive_some(65536)
                self.ws.receive_data(data or None)
                self.events.extend(self.ws.events())
        return self.events.pop(0)

    async def frame(self) -> dict[str, Any]:
        """The next text message, whole."""
        text = ""
        while True:
            event = await self.next_event()
            assert isinstance(event, TextMessage), event
            text += event.data
            if event.message_finished:
                return dict(json.loads(text))

    async def send(self, event: Event) -> None:
        await self.stream.send_all(self.ws.send(event))


def _target(ws_url: str) -> str:
    return ws_url[ws_url.index("/rooms/") :]


@asynccontextmanager
async def raw_client(
    server: Server, ws_url: str, *, deflate: bool = False, then: bytes = b""
) -> AsyncIterator[RawClient]:
    host, port = server.url.removeprefix("http://").rsplit(":", 1)
    stream = await trio.open_tcp_stream(host, int(port))
    ws = WSConnection(ConnectionType.CLIENT)
    extensions = [PerMessageDeflate()] if deflate else []
    request = ws.send(Request(host=host, target=_target(ws_url), extensions=extensions))
    await stream.send_all(request + then)  # ``then``: frames pipelined right behind the request
    client = RawClient(stream, ws)
    accepted = await client.next_event()
    assert isinstance(accepted, AcceptConnection), accepted
    async with stream:
        yield client


async def _room(server: Server) -> dict[str, Any]:
    async with server.client() as http:
        return await create_room(http, name="lane", owner_name="Owner")


def _tasks() -> list[trio.lowlevel.Task]:
    found, todo = [], [trio.lowlevel.current_root_task()]
    while todo:
        task = todo.pop()
        found.append(task)
        for nursery in task.child_nurseries:
            todo.extend(nursery.child_tasks)
    return found


async def test_a_room_socket_is_served_by_one_task_on_its_connection() -> None:
    async with running_app() as server:
        room = await _room(server)
        async with server.client() as http:
            joins = [await join_room(http, room["room_id"], f"m{i}") for i in range(5)]
        async with connect(server.ws + _target(room["ws_url"])):
            before = _tasks()
            async with (
                raw_client(server, joins[0]["ws_url"]) as a,
                raw_client(server, joins[1]["ws_url"]) as b,
                raw_client(server, joins[2]["ws_url"]) as c,
            ):
                for member in (a, b, c):
                    assert (await member.frame())["message"] == "Connected to room"
                await trio.testing.wait_all_tasks_blocked()
                after = _tasks()
        added = [task.name for task in after if task not in before]
    # Each member's connection is one task (the raw clients here add none): no ASGI app task
    # and no memory channel beside it, as Hypercorn's own WebSocket path would have.
    assert len(added) == 3, added
    assert not any("task_group" in name for name in added), added


async def test_frames_sent_right_behind_the_upgrade_request_are_read() -> None:
    async with running_app() as server:
        room = await _room(server)
        # A client may send frames before it reads the 101: they must not be lost.
        frame = json.dumps({"type": "message", "text": "early", "client_id": "e1"})
        early = FrameProtocol(client=True, extensions=[]).send_data(frame, fin=True)
        async with raw_client(server, room["ws_url"], then=early) as owner:
            assert (await owner.frame())["message"] == "Connected to room"
            seen = [await owner.frame() for _ in range(3)]
    assert {"type": "ack", "client_id": "e1", "offset": 1} in seen, seen
    assert any(f.get("text") == "early" for f in seen), seen


async def test_pings_fragments_and_compressed_messages() -> None:
    async with running_app() as server:
        room = await _room(server)
        async with raw_client(server, room["ws_url"], deflate=True) as owner:
            assert (await owner.frame())["message"] == "Connected to room"
            await owner.frame()  # the owner's own user_online
            await owner.send(Ping(payload=b"are you there"))
            assert await owner.next_event() == Pong(payload=b"are you there")
            whole = json.dumps({"type": "message", "text": "in three parts", "client_id": "f1"})
            for start, end, last in ((0, 10, False), (10, 20, False), (20, len(whole), True)):
                await owner.send(TextMessage(data=whole[start:end], message_finished=last))
            seen = [await owner.frame(), await owner.frame()]
            assert {"type": "ack", "client_id": "f1", "offset": 1} in seen, seen
            assert any(f.get("text") == "in three parts" for f in seen), seen
            await owner.send(CloseConnection(code=1000))
            closed = await owner.next_event()
            assert isinstance(closed, CloseConnection) and closed.code == 1000


async def test_a_message_over_the_limit_closes_the_socket_1009() -> None:
    async with running_app(settings(frame_max_bytes=1024)) as server:
        room = await _room(server)
        async with raw_client(server, room["ws_url"]) as owner:
            assert (await owner.frame())["message"] == "Connected to room"
            await owner.frame()
            # Over the limit in parts: only the message as a whole is too big.
            for _ in range(3):
                await owner.send(TextMessage(data="x" * 400, message_finished=False))
            while not isinstance(event := await owner.next_event(), CloseConnection):
                pass
    assert event.code == 1009


async def test_other_requests_to_a_socket_path_get_hypercorns_answers() -> None:
    async with running_app() as server:
        room = await _room(server)
        path = _target(room["ws_url"]).encode()
        host, port = server.url.removeprefix("http://").rsplit(":", 1)

        async def ask(request: bytes) -> bytes:
            async with await trio.open_tcp_stream(host, int(port)) as stream:
                await stream.send_all(request)
                answer = b""
                with trio.fail_after(10):
                    while b"\r\n\r\n" not in answer:
                        data = await stream.receive_some(65536)
                        assert data, answer
                        answer += data
                return answer.split(b"\r\n", 1)[0]

        no_upgrade = await ask(b"GET " + path + b" HTTP/1.1\r\nhost: x\r\n\r\n")
        no_key = await ask(
            b"GET " + path + b" HTTP/1.1\r\nhost: x\r\nupgrade: websocket\r\nconnection: upgrade\r\n"
            b"sec-websocket-version: 13\r\n\r\n"
        )
        garbage = await ask(b"\x16\x03\x01 not http at all\r\n\r\n")
        # A REST request arriving in pieces is replayed to Hypercorn whole.
        async with await trio.open_tcp_stream(host, int(port)) as stream:
            await stream.send_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n")
            await trio.testing.wait_all_tasks_blocked()
            await stream.send_all(b"\r\n")
            with trio.fail_after(10):
                health = await stream.receive_some(65536)
    assert no_upgrade.startswith(b"HTTP/1.1 4"), no_upgrade
    assert no_key == b"HTTP/1.1 400 ", no_key
    assert garbage.startswith(b"HTTP/1.1 400"), garbage
    assert health.startswith(b"HTTP/1.1 200"), health


async def test_a_connection_that_never_finishes_its_request_head_is_closed() -> None:
    config = settings()
    app = create_app(config)
    hyper = hypercorn_config(config)
    hyper.keep_alive_timeout = 0.2
    connections.install()
    async with trio.open_nursery() as nursery:
        binds = await nursery.start(lambda task_status: serve(app, hyper, task_status=task_status))
        host, port = binds[0].removeprefix("http://").rsplit(":", 1)
        async with await trio.open_tcp_stream(host, int(port)) as stream:
            await stream.send_all(b"GET /rooms/abc/ws HTTP/1.1\r\nhost: x\r\n")
            with trio.fail_after(10):
                assert await stream.receive_some(65536) == b""
        nursery.cancel_scope.cancel()


async def test_a_refused_socket_is_closed_after_its_accept_with_the_reason() -> None:
    async with running_app() as server:
        async with raw_client(server, server.ws + "/rooms/nosuchroom/ws?token=nope") as stranger:
            event = await stranger.next_event()
    assert isinstance(event, CloseConnection) and event.code == 1008, event
    assert not isinstance(event, RejectConnection)


def test_install_puts_our_connection_in_hypercorns_worker() -> None:
    connections.install()
    connections.install()  # twice is once
    assert hypercorn_run.TCPServer is connections.Connection
