"""Shared test plumbing: servers (in-process and as real processes) and clients."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import httpx
import orjson
import trio
from hypercorn.trio import serve
from trio_websocket import WebSocketConnection, open_websocket_url

from chat import connections
from chat.__main__ import hypercorn_config
from chat.app import ChatApp
from chat.bus import Bus
from chat.config import Settings
from chat.http import create_app

TEST_SECRET = "test-secret-key"


def settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {"host": "127.0.0.1", "port": 0, "secret_key": TEST_SECRET}
    values.update(overrides)
    return Settings(**values)


@dataclass
class Server:
    """A running server: its base URL and (in-process only) its app."""

    url: str
    app: ChatApp | None = None

    @property
    def ws(self) -> str:
        return "ws" + self.url.removeprefix("http")

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.url, timeout=10)


@asynccontextmanager
async def running_app(config: Settings | None = None, bus: Bus | None = None) -> AsyncIterator[Server]:
    """The real app on a real Hypercorn, on a free loopback port, inside this test's run."""
    config = config or settings()
    app = create_app(config, bus)
    hyper = hypercorn_config(config)
    connections.install()  # As chat.__main__ serves: room sockets on their own connections.
    async with trio.open_nursery() as nursery:
        binds = await nursery.start(lambda task_status: serve(app, hyper, task_status=task_status))
        yield Server(binds[0], app)
        nursery.cancel_scope.cancel()


SERVING = re.compile(r"serving on (http://\S+)")


@dataclass
class ServerProcess:
    """An ``ephemeralchat`` process, as a user starts it."""

    proc: trio.Process
    url: str
    output: list[str] = field(default_factory=list)

    @property
    def server(self) -> Server:
        return Server(self.url)


@asynccontextmanager
async def server_process(env: dict[str, str] | None = None) -> AsyncIterator[ServerProcess]:
    """Starts the ``ephemeralchat`` command on a free port; stops it (SIGTERM) afterwards."""
    full_env = {
        **os.environ,
        "HOST": "127.0.0.1",
        "PORT": "0",
        "SECRET_KEY": TEST_SECRET,
        "PYTHONUNBUFFERED": "1",
        **(env or {}),
    }
    command = [os.path.join(os.path.dirname(sys.executable), "ephemeralchat")]
    async with trio.open_nursery() as nursery:
        proc = await nursery.start(
            partial(
                trio.run_process, command, env=full_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, check=False
            )
        )
        lines: list[str] = []
        url_found: trio.Event = trio.Event()
        holder: dict[str, str] = {}

        async def pump() -> None:
            buffer = b""
            async for chunk in proc.stdout:
                buffer += chunk
                *complete, buffer = buffer.split(b"\n")
                for raw in complete:
                    line = raw.decode(errors="replace")
                    lines.append(line)
                    match = SERVING.search(line)
                    if match and not url_found.is_set():
                        holder["url"] = match.group(1)
                        url_found.set()

        nursery.start_soon(pump)
        with trio.fail_after(30):
            await url_found.wait()
        running = ServerProcess(proc, holder["url"], lines)
        try:
            yield running
        except BaseException:
            # Shown with the failure (pytest prints a failed test's output): what the server said.
            print(f"--- the server at {running.url} logged:", *lines[-200:], sep="\n")
            raise
        finally:
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
            with trio.move_on_after(15) as cleanup:
                cleanup.shield = True
                await proc.wait()
            if proc.returncode is None:
                proc.kill()


class Client:
    """A chat client on trio-websocket, as a user's program would be written."""

    def __init__(self, ws: WebSocketConnection) -> None:
        self.ws = ws
        self.connection_id = ""
        self.hello: dict[str, Any] = {}

    async def receive(self, within: float = 10) -> dict[str, Any]:
        with trio.fail_after(within):
            return orjson.loads(await self.ws.get_message())

    async def receive_until(self, within: float = 10, **match: Any) -> dict[str, Any]:
        """Frames until one whose fields equal ``match``; skips the rest."""
        with trio.fail_after(within):
            while True:
                frame = orjson.loads(await self.ws.get_message())
                if all(frame.get(k) == v for k, v in match.items()):
                    return frame

    async def say(self, text: str) -> None:
        await self.ws.send_message(orjson.dumps({"type": "message", "text": text}).decode())


@asynccontextmanager
async def connect(url: str) -> AsyncIterator[Client]:
    """A WebSocket to ``url`` that has received its hello frame."""
    async with open_websocket_url(url) as ws:
        client = Client(ws)
        hello = await client.receive()
        assert hello["type"] == "system" and hello["message"] == "Connected to room", hello
        client.connection_id = hello["connection_id"]
        client.hello = hello
        yield client


async def chat_both_ways(bob: Client, ann: Client, there: str, back: str) -> None:
    """Bob sees Ann arrive (two online); each hears the other's message, with the right name."""
    seen = await bob.receive_until(event="user_online", display_name="Ann")
    assert seen["online_count"] == 2 and seen["connection_id"] == ann.connection_id
    await ann.say(there)
    heard = await bob.receive_until(type="message")
    assert (heard["text"], heard["display_name"]) == (there, "Ann")
    await bob.say(back)
    assert (await ann.receive_until(type="message", display_name="Bob"))["text"] == back


async def create_room(http: httpx.AsyncClient, **body: Any) -> dict[str, Any]:
    body.setdefault("owner_name", "owner")
    response = await http.post("/rooms/", json=body)
    assert response.status_code == 200, response.text
    return response.json()


async def join_room(http: httpx.AsyncClient, room_id: str, name: str, password: str | None = None) -> dict[str, Any]:
    response = await http.post(f"/rooms/{room_id}/join", json={"display_name": name, "password": password})
    assert response.status_code == 200, response.text
    return response.json()


def cut(client: Client) -> None:
    """Lose the client's connection without a close frame, as a dropped network does: the
    server sees the TCP stream end with no WebSocket goodbye."""
    client.ws._stream.socket.shutdown(socket.SHUT_RDWR)  # type: ignore[attr-defined]
