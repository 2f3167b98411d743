"""A chat client that never loses a message across drops, written as a real one would be.

It keeps its token'd ws_url, the room's epoch and the highest offset it has seen. Each message
it sends carries a client_id and stays pending until acknowledged; after every reconnect
(with ``since``/``epoch``, to whichever instance it is pointed at) it resends what is pending,
in order, before anything new. It drops what it has already seen, but counts it: the server
must never deliver a duplicate or skip an offset, and the tests assert it did not.
"""

from __future__ import annotations

import itertools
import random
import secrets
import socket
import struct
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit

import orjson
import trio
from trio_websocket import ConnectionClosed, HandshakeError, WebSocketConnection, open_websocket_url

# How a test takes a client's connection away: a TCP reset with no close handshake (a lost
# network, a crashed laptop), or an ordinary WebSocket close (a closed tab, a page reload).
Drop = Literal["reset", "clean"]
DROPS: tuple[Drop, ...] = ("reset", "clean")

HELLO_SECONDS = 10
# A close handshake the server does not answer within this is a hang.
CLOSE_SECONDS = 10
# Reconnect backoff as docs/protocol.md advises, scaled down to a test's loopback.
BACKOFF_FIRST_SECONDS = 0.05
BACKOFF_MOST_SECONDS = 1.0


class Progress:
    """Wakes whoever waits for any client's state to change (a frame, an ack, a session)."""

    def __init__(self) -> None:
        self._changed = trio.Event()

    def changed(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    async def until(self, done: Any, within: float) -> None:
        """Returns once ``done()`` is true; fails after ``within`` seconds."""
        with trio.fail_after(within):
            while not done():
                await self._changed.wait()


@dataclass
class Session:
    """One connection's life: where it went, its hello and how it ended."""

    url: str
    hello: dict[str, Any] = field(default_factory=dict)
    close: tuple[int, str] | None = None


class ResumingClient:
    def __init__(self, name: str, ws_url: str, progress: Progress | None = None) -> None:
        self.name = name
        self.ws_url = ws_url
        self.progress = progress or Progress()
        # Where the next connection goes: a base URL whose host and port replace ws_url's.
        self.instance = ws_url
        self.epoch: str | None = None
        self.last = 0
        # No position yet (a first entry, or the room's history lost): the next message,
        # replayed or live, starts the count rather than being checked against it.
        self._fresh = True
        self.messages: list[dict[str, Any]] = []
        # What the server delivered again: (the session's number, last offset seen, the frame).
        self.duplicates: list[tuple[int, int, dict[str, Any]]] = []
        self.gaps: list[tuple[int, int]] = []  # (last offset seen, the offset that followed)
        self.unrecovered = 0  # hellos that said recovered: false
        self.errors: list[dict[str, Any]] = []
        self.notices: list[str] = []
        self.sessions: list[Session] = []
        # client_id -> text, in send order, until acknowledged; every one ever sent.
        self.pending: dict[str, str] = {}
        self.sent: list[tuple[str, str]] = []
        self.acks: dict[str, list[int]] = {}
        # Resent after a reconnect: (client_id, the room's offset at that hello).
        self.resent: list[tuple[str, int]] = []
        self._prefix = f"{name}-{secrets.token_hex(3)}"
        self._ids = itertools.count(1)
        self._ws: WebSocketConnection | None = None
        # New messages wait while a fresh connection resends what is pending: order holds.
        self._sending = trio.StrictFIFOLock()
        self._may_connect = trio.Event()
        self._may_connect.set()
        self._stopping = False

    @property
    def connected(self) -> bool:
        """In the room: the hello came, and the socket has not started closing."""
        return self._ws is not None and self._ws.closed is None

    @property
    def held(self) -> bool:
        return not self._may_connect.is_set()

    def url(self) -> str:
        """ws_url on the chosen instance, resuming from the last position when there is one."""
        ws_url = self.ws_url.replace(urlsplit(self.ws_url).netloc, urlsplit(self.instance).netloc, 1)
        if self.epoch is None:
            return ws_url
        return f"{ws_url}&since={self.last}&epoch={self.epoch}"

    async def keep_connected(self) -> None:
        """Connects, and reconnects after every drop (backing off after refusals), until
        ``stop()``; waits meanwhile while ``hold()`` keeps it away."""
        backoff = BACKOFF_FIRST_SECONDS
        while not self._stopping:
            await self._may_connect.wait()
            if self._stopping:
                return
            session = await self.session()
            if session.hello:
                backoff = BACKOFF_FIRST_SECONDS
            elif not self._stopping:
                # Refused (a draining instance says 1013) or unreachable: try again later.
                await trio.sleep(backoff * random.uniform(0.5, 1.0))
                backoff = min(2 * backoff, BACKOFF_MOST_SECONDS)

    async def session(self) -> Session:
        """One connection: the hello, the resends, then frames until the socket ends."""
        session = Session(self.url())
        self.sessions.append(session)
        try:
            async with open_websocket_url(
                session.url, connect_timeout=HELLO_SECONDS, disconnect_timeout=CLOSE_SECONDS
            ) as ws:
                try:
                    with trio.fail_after(HELLO_SECONDS):
                        hello = orjson.loads(await ws.get_message())
                    self._enter(hello)
                    session.hello = hello
                    async with self._sending:
                        self._ws = ws
                        if self._stopping:  # stop() came while this connection was opening.
                            return session
                        for client_id, text in list(self.pending.items()):
                            self.resent.append((client_id, hello["offset"]))
                            await self._send(ws, client_id, text)
                    self.progress.changed()
                    while True:
                        self._take(orjson.loads(await ws.get_message()))
                except ConnectionClosed as closed:
                    session.close = (closed.reason.code, closed.reason.reason or "")
                finally:
                    self._ws = None
                    self.progress.changed()
        except (HandshakeError, OSError) as error:
            session.close = (0, repr(error))
        return session

    def _enter(self, hello: dict[str, Any]) -> None:
        assert hello.get("type") == "system" and "epoch" in hello, hello
        if hello.get("recovered") is True:
            assert hello["epoch"] == self.epoch, (self.name, hello)
            self._fresh = False  # Everything after ``last`` follows: check it from there.
            return
        if hello.get("recovered") is False:
            # Some messages may be missing, and nothing is replayed: start again from here.
            self.unrecovered += 1
            self.epoch, self.last, self._fresh = hello["epoch"], hello["offset"], False
            return
        self.epoch, self.last, self._fresh = hello["epoch"], 0, True

    def _take(self, frame: dict[str, Any]) -> None:
        kind = frame.get("type")
        if kind == "message":
            self._message(frame)
        elif kind == "ack":
            self.acks.setdefault(frame["client_id"], []).append(frame["offset"])
            self.pending.pop(frame["client_id"], None)
        elif kind == "error":
            self.errors.append(frame)
        elif kind == "system":
            self.notices.append(frame["message"])
            if "epoch" in frame:  # The server lost part of the stream: go on from where it says.
                self.unrecovered += 1
                self.epoch, self.last, self._fresh = frame["epoch"], frame["offset"], False
        else:
            return  # Presence: not part of the stream.
        self.progress.changed()

    def _message(self, frame: dict[str, Any]) -> None:
        offset = frame["offset"]
        if not self._fresh and offset <= self.last:
            self.duplicates.append((len(self.sessions), self.last, frame))
            return  # Already seen: dropped.
        if not self._fresh and offset != self.last + 1:
            self.gaps.append((self.last, offset))
        self._fresh = False
        self.last = offset
        self.messages.append(frame)

    async def say(self, text: str) -> None:
        """Send a message, acknowledged: pending until the ack, resent after reconnects."""
        client_id = f"{self._prefix}-{next(self._ids)}"
        async with self._sending:
            self.pending[client_id] = text
            self.sent.append((client_id, text))
            if self._ws is not None:
                await self._send(self._ws, client_id, text)

    async def say_all(self, texts: Iterable[str], window: int) -> None:
        """Send ``texts`` in order, with at most ``window`` unacknowledged at a time."""
        for text in texts:
            await self.progress.until(lambda: len(self.pending) < window, within=60)
            await self.say(text)

    async def _send(self, ws: WebSocketConnection, client_id: str, text: str) -> None:
        frame = orjson.dumps({"type": "message", "text": text, "client_id": client_id}).decode()
        try:
            await ws.send_message(frame)
        except ConnectionClosed:
            pass  # Still pending: the next connection resends it.

    async def drop(self, how: Drop) -> bool:
        """Take the connection away; False when there was none to take."""
        ws, self._ws = self._ws, None
        if ws is None or ws.closed is not None:
            return False
        # What had arrived before the drop is still read, until the socket reports it closed.
        if how == "reset":
            # Linger 0: close() sends a TCP RST at once, with no WebSocket close frame.
            stream: Any = ws._stream  # trio-websocket keeps its TCP stream private.
            stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            await stream.aclose()
        else:
            with trio.fail_after(CLOSE_SECONDS):
                await ws.aclose()
        return True

    def hold(self) -> None:
        """Stay away after the next drop, until ``release()``."""
        if self._may_connect.is_set():
            self._may_connect = trio.Event()

    def release(self, instance: str) -> None:
        """Reconnect, to ``instance`` (a base URL)."""
        self.instance = instance
        self._may_connect.set()

    async def stop(self) -> None:
        """Close cleanly and stay away."""
        self._stopping = True
        self._may_connect.set()
        if self._ws is not None:
            with trio.fail_after(CLOSE_SECONDS):
                await self._ws.aclose()

    # What the tests check at the end.

    def done(self, total: int) -> bool:
        return not self.pending and self.last >= total and not self._fresh

    def standing(self, total: int) -> str:
        """Where this client stands, for a failure's report."""
        sessions = [(s.url[-40:], s.hello.get("offset"), s.hello.get("recovered"), s.close) for s in self.sessions]
        return (
            f"{self.name}: done {self.done(total)}, last {self.last}, fresh {self._fresh}, held {self.held}, "
            f"connected {self.connected}, pending {list(self.pending.values())}, gaps {self.gaps}, "
            f"duplicates {len(self.duplicates)}, errors {self.errors}, notices {self.notices}, sessions {sessions}"
        )

    def offsets(self) -> list[int]:
        return [m["offset"] for m in self.messages]

    def texts(self) -> list[str]:
        return [m["text"] for m in self.messages]
