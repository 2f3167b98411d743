"""The room's WebSocket: typed lines out, frames in, commands, and reconnecting after a drop."""

from __future__ import annotations

import random
from datetime import datetime
from functools import partial
from typing import Any

import httpx
import orjson
import trio
from trio_websocket import ConnectionClosed, HandshakeError, WebSocketConnection, open_websocket_url

from . import e2e
from .console import Console, duration
from .delivery import Delivery
from .kick import kick, member_named
from .rest import HTTP_TIMEOUT_SECONDS, ClientError, Session, parse_time, request, room_path

EXIT_OK, EXIT_ERROR = 0, 1
# Attempts in a row without getting back in; a connection that reaches its hello starts over.
RECONNECT_ATTEMPTS = 8
MAX_BACKOFF_SECONDS = 16
# Read receipts go out at most this often (the newest offset shown when the wait is over),
# so a busy room does not spend the user's message rate on them.
READ_EVERY_SECONDS = 1.0

# The server's own words (its public protocol); a system frame with one of these ends the room.
CONNECTED = "Connected to room"
ENDINGS = (
    "Room has been closed by owner",
    "Room owner went offline shutting down room",
    "Room has expired",
)
HELP = (
    "Commands: /who (who is online), /time (time left), /close (owner: close the room), "
    "/kick NAME (owner: remove a member), /quit, /help"
)


def backoff(attempt: int) -> float:
    """Seconds before reconnect attempt ``attempt`` (1, 2, …): full jitter under a doubling cap,
    so a room full of clients does not come back in one burst after a restart."""
    return random.uniform(0, min(MAX_BACKOFF_SECONDS, 2 ** (attempt - 1)))


def shorten(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


class Chat:
    def __init__(self, session: Session, http: httpx.AsyncClient, console: Console) -> None:
        self.session = session
        self.http = http
        self.console = console
        self.connection_id: str | None = None
        # Every connection id this client had: its own messages stay its own across reconnects.
        self.mine: set[str] = set()
        self.delivery = Delivery()
        # Who presence said is online (connection id -> name), for /kick.
        self.present: dict[str, str] = {}
        self.skew_seconds = 0.0
        self.quitting = False
        self.e2e = False  # The room is end-to-end encrypted (its hello says so).
        # Set when a message is printed: the room hears how far this user has read.
        self.shown = trio.Event()

    async def details(self) -> dict[str, Any]:
        params = {"password": self.session.password} if self.session.password else None
        return await request(self.http, "GET", room_path(self.session.room_id), "get the room", params=params)

    async def run(self, lines: trio.MemoryReceiveChannel[str]) -> int:
        """Stays in the room until it ends or the user leaves; the exit status."""
        attempt = 0
        while True:
            entered = len(self.mine)
            try:
                async with open_websocket_url(self.delivery.url(self.session.ws_url)) as ws:
                    outcome = await self.converse(ws, lines)
            except (HandshakeError, OSError) as error:
                if self.connection_id is None:
                    raise ClientError(f"Cannot connect to the room's WebSocket ({error})") from None
                outcome = None
            if outcome is not None:
                return outcome
            attempt = 1 if len(self.mine) > entered else attempt + 1
            if attempt > RECONNECT_ATTEMPTS:
                raise ClientError("Lost the connection to the room and could not get it back; run the command again")
            delay = backoff(attempt)
            self.console.notice(f"Connection lost; reconnecting in {delay:.1f} s…")
            await trio.sleep(delay)
            try:
                await self.details()
            except ClientError as error:
                if error.status == 404:
                    self.console.system("The room is gone: it expired or was closed")
                    return EXIT_OK
                # Anything else (server still down) is what the next attempt is for.

    async def converse(self, ws: WebSocketConnection, lines: trio.MemoryReceiveChannel[str]) -> int | None:
        """One socket's life: the exit status, or None when it dropped and is worth retrying."""
        try:
            hello = orjson.loads(await ws.get_message())
            self.on_hello(hello)
            # The server posts a client_id once: whatever the last socket took but never
            # acknowledged goes again, and at most one copy reaches the room.
            for frame in self.delivery.unacknowledged():
                await ws.send_message(frame)
        except ConnectionClosed as closed:
            return self.closed(closed)
        # Set by whichever task finishes first; errors are kept, not raised, so they leave
        # the nursery as themselves rather than inside an exception group.
        result: list[int | ClientError | None] = [None]

        async def frames(cancel: trio.CancelScope) -> None:
            try:
                while True:
                    if self.show(orjson.loads(await ws.get_message())):
                        result[0] = EXIT_OK
                        break
            except ConnectionClosed as closed:
                try:
                    result[0] = self.closed(closed)
                except ClientError as error:
                    result[0] = error
            cancel.cancel()

        async def typing(cancel: trio.CancelScope) -> None:
            try:
                async for line in lines:
                    if await self.command(ws, line):
                        break
                else:  # End of input: leave as /quit does.
                    await self.leave(ws)
            except ConnectionClosed:
                return  # The frames task hears why and decides.
            result[0] = EXIT_OK
            cancel.cancel()

        async def reads() -> None:
            told = 0
            try:
                while True:
                    await self.shown.wait()
                    self.shown = trio.Event()
                    if self.delivery.offset > told:
                        told = self.delivery.offset
                        await ws.send_message(orjson.dumps({"type": "read", "offset": told}).decode())
                    await trio.sleep(READ_EVERY_SECONDS)
            except ConnectionClosed:
                return  # The frames task hears why and decides.

        async with trio.open_nursery() as nursery:
            nursery.start_soon(frames, nursery.cancel_scope)
            nursery.start_soon(typing, nursery.cancel_scope)
            nursery.start_soon(reads)
        if isinstance(result[0], ClientError):
            raise result[0]
        return result[0]

    def on_hello(self, hello: dict[str, Any]) -> None:
        if hello.get("type") != "system" or hello.get("message") != CONNECTED:
            raise ClientError(f"Unexpected first frame from the server: {hello!r}")
        self.connection_id = str(hello.get("connection_id"))
        self.mine.add(self.connection_id)
        at = parse_time(hello.get("timestamp"))
        if at is not None:  # /time follows the server's clock, not a local one that is off.
            self.skew_seconds = at.timestamp() - datetime.now().timestamp()
        self.e2e, key = hello.get("e2e") is True, self.session.key
        if self.e2e and key is not None:
            # Sealed as the server stamps this connection's messages, or nobody can open them.
            name = str(hello.get("display_name") or self.session.name)
            self.delivery.seal = partial(e2e.seal, key, str(hello.get("room_id")), self.connection_id, name)
        recovered = self.delivery.entered(hello)
        if recovered is None:
            self.console.notice(f"Connected as {self.session.name}. {HELP}")
            if self.e2e and key is not None:
                self.console.notice(
                    f"End-to-end encrypted; key fingerprint {e2e.fingerprint(key)} (compare it with the others')"
                )
            elif self.e2e:
                self.console.notice(
                    "This room is end-to-end encrypted and you have no key: you can neither read nor send. "
                    "Join with the full invite link (or --key)."
                )
        elif recovered:
            self.console.notice("Reconnected")
        else:
            self.console.notice("Reconnected — some messages may be missing")

    def closed(self, closed: ConnectionClosed) -> int | None:
        code, reason = closed.reason.code, closed.reason.reason or ""
        if self.quitting:
            return EXIT_OK
        if code == 1000 and ("closed" in reason.lower() or "expired" in reason.lower()):
            self.console.system(reason)
            return EXIT_OK
        if code == 1008:
            raise ClientError(f"The server closed the connection: {reason or 'policy violation'}")
        return None

    def show(self, frame: dict[str, Any]) -> bool:
        """Prints a frame; True when it ends the room."""
        kind, at = frame.get("type"), parse_time(frame.get("timestamp"))
        if kind == "message":
            if self.delivery.fresh(frame):  # Never the same message twice, whatever the server resends.
                mine = frame.get("connection_id") in self.mine
                name = str(frame.get("display_name"))
                text = e2e.open_message(self.session.key, frame) if "ciphertext" in frame else str(frame.get("text"))
                if text is None:
                    self.console.notice(f"{name}: {e2e.CANNOT_DECRYPT}", at)
                else:
                    self.console.message(name, text, at, mine)
                self.shown.set()
        elif kind == "ack":
            self.delivery.acknowledged(frame.get("client_id"))
        elif kind == "presence":
            if frame.get("event") == "user_online":
                self.present[str(frame.get("connection_id"))] = str(frame.get("display_name"))
            else:
                self.present.pop(str(frame.get("connection_id")), None)
            if frame.get("connection_id") == self.connection_id and frame.get("event") == "user_online":
                return False  # "Connected as ..." already said it.
            verb = {"user_online": "joined", "user_offline": "left"}.get(str(frame.get("event")), "is here")
            self.console.notice(f"{frame.get('display_name')} {verb} ({frame.get('online_count')} online)", at)
        elif kind == "system":
            self.delivery.resynced(frame)
            self.console.system(str(frame.get("message")), at)
            return frame.get("message") in ENDINGS
        # Typing and read frames are not printed: a line-based terminal has no place for a
        # passing status that would not bury the conversation or the line being typed.
        elif kind == "error":
            text = self.delivery.refused(frame.get("client_id")) if "client_id" in frame else None
            not_sent = "" if text is None else f" (not sent: {shorten(text)})"
            self.console.notice(f"Error: {frame.get('detail')}{not_sent}", at)
        return False

    async def command(self, ws: WebSocketConnection, line: str) -> bool:
        """Acts on one typed line; True when the user is leaving."""
        word = line.strip().lower()
        if not line.strip():
            return False
        if not line.startswith("/") or line.startswith("//"):
            text = line[1:] if line.startswith("//") else line  # "//x" sends "/x".
            if self.e2e and self.session.key is None:
                self.console.notice("Not sent: this room is end-to-end encrypted and you have no key")
                return False
            self.console.sent(line)
            # Pending from here on: if this socket is already dead, the next one sends it.
            await ws.send_message(self.delivery.send(text))
            return False
        try:
            if word in ("/quit", "/exit", "/leave"):
                await self.leave(ws)
                return True
            if word == "/who":
                await self.who()
            elif word == "/time":
                await self.time_left()
            elif word == "/close":
                await self.close()
            elif word.split()[0] == "/kick":
                await self.kick(line.strip()[len("/kick") :].strip())
            elif word in ("/help", "/?"):
                self.console.notice(HELP + ". Start a line with // to send a leading slash.")
            else:
                self.console.notice(f"Unknown command {word.split()[0]}. {HELP}")
        except ClientError as error:
            self.console.notice(str(error))
        return False

    async def who(self) -> None:
        room = await self.details()
        names = [
            f"{u['display_name']} (you)" if u["connection_id"] == self.connection_id else str(u["display_name"])
            for u in room["online_users"]
        ]
        self.console.notice(f"Online ({room['online_users_count']}/{room['max_users']}): {', '.join(names)}")

    async def time_left(self) -> None:
        room = await self.details()
        expires = parse_time(room["expires_at"]) or self.session.expires_at
        left = expires.timestamp() - (datetime.now().timestamp() + self.skew_seconds)
        local = expires.astimezone().strftime("%H:%M:%S")
        self.console.notice(f"The room expires in {duration(left)} (at {local})")

    async def close(self) -> None:
        if not self.session.owner_token:
            raise ClientError("Only the room owner can close the room")
        await request(
            self.http, "POST", room_path(self.session.room_id, "/close"), "close the room",
            headers={"Authorization": f"Bearer {self.session.owner_token}"},
        )
        # The closing notice arrives over the socket and ends the session.

    async def kick(self, name: str) -> None:
        if not name:
            raise ClientError("Usage: /kick NAME")
        connection_id = member_named(name, self.present, [])
        if connection_id is None:  # Online since before we came: the room's details know.
            connection_id = member_named(name, {}, (await self.details())["online_users"])
        if connection_id is None:
            raise ClientError(f"Nobody called {name} is online")
        if connection_id == self.connection_id:
            raise ClientError("You cannot remove yourself; /close ends the room")
        await kick(self.http, self.session, connection_id)
        # The room's system line says it once it is done.

    async def leave(self, ws: WebSocketConnection) -> None:
        self.quitting = True
        with trio.move_on_after(HTTP_TIMEOUT_SECONDS):
            try:
                await self.http.post(
                    room_path(self.session.room_id, "/leave"), json={"display_name": self.session.name}
                )
            except httpx.HTTPError:
                pass  # Closing the socket is what frees the seat; the notice is a courtesy.
        self.console.notice("You left the room")
        await ws.aclose(1000, "Bye")
