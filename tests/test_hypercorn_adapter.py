"""The adapter to Hypercorn's connection objects, checked against the Hypercorn we run on."""

from __future__ import annotations

from typing import Any

import trio
from hypercorn.config import Config
from hypercorn.protocol.ws_stream import ASGIWebsocketState
from hypercorn.trio import serve
from trio_websocket import open_websocket_url

from chat.ws.hypercorn_adapter import HypercornTransport, hypercorn_stream
from chat.ws.wire import text_frame

FRAMES = 200
PAYLOAD = 60_000  # 200 x 60 kB: far beyond the socket buffers, so writes go partial


async def test_batches_reach_the_peer_whole_and_in_order_through_both_write_paths() -> None:
    seen: dict[str, bool] = {}

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        await receive()  # websocket.connect
        await send({"type": "websocket.accept"})
        stream = hypercorn_stream(send)
        assert stream is not None
        transport = HypercornTransport(stream)
        seen["direct"] = transport.direct
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
                for i in range(FRAMES):
                    message = await ws.get_message()
                    assert message == f"{i}:" + "x" * PAYLOAD
        nursery.cancel_scope.cancel()
    assert seen["direct"], "Hypercorn's connection no longer has the shape chat.ws.hypercorn_adapter expects"


async def test_a_write_that_meets_the_close_is_dropped() -> None:
    """Hypercorn sends its EOF outside its send lock, so a batch written while a connection
    closes can find the socket busy; generated-input runs met it as a crashed handler
    ("Error in ASGI Framework: BusyResourceError"). The batch is dropped instead."""

    class ClosingStream:
        closed = False
        state = ASGIWebsocketState.CONNECTED
        stream_id = 1

        async def send(self, event: object) -> None:
            raise trio.BusyResourceError("another task is currently sending data on this SocketStream")

    transport = HypercornTransport(ClosingStream())  # type: ignore[arg-type]
    assert not transport.direct
    await transport.write(b"frame")
