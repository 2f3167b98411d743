"""The socket adapter under a server that is not Hypercorn: plain ASGI messages, one per frame."""

from __future__ import annotations

from typing import Any

from chat.ws.socket import AsgiSocket
from chat.ws.wire import text_frame


async def test_frames_fall_back_to_one_asgi_message_each() -> None:
    sent: list[dict[str, Any]] = []
    incoming = iter([{"type": "websocket.connect"}, {"type": "websocket.receive", "text": "hi"}])

    async def receive() -> dict[str, Any]:
        return next(incoming)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    socket = AsgiSocket({"type": "websocket", "query_string": b"token=a.b%3Fc&display_name=Zo%C3%AB"}, receive, send)
    assert socket.write_now is None  # no synchronous path to the peer's socket
    assert socket.display_name() == "Zoë" and socket.token() == "a.b"
    await socket.accept()
    assert await socket.receive() == "hi"
    await socket.send_frames([text_frame("one"), text_frame("two" * 100)])
    await socket.close(1000, "bye " * 100)
    await socket.abort()
    assert sent[0] == {"type": "websocket.accept"}
    assert sent[1:3] == [{"type": "websocket.send", "text": "one"}, {"type": "websocket.send", "text": "two" * 100}]
    assert sent[3]["type"] == "websocket.close" and len(sent[3]["reason"].encode()) <= 123
    assert len(sent) == 4
