"""The one-write answer (chat/hypercorn_http.py), checked against the Hypercorn we run on: the
bytes on the wire are those of the ASGI path, and the connection lives on as it would."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio
import trio.testing
from hypercorn.config import Config
from hypercorn.trio import serve

from chat import hypercorn_http
from chat.hypercorn_http import answer, h11_stream
from chat.ws.hypercorn_adapter import HYPERCORN_VERSION, tcp_under

BODY = b'{"room_id":"0123456789abcdef"}'
# Far beyond the socket buffers: the straight write takes part of it, Hypercorn's path the rest.
BIG = b'{"padding":"' + b"x" * 8_000_000 + b'"}'


def headers_for(body: bytes) -> list[tuple[bytes, bytes]]:
    return [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]


HEADERS = headers_for(BODY)
KEEP_ALIVE_SECONDS = 5
DATE = re.compile(rb"\r\ndate: [^\r]*\r\n")

SHAPE_CHANGED = (
    f"Hypercorn {HYPERCORN_VERSION} is installed, and its HTTP/1.1 stream no longer has the shape "
    "chat/hypercorn_http.py relies on (checked against 0.17 and 0.18)"
)


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """/one answers with ``answer()``, /asgi with the ASGI messages Quart sends; both 201 + BODY
    (BIG under /big/)."""
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    while (await receive()).get("more_body"):
        pass
    if scope["path"].startswith("/slow/"):
        app.busy.set()  # type: ignore[attr-defined]
        await trio.sleep(3 * KEEP_ALIVE_SECONDS)  # a request that outlasts the keep-alive timeout
    elif scope["path"].startswith("/while/"):
        await trio.sleep(0.6 * KEEP_ALIVE_SECONDS)  # one that does not
    body = BIG if scope["path"].startswith("/big/") else BODY
    if scope["path"].endswith("/one"):
        found = h11_stream(send)
        app.direct.append(found is not None and isinstance(tcp_under(found[1]), tuple))  # type: ignore[attr-defined]
        await answer(send, 201, headers_for(body), body)
    else:
        await send({"type": "http.response.start", "status": 201, "headers": headers_for(body)})
        await send({"type": "http.response.body", "body": body, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})


@asynccontextmanager
async def hypercorn(shutdown: trio.Event | None = None, **options: Any) -> AsyncIterator[tuple[str, int]]:
    config = Config()
    config.bind = ["127.0.0.1:0"]
    for name, value in options.items():
        setattr(config, name, value)
    app.direct = []  # type: ignore[attr-defined]
    app.busy = trio.Event()  # type: ignore[attr-defined]
    trigger = (trio.Event() if shutdown is None else shutdown).wait
    async with trio.open_nursery() as nursery:
        binds = await nursery.start(
            lambda task_status: serve(app, config, shutdown_trigger=trigger, task_status=task_status)
        )
        host, port = binds[0].removeprefix("http://").rsplit(":", 1)
        yield host, int(port)
        nursery.cancel_scope.cancel()


async def exchange(stream: trio.SocketStream, path: str) -> bytes:
    """One POST on a kept-alive connection, and its whole raw response."""
    await stream.send_all(f"POST {path} HTTP/1.1\r\nhost: test\r\ncontent-length: 2\r\n\r\n{{}}".encode())
    raw = b""
    body = BIG if path.startswith("/big/") else BODY
    with trio.fail_after(60):
        while not (b"\r\n\r\n" in raw and raw.endswith(body)):
            chunk = await stream.receive_some()
            assert chunk, f"connection closed after {raw!r}"
            raw += chunk
    return DATE.sub(b"\r\ndate: -\r\n", raw)


async def closed(stream: trio.SocketStream) -> bool:
    with trio.fail_after(10):
        return await stream.receive_some() == b""


@pytest.mark.parametrize("under", ["", "/big"])
async def test_the_one_write_answer_is_byte_for_byte_the_asgi_answer_and_keeps_the_connection(under: str) -> None:
    async with hypercorn() as (host, port):
        stream = await trio.open_tcp_stream(host, port)
        async with stream:
            asgi = await exchange(stream, f"{under}/asgi")
            assert asgi.startswith(b"HTTP/1.1 201 ")
            assert await exchange(stream, f"{under}/one") == asgi
            assert await exchange(stream, f"{under}/one") == asgi  # the connection was ready for more
            assert await exchange(stream, f"{under}/asgi") == asgi
    # The straight write to the socket, not a fallback, is what ran.
    assert app.direct == [True, True], SHAPE_CHANGED  # type: ignore[attr-defined]


@pytest.mark.parametrize("path", ["/one", "/asgi"])
async def test_the_last_answer_a_connection_may_carry_closes_it_either_way(path: str) -> None:
    async with hypercorn(keep_alive_max_requests=2) as (host, port):
        stream = await trio.open_tcp_stream(host, port)
        async with stream:
            assert b"connection: close" not in await exchange(stream, path)
            assert b"\r\nconnection: close\r\n" in await exchange(stream, path)
            assert await closed(stream)


async def test_a_send_that_is_not_hypercorns_gets_the_asgi_messages() -> None:
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await answer(send, 404, HEADERS, BODY)
    assert sent == [
        {"type": "http.response.start", "status": 404, "headers": HEADERS},
        {"type": "http.response.body", "body": BODY, "more_body": False},
    ]


def test_a_hypercorn_send_of_another_shape_is_named_once(caplog: pytest.LogCaptureFixture) -> None:
    async def send(message: dict[str, Any]) -> None:
        pass

    send.__module__ = "hypercorn.protocol.somewhere_else"
    hypercorn_http.shape_changed.cache_clear()
    with caplog.at_level("WARNING", logger="chat.hypercorn_http"):
        for _ in range(3):
            assert h11_stream(send) is None
    warnings = [r.getMessage() for r in caplog.records if r.name == "chat.hypercorn_http"]
    assert len(warnings) == 1 and f"Hypercorn {HYPERCORN_VERSION}" in warnings[0]


async def test_an_idle_connection_is_closed_after_the_keep_alive_timeout_and_not_before(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with hypercorn(keep_alive_timeout=KEEP_ALIVE_SECONDS) as (host, port):
        stream = await trio.open_tcp_stream(host, port)
        async with stream:
            for _ in range(3):  # the first answer puts the cheaper timer in place, the next ones use it
                await exchange(stream, "/while/one")  # each request takes a while: idleness counts from its end
                idle_since = trio.current_time()
            assert await closed(stream)
            assert trio.current_time() - idle_since == pytest.approx(KEEP_ALIVE_SECONDS, abs=0.5)


async def test_a_request_that_outlasts_the_keep_alive_timeout_is_answered_and_the_connection_kept(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with hypercorn(keep_alive_timeout=KEEP_ALIVE_SECONDS) as (host, port):
        stream = await trio.open_tcp_stream(host, port)
        async with stream:
            asgi = await exchange(stream, "/one")
            assert await exchange(stream, "/slow/one") == asgi
            assert await exchange(stream, "/one") == asgi
            idle_since = trio.current_time()
            assert await closed(stream)
            assert trio.current_time() - idle_since == pytest.approx(KEEP_ALIVE_SECONDS, abs=0.5)


async def test_a_server_that_shuts_down_closes_its_idle_connections_at_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    shutdown = trio.Event()
    async with hypercorn(shutdown, keep_alive_timeout=1000) as (host, port):
        stream = await trio.open_tcp_stream(host, port)
        async with stream:
            await exchange(stream, "/one")
            await exchange(stream, "/one")
            shutdown.set()
            asked = trio.current_time()
            assert await closed(stream)
            assert trio.current_time() - asked < 1


async def test_a_server_that_shuts_down_mid_request_answers_it_before_closing(
    autojump_clock: trio.testing.MockClock,
) -> None:
    shutdown = trio.Event()
    async with hypercorn(shutdown, keep_alive_timeout=KEEP_ALIVE_SECONDS, graceful_timeout=1000) as (host, port):
        stream = await trio.open_tcp_stream(host, port)
        async with stream, trio.open_nursery() as nursery:
            asgi = await exchange(stream, "/one")

            async def shut_down_once_busy() -> None:
                await app.busy.wait()  # type: ignore[attr-defined]
                shutdown.set()

            nursery.start_soon(shut_down_once_busy)
            assert await exchange(stream, "/slow/one") == asgi
            assert await closed(stream)
