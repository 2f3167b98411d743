"""Room sockets served on their own connections (chat.connections, chat.ws.raw), and every other
request still answered by Hypercorn as the connection arrived."""

from __future__ import annotations

import json
import re
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import hypercorn.trio.run as hypercorn_run
import pytest
import trio
import trio.testing
from hypercorn.trio import serve
from hypercorn.trio.tcp_server import TCPServer
from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    CloseConnection,
    Event,
    Ping,
    Pong,
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


@asynccontextmanager
async def short_keep_alive() -> AsyncIterator[trio.SocketStream]:
    """A connection to our server whose keep-alive timeout is 0.2 s."""
    config = settings()
    app = create_app(config)
    hyper = hypercorn_config(config)
    hyper.keep_alive_timeout = 0.2
    connections.install()
    async with trio.open_nursery() as nursery:
        binds = await nursery.start(lambda task_status: serve(app, hyper, task_status=task_status))
        host, port = binds[0].removeprefix("http://").rsplit(":", 1)
        async with await trio.open_tcp_stream(host, int(port)) as stream:
            yield stream
        nursery.cancel_scope.cancel()


async def test_a_connection_that_never_finishes_its_request_head_is_closed() -> None:
    async with short_keep_alive() as stream:
        await stream.send_all(b"GET /rooms/abc/ws HTTP/1.1\r\nhost: x\r\n")
        with trio.fail_after(10):
            assert await stream.receive_some(65536) == b""


async def test_a_refused_socket_is_closed_after_its_accept_with_the_reason() -> None:
    async with running_app() as server:
        async with raw_client(server, server.ws + "/rooms/nosuchroom/ws?token=nope") as stranger:
            event = await stranger.next_event()
    assert isinstance(event, CloseConnection) and event.code == 1008, event


def test_install_puts_our_connection_in_hypercorns_worker() -> None:
    connections.install()
    connections.install()  # twice is once
    assert hypercorn_run.TCPServer is connections.Connection


# REST on the connection: room creation and joining (chat.raw_http), the rest Hypercorn's.

DATE = re.compile(rb"\r\ndate: [^\r]*")


async def read_answers(stream: trio.SocketStream, count: int, buffer: bytearray | None = None) -> list[bytes]:
    """``count`` whole responses (head and Content-Length body, dates blanked), interim ones included."""
    data = buffer if buffer is not None else bytearray()
    answers: list[bytes] = []
    with trio.fail_after(10):
        while len(answers) < count:
            end = data.find(b"\r\n\r\n")
            if end >= 0:
                head = bytes(data[: end + 4])
                length = re.search(rb"\r\ncontent-length: (\d+)", head, re.IGNORECASE)
                size = end + 4 + (int(length[1]) if length else 0)
                if len(data) >= size:
                    answers.append(DATE.sub(b"\r\ndate: -", bytes(data[:size])))
                    del data[:size]
                    continue
            chunk = await stream.receive_some(65536)
            assert chunk, f"closed after {answers!r} and {bytes(data)!r}"
            data += chunk
    return answers


def post(path: str, body: bytes, *extra: str, version: str = "1.1") -> bytes:
    head = [f"POST {path} HTTP/{version}", "host: test", "content-type: application/json", *extra]
    return ("\r\n".join([*head, f"content-length: {len(body)}"]) + "\r\n\r\n").encode() + body


@asynccontextmanager
async def lane_and_hypercorn(**overrides: Any) -> AsyncIterator[tuple[str, str]]:
    """The app served two ways at once: on our connections, and all through Hypercorn (an ASGI
    callable in front of an app of its own hides its lanes); each with its own rooms."""
    config = settings(**overrides)
    ours, theirs = create_app(config), create_app(config)

    async def hypercorn_only(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await theirs(scope, receive, send)

    connections.install()
    async with trio.open_nursery() as nursery:
        urls = []
        for app in (ours, hypercorn_only):
            binds = await nursery.start(
                lambda task_status, app=app: serve(app, hypercorn_config(config), task_status=task_status)
            )
            urls.append(binds[0].removeprefix("http://"))
        yield urls[0], urls[1]
        nursery.cancel_scope.cancel()


async def ask_raw(where: str, request: bytes, count: int = 1) -> list[bytes]:
    host, port = where.rsplit(":", 1)
    async with await trio.open_tcp_stream(host, int(port)) as stream:
        await stream.send_all(request)
        return await read_answers(stream, count)


async def test_creation_and_joining_answer_on_the_connection_as_hypercorn_does() -> None:
    async with lane_and_hypercorn() as (ours, hypercorn):
        for request in (
            post("/rooms/", b"{not json"),
            post("/rooms", b'{"name": "", "owner_name": "Jo"}'),
            post("/rooms/", b'{"name": "x", "owner_name": "Jo", "max_users": -1}'),
            post("/rooms/", b"x" * (64 * 1024 + 1)),
            post("/rooms/nosuchroom/join", b'{"display_name": "Ann"}'),
            post("/rooms/", b"[]", "origin: https://elsewhere.example"),
        ):
            assert await ask_raw(ours, request) == await ask_raw(hypercorn, request), request
        created = post("/rooms/", b'{"name": "x", "owner_name": "Jo"}')
        mine, theirs = (await ask_raw(ours, created))[0], (await ask_raw(hypercorn, created))[0]
    # A new room's ids, tokens and URL (the ports differ) do; its status and headers do not.
    length = re.compile(rb"\r\ncontent-length: \d+")
    assert length.sub(b"", mine.split(b"\r\n\r\n")[0]) == length.sub(b"", theirs.split(b"\r\n\r\n")[0])
    assert mine.startswith(b"HTTP/1.1 200 ")


async def test_a_kept_alive_connection_takes_any_request_after_ours(monkeypatch: pytest.MonkeyPatch) -> None:
    handed_over: list[Any] = []

    class Watched(TCPServer):
        def __init__(self, *args: Any) -> None:
            handed_over.append(args[-1])
            super().__init__(*args)

    connections.install()  # before the watch: it checks it replaces Hypercorn's own
    monkeypatch.setattr(connections, "TCPServer", Watched)
    async with lane_and_hypercorn() as (ours, _):
        host, port = ours.rsplit(":", 1)
        async with await trio.open_tcp_stream(host, int(port)) as stream:
            await stream.send_all(post("/rooms/", b'{"name": "x", "owner_name": "Jo"}'))
            (created,) = await read_answers(stream, 1)
            room_id = json.loads(created.split(b"\r\n\r\n", 1)[1])["room_id"]
            assert handed_over == []  # served on the connection, not by Hypercorn
            # Pipelined in one write: ours, Hypercorn's (from then on the connection is its), ours.
            await stream.send_all(
                post(f"/rooms/{room_id}/join", b'{"display_name": "Ann"}')
                + b"GET /healthz HTTP/1.1\r\nhost: test\r\n\r\n"
                + post(f"/rooms/{room_id}/join", b'{"display_name": "Bob"}')
            )
            answers = await read_answers(stream, 3)
    assert [a.split(b"\r\n", 1)[0] for a in answers] == [b"HTTP/1.1 200 "] * 3, answers
    assert len(handed_over) == 1  # from the GET on
    assert b'"display_name":"Ann"' not in answers[1] and b"ws_url" in answers[2]


async def test_a_client_that_waits_for_100_continue_gets_it_then_its_answer() -> None:
    async with lane_and_hypercorn() as (ours, hypercorn):
        request = post("/rooms/", b'{"name": "x", "owner_name": "Jo"}', "expect: 100-continue")
        host, port = ours.rsplit(":", 1)
        async with await trio.open_tcp_stream(host, int(port)) as stream:
            head, body = request.split(b"\r\n\r\n")
            await stream.send_all(head + b"\r\n\r\n")
            buffer = bytearray()
            (interim,) = await read_answers(stream, 1, buffer)
            await stream.send_all(body)
            (final,) = await read_answers(stream, 1, buffer)
        (theirs,) = await ask_raw(hypercorn, head + b"\r\n\r\n" + body, 1)
    assert interim == theirs
    assert interim.startswith(b"HTTP/1.1 100 ") and final.startswith(b"HTTP/1.1 200 "), (interim, final)


async def test_a_connection_ends_after_its_answer_when_its_client_says_so() -> None:
    length = re.compile(rb"\r\ncontent-length: \d+")
    body = b'{"name": "x", "owner_name": "Jo"}'
    async with lane_and_hypercorn() as (ours, hypercorn):
        for request in (post("/rooms/", body, version="1.0"), post("/rooms/", body, "connection: close")):
            heads = []
            for where in (ours, hypercorn):
                host, port = where.rsplit(":", 1)
                async with await trio.open_tcp_stream(host, int(port)) as stream:
                    await stream.send_all(request)
                    (answer,) = await read_answers(stream, 1)
                    with trio.fail_after(10):
                        assert await stream.receive_some() == b"", request  # and the connection ends
                heads.append(length.sub(b"", answer.split(b"\r\n\r\n")[0]))
            assert heads[0] == heads[1], request


async def test_a_refusal_made_before_the_body_was_read_keeps_the_connection() -> None:
    # Over its rate, a creation is refused before its body is read: the body is still on its
    # way, and the connection must go on past it to the next request, as under Hypercorn.
    async with lane_and_hypercorn(rooms_per_minute=1) as (ours, _):
        host, port = ours.rsplit(":", 1)
        body = b'{"name": "x", "owner_name": "Jo"}'
        async with await trio.open_tcp_stream(host, int(port)) as stream:
            await stream.send_all(post("/rooms/", body))
            await stream.send_all(post("/rooms/", body) + b"GET /healthz HTTP/1.1\r\nhost: test\r\n\r\n")
            answers = await read_answers(stream, 3)
    assert [a.split(b"\r\n", 1)[0] for a in answers] == [b"HTTP/1.1 200 ", b"HTTP/1.1 429 ", b"HTTP/1.1 200 "]


async def test_a_creation_that_asks_for_http2_is_answered_as_hypercorn_answers_it() -> None:
    # curl --http2 on http:// asks to upgrade to h2c with its first request: Hypercorn's to take.
    async with lane_and_hypercorn() as (ours, hypercorn):
        request = post(
            "/rooms/",
            b'{"name": "x", "owner_name": "Jo"}',
            "connection: Upgrade, HTTP2-Settings",
            "upgrade: h2c",
            "http2-settings: AAMAAABkAARAAAAAAAIAAAAA",
        )
        mine, theirs = (await ask_raw(ours, request))[0], (await ask_raw(hypercorn, request))[0]
    assert mine.split(b"\r\n", 1)[0] == theirs.split(b"\r\n", 1)[0] == b"HTTP/1.1 200 "


async def test_a_body_that_arrives_in_pieces_after_its_head_is_read_whole() -> None:
    body = b'{"name": "in pieces", "owner_name": "Jo"}'
    async with lane_and_hypercorn() as (ours, _):
        host, port = ours.rsplit(":", 1)
        async with await trio.open_tcp_stream(host, int(port)) as stream:
            request = post("/rooms/", body)
            head_and_some = len(request) - len(body) + 5
            await stream.send_all(request[:head_and_some])
            await trio.testing.wait_all_tasks_blocked()
            await stream.send_all(request[head_and_some:-3])
            await trio.testing.wait_all_tasks_blocked()
            await stream.send_all(request[-3:])
            (answer,) = await read_answers(stream, 1)
    assert answer.startswith(b"HTTP/1.1 200 "), answer
    assert b'"room_id"' in answer


async def test_a_kept_alive_connection_left_idle_after_an_answer_is_closed() -> None:
    async with short_keep_alive() as stream:
        for name in ("one", "two"):  # the time bound is set again for each request's wait
            await stream.send_all(post("/rooms/", b'{"name": "%s", "owner_name": "Jo"}' % name.encode()))
            (answer,) = await read_answers(stream, 1)
            assert answer.startswith(b"HTTP/1.1 200 "), answer
        with trio.fail_after(10):
            assert await stream.receive_some(65536) == b""


async def test_a_client_that_resets_mid_head_leaves_the_server_serving(caplog: pytest.LogCaptureFixture) -> None:
    """A connection torn down (RST) while its head is read ends quietly, after an answer and
    before one; the next client is served as usual."""
    async with lane_and_hypercorn() as (ours, _):
        host, port = ours.rsplit(":", 1)
        for first in (b"", post("/rooms/", b'{"owner_name": "Jo"}')):
            stream = await trio.open_tcp_stream(host, int(port))
            await stream.send_all(first + b"POST /rooms/ HTTP/1.1\r\nhost: te")
            if first:
                (answer,) = await read_answers(stream, 1)
                assert answer.startswith(b"HTTP/1.1 200 "), answer
            await trio.testing.wait_all_tasks_blocked()
            # Linger 0: close sends a reset, not a FIN.
            stream.socket.setsockopt(trio.socket.SOL_SOCKET, trio.socket.SO_LINGER, struct.pack("ii", 1, 0))
            await stream.aclose()
        await trio.testing.wait_all_tasks_blocked()
        (answer,) = await ask_raw(ours, post("/rooms/", b'{"owner_name": "Ann"}'))
    assert answer.startswith(b"HTTP/1.1 200 "), answer
    assert [record for record in caplog.records if record.levelname in ("ERROR", "CRITICAL")] == []
