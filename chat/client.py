"""``ephemeralchat-client``: chat in an EphemeralChat room from a terminal.

Lines typed on stdin are sent to the room; frames from the room are printed as
``[HH:MM:SS] name: text``. Exits 0 when the room ends (closed, expired, owner gone) or on
``/quit`` and end of input; exits 1 with a message saying what to do on any error.
"""

from __future__ import annotations

import argparse
import codecs
import getpass
import os
import sys
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TextIO
from urllib.parse import quote

import httpx
import orjson
import trio
from trio_websocket import ConnectionClosed, HandshakeError, WebSocketConnection, open_websocket_url

EXIT_OK, EXIT_ERROR = 0, 1
DEFAULT_SERVER = "http://127.0.0.1:8000"
HTTP_TIMEOUT_SECONDS = 15
# Typed lines waiting while the socket reconnects; typing blocks beyond that, nothing is lost.
LINE_BUFFER = 64
RECONNECT_ATTEMPTS = 5
MAX_BACKOFF_SECONDS = 16

# The server's own words (chat/protocol.py); a system frame with one of these ends the room.
CONNECTED = "Connected to room"
ENDINGS = (
    "Room has been closed by owner",
    "Room owner went offline shutting down room",
    "Room has expired",
)
HELP = "Commands: /who (who is online), /time (time left), /close (owner: close the room), /quit, /help"
HINTS = {
    401: "check the password (--password)",
    403: "only the room owner can do that",
    404: "check the room id; the room may have expired or been closed",
    409: "try again when someone leaves",
}
ANSI_COLORS = (31, 32, 33, 34, 35, 36)


class ClientError(Exception):
    """Something the user can act on; printed as is, exit status 1."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class Session:
    server: str
    room_id: str
    name: str
    ws_url: str
    expires_at: datetime
    password: str | None
    owner_token: str | None


class Console:
    """Where lines go: one place decides the format, colours only on a terminal."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.color = out.isatty() and not os.environ.get("NO_COLOR")

    def _paint(self, text: str, code: int) -> str:
        return f"\x1b[{code}m{text}\x1b[0m" if self.color else text

    def line(self, text: str, at: datetime | None = None) -> None:
        stamp = (at or datetime.now().astimezone()).astimezone().strftime("%H:%M:%S")
        print(f"{self._paint(f'[{stamp}]', 2)} {text}", file=self.out, flush=True)

    def message(self, name: str, text: str, at: datetime | None, mine: bool) -> None:
        color = 1 if mine else ANSI_COLORS[sum(map(ord, name)) % len(ANSI_COLORS)]
        # Continuation lines are indented so a multi-line message still reads as one.
        self.line(f"{self._paint(name, color)}: {text.replace(chr(10), chr(10) + '    ')}", at)

    def notice(self, text: str, at: datetime | None = None) -> None:
        self.line(self._paint(f"* {text}", 2), at)

    def system(self, text: str, at: datetime | None = None) -> None:
        self.line(self._paint(f"*** {text}", 1), at)


def parse_time(value: Any) -> datetime | None:
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None


def duration(seconds: float) -> str:
    total = max(0, int(seconds + 0.999))
    hours, rest = divmod(total, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


def _error(response: httpx.Response, doing: str) -> ClientError:
    try:
        detail = str(response.json().get("detail") or response.reason_phrase)
    except (ValueError, AttributeError):
        detail = response.reason_phrase or "unexpected response"
    hint = HINTS.get(response.status_code)
    message = f"Could not {doing}: {detail} (HTTP {response.status_code})" + (f"; {hint}" if hint else "")
    return ClientError(message, response.status_code)


async def request(http: httpx.AsyncClient, method: str, path: str, doing: str, **kwargs: Any) -> dict[str, Any]:
    """A REST call's JSON answer; any failure as a ClientError that says what went wrong."""
    try:
        response = await http.request(method, path, **kwargs)
    except httpx.HTTPError as error:
        reason = str(error) or type(error).__name__
        raise ClientError(f"Could not {doing}: cannot reach {http.base_url} ({reason})") from None
    if response.status_code >= 400:
        raise _error(response, doing)
    return response.json()


class Chat:
    def __init__(self, session: Session, http: httpx.AsyncClient, console: Console) -> None:
        self.session = session
        self.http = http
        self.console = console
        self.connection_id: str | None = None
        self.skew_seconds = 0.0
        self.quitting = False

    # ---- REST ----

    async def details(self) -> dict[str, Any]:
        params = {"password": self.session.password} if self.session.password else None
        return await request(self.http, "GET", f"/rooms/{quote(self.session.room_id)}", "get the room", params=params)

    # ---- the conversation ----

    async def run(self, lines: trio.MemoryReceiveChannel[str]) -> int:
        """Stays in the room until it ends or the user leaves; the exit status."""
        attempt = 0
        while True:
            try:
                async with open_websocket_url(self.session.ws_url) as ws:
                    outcome = await self.converse(ws, lines, reconnected=attempt > 0)
            except (HandshakeError, OSError) as error:
                if attempt == 0 and self.connection_id is None:
                    raise ClientError(f"Cannot connect to the room's WebSocket ({error})") from None
                outcome = None
            if outcome is not None:
                return outcome
            attempt += 1
            if attempt > RECONNECT_ATTEMPTS:
                raise ClientError("Lost the connection to the room and could not get it back")
            delay = min(MAX_BACKOFF_SECONDS, 2 ** (attempt - 1))
            self.console.notice(f"Connection lost; reconnecting in {delay} s…")
            await trio.sleep(delay)
            try:
                await self.details()
            except ClientError as error:
                if error.status == 404:
                    self.console.system("The room is gone: it expired or was closed")
                    return EXIT_OK
                # Anything else (server still down) is what the next attempt is for.

    async def converse(
        self, ws: WebSocketConnection, lines: trio.MemoryReceiveChannel[str], *, reconnected: bool
    ) -> int | None:
        """One socket's life: the exit status, or None when it dropped and is worth retrying."""
        try:
            hello = orjson.loads(await ws.get_message())
        except ConnectionClosed as closed:
            return self.closed(closed)
        self.on_hello(hello, reconnected)
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

        async with trio.open_nursery() as nursery:
            nursery.start_soon(frames, nursery.cancel_scope)
            nursery.start_soon(typing, nursery.cancel_scope)
        if isinstance(result[0], ClientError):
            raise result[0]
        return result[0]

    def on_hello(self, hello: dict[str, Any], reconnected: bool) -> None:
        if hello.get("type") != "system" or hello.get("message") != CONNECTED:
            raise ClientError(f"Unexpected first frame from the server: {hello!r}")
        self.connection_id = str(hello.get("connection_id"))
        at = parse_time(hello.get("timestamp"))
        if at is not None:  # /time follows the server's clock, not a local one that is off.
            self.skew_seconds = at.timestamp() - datetime.now().timestamp()
        if reconnected:
            self.console.notice("Reconnected")
        else:
            self.console.notice(f"Connected as {self.session.name}. {HELP}")

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
            mine = frame.get("connection_id") == self.connection_id
            self.console.message(str(frame.get("display_name")), str(frame.get("text")), at, mine)
        elif kind == "presence":
            if frame.get("connection_id") == self.connection_id and frame.get("event") == "user_online":
                return False  # "Connected as ..." already said it.
            verb = {"user_online": "joined", "user_offline": "left"}.get(str(frame.get("event")), "is here")
            self.console.notice(f"{frame.get('display_name')} {verb} ({frame.get('online_count')} online)", at)
        elif kind == "system":
            self.console.system(str(frame.get("message")), at)
            return frame.get("message") in ENDINGS
        elif kind == "error":
            self.console.notice(f"Error: {frame.get('detail')}", at)
        return False

    async def command(self, ws: WebSocketConnection, line: str) -> bool:
        """Acts on one typed line; True when the user is leaving."""
        word = line.strip().lower()
        if not line.strip():
            return False
        if not line.startswith("/") or line.startswith("//"):
            text = line[1:] if line.startswith("//") else line  # "//x" sends "/x".
            await ws.send_message(orjson.dumps({"type": "message", "text": text}).decode())
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
            self.http, "POST", f"/rooms/{quote(self.session.room_id)}/close", "close the room",
            headers={"Authorization": f"Bearer {self.session.owner_token}"},
        )
        # The closing notice arrives over the socket and ends the session.

    async def leave(self, ws: WebSocketConnection) -> None:
        self.quitting = True
        with trio.move_on_after(HTTP_TIMEOUT_SECONDS):
            try:
                await self.http.post(
                    f"/rooms/{quote(self.session.room_id)}/leave", json={"display_name": self.session.name}
                )
            except httpx.HTTPError:
                pass  # Closing the socket is what frees the seat; the notice is a courtesy.
        self.console.notice("You left the room")
        await ws.aclose(1000, "Bye")


async def read_lines(send: trio.MemorySendChannel[str], fd: int) -> None:
    """Lines from ``fd`` until end of input, then the channel closes.

    A worker thread does the blocking read(); os.read holds no Python lock, so a read that
    is abandoned at exit cannot wedge interpreter shutdown the way sys.stdin.readline can.
    """
    decoder = codecs.getincrementaldecoder("utf-8")("replace")
    pending = ""
    async with send:
        while chunk := await trio.to_thread.run_sync(os.read, fd, 65536, abandon_on_cancel=True):
            pending += decoder.decode(chunk)
            *complete, pending = pending.split("\n")
            for line in complete:
                await send.send(line.removesuffix("\r"))
        pending += decoder.decode(b"", final=True)
        if pending:
            await send.send(pending)


async def open_session(http: httpx.AsyncClient, args: argparse.Namespace, server: str) -> Session:
    if args.create is not None:
        body: dict[str, Any] = {
            "name": args.create or None,
            "owner_name": args.name,
            "password": args.password,
            "preferences": {"destroy_on_owner_offline": not args.keep_room},
        }
        if args.expiry is not None:
            body["expiry_seconds"] = args.expiry
        if args.max_users is not None:
            body["max_users"] = args.max_users
        created = await request(http, "POST", "/rooms/", "create the room", json=body)
        room_id, token = created["room_id"], created["owner_token"]
    else:
        room_id, token = args.join, None
        created = await request(
            http, "POST", f"/rooms/{quote(room_id)}/join", "join the room",
            json={"display_name": args.name, "password": args.password},
        )
    expires = parse_time(created["expires_at"]) or datetime.now().astimezone()
    return Session(server, room_id, args.name, created["ws_url"], expires, args.password, token)


async def main_async(args: argparse.Namespace, console: Console) -> int:
    try:
        return await chat_session(args, console)
    except ClientError as error:
        print(f"ephemeralchat-client: {error}", file=sys.stderr, flush=True)
        return EXIT_ERROR


async def chat_session(args: argparse.Namespace, console: Console) -> int:
    server = args.server.rstrip("/")
    async with httpx.AsyncClient(base_url=server, timeout=HTTP_TIMEOUT_SECONDS) as http:
        session = await open_session(http, args, server)
        if session.owner_token:
            console.notice(f"Room created: {session.room_id}")
            console.notice(f"Invite link: {server}/#room={session.room_id}")
            # "--join=ID": a room id may start with "-", which would read as an option.
            console.notice(f"Terminal: ephemeralchat-client --server {server} --join={session.room_id} --name NAME")
            if not args.keep_room:
                console.notice("The room closes when you leave (use --keep-room to keep it open).")
        chat = Chat(session, http, console)
        failure: ClientError | None = None
        async with trio.open_nursery() as nursery:
            send, receive = trio.open_memory_channel[str](LINE_BUFFER)
            nursery.start_soon(read_lines, send, sys.stdin.fileno())
            try:
                status = await chat.run(receive)
            except ClientError as error:
                failure, status = error, EXIT_ERROR
            nursery.cancel_scope.cancel()  # The stdin reader has nothing left to feed.
        if failure is not None:
            raise failure
        return status


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="ephemeralchat-client",
        description="Chat in an EphemeralChat room from a terminal. Type lines to send them; /help for commands.",
    )
    p.add_argument("--server", default=os.environ.get("EPHEMERALCHAT_SERVER", DEFAULT_SERVER),
                   help=f"server base URL (default: $EPHEMERALCHAT_SERVER or {DEFAULT_SERVER})")
    room = p.add_mutually_exclusive_group(required=True)
    room.add_argument("--create", metavar="ROOM_NAME", help="create a room with this name and join it as owner")
    room.add_argument("--join", metavar="ROOM_ID", help="join the room with this id")
    p.add_argument("--name", required=True, help="your display name")
    p.add_argument("--password", nargs="?", const="", default=None,
                   help="room password; give the flag alone to be prompted for it")
    p.add_argument("--expiry", type=int, metavar="SECONDS", help="with --create: seconds until the room expires")
    p.add_argument("--max-users", type=int, metavar="N", help="with --create: most people at once")
    p.add_argument("--keep-room", action="store_true", help="with --create: keep the room open when you leave")
    return p


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    if args.join is not None and (args.expiry is not None or args.max_users is not None or args.keep_room):
        parser().error("--expiry, --max-users and --keep-room only go with --create")
    if args.password == "":
        args.password = getpass.getpass("Room password: ") or None
    try:
        status = trio.run(main_async, args, Console(sys.stdout))
    except KeyboardInterrupt:
        status = EXIT_OK  # Ctrl-C is how many people leave a terminal chat.
    sys.exit(status)


if __name__ == "__main__":
    main()
