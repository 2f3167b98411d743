"""The adapter to Hypercorn's connection objects, checked against the Hypercorn we run on."""

from __future__ import annotations

import contextlib
import socket
from typing import Any

import pytest
import trio
from hypercorn.config import Config
from hypercorn.protocol.ws_stream import ASGIWebsocketState
from hypercorn.trio import serve
from trio_websocket import ConnectionClosed, open_websocket_url

from chat.ws import hypercorn_adapter
from chat.ws.hypercorn_adapter import HYPERCORN_VERSION, HypercornTransport, hypercorn_stream
from chat.ws.wire import text_frame

FRAMES = 200
PAYLOAD = 60_000  # 200 x 60 kB: far beyond the socket buffers, so writes go partial


class ForeignStream:
    """A WebSocket stream that is not Hypercorn's WSStream: only what the adapter reads of one."""

    stream_id = 1

    def __init__(self, *, closed: bool = False, state: ASGIWebsocketState = ASGIWebsocketState.CONNECTED) -> None:
        self.closed = closed
        self.state = state

    async def send(self, event: object) -> None:
        pass


SHAPE_CHANGED = (
    f"Hypercorn {HYPERCORN_VERSION} is installed, and its connection objects no longer have the shape "
    "chat/ws/hypercorn_adapter.py relies on (checked against 0.17 and 0.18)"
)


async def test_batches_reach_the_peer_whole_and_in_order_through_both_write_paths() -> None:
    seen: dict[str, Any] = {}

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        await receive()  # websocket.connect
        await send({"type": "websocket.accept"})
        stream = hypercorn_stream(send)
        seen["stream"] = stream
        if stream is None:  # an assert here would only be logged by Hypercorn: report it below
            await send({"type": "websocket.close", "code": 1011})
            return
        transport = HypercornTransport(stream)
        seen["direct"], seen["because"] = transport.direct, transport.not_direct_because
        for start in range(0, FRAMES, 10):
            await transport.write(b"".join(text_frame(f"{i}:" + "x" * PAYLOAD) for i in range(start, start + 10)))
        await send({"type": "websocket.close", "code": 1000, "reason": "done"})
        while (await receive())["type"] != "websocket.disconnect":
            pass

    config = Config()
    config.bind = ["127.0.0.1:0"]
    async with trio.open_nursery() as nursery:
        binds = await nursery.start(lambda task_status: serve(app, config, task_status=task_status))
        url = binds[0].replace("http", "ws", 1) + "/"
        async with open_websocket_url(url, max_message_size=2 * PAYLOAD) as ws:
            with trio.fail_after(30):
                with contextlib.suppress(ConnectionClosed):
                    await ws.get_message()
                # The fast path, not the fallback, is what runs; say why not before anything else.
                assert seen["stream"] is not None, f"{SHAPE_CHANGED}: the ASGI send is not WSStream.app_send"
                assert seen["direct"], f"{SHAPE_CHANGED}: {seen['because']}"
                for i in range(1, FRAMES):
                    message = await ws.get_message()
                    assert message == f"{i}:" + "x" * PAYLOAD
        nursery.cancel_scope.cancel()


def test_a_connection_of_another_shape_falls_back_with_one_warning_naming_the_version(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class OtherStream(ForeignStream):
        pass

    hypercorn_adapter.shape_changed.cache_clear()
    with caplog.at_level("WARNING", logger="chat.ws.hypercorn_adapter"):
        for _ in range(3):
            assert not HypercornTransport(OtherStream()).direct  # type: ignore[arg-type]
    warnings = [r.getMessage() for r in caplog.records if r.name == "chat.ws.hypercorn_adapter"]
    assert len(warnings) == 1
    assert f"Hypercorn {HYPERCORN_VERSION}" in warnings[0] and "OtherStream" in warnings[0]


async def test_a_write_that_meets_the_close_is_dropped() -> None:
    """Hypercorn sends its EOF outside its send lock, so a batch written while a connection
    closes can find the socket busy; generated-input runs met it as a crashed handler
    ("Error in ASGI Framework: BusyResourceError"). The batch is dropped instead."""

    class ClosingStream(ForeignStream):
        async def send(self, event: object) -> None:
            raise trio.BusyResourceError("another task is currently sending data on this SocketStream")

    transport = HypercornTransport(ClosingStream())  # type: ignore[arg-type]
    assert not transport.direct
    await transport.write(b"frame")


def test_a_peer_gone_before_its_handshake_was_answered_is_a_lost_connection() -> None:
    """A client that gives up while its handshake waits (a reconnect storm) leaves a stream
    without a wsproto connection: no goodbye, no socket option to set, and no crash."""

    unanswered = ForeignStream(closed=True, state=ASGIWebsocketState.HANDSHAKE)
    transport = HypercornTransport(unanswered)  # type: ignore[arg-type]
    assert not transport.goodbye_received()
    closed = socket.socket()
    closed.close()
    transport._socket = closed  # type: ignore[assignment]  # As it is once Hypercorn closed it.
    transport.give_up_unacknowledged_after(30)
