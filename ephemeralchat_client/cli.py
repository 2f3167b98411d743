"""The ``ephemeralchat-client`` command: its options, stdin as a stream of lines, exit status."""

from __future__ import annotations

import argparse
import codecs
import getpass
import os
import sys
from urllib.parse import parse_qsl

import httpx
import trio

from . import e2e
from .console import Console
from .conversation import EXIT_ERROR, EXIT_OK, Chat
from .rest import HTTP_TIMEOUT_SECONDS, ClientError, Session, open_session

DEFAULT_SERVER = "http://127.0.0.1:8000"
# Typed lines waiting while the socket reconnects; typing blocks beyond that, nothing is lost.
LINE_BUFFER = 64
# Asked for a room's password this many times before giving up, as a login prompt does.
PASSWORD_TRIES = 3
PASSWORD_PROMPT = "Room password: "


def ask_password() -> str | None:
    """The password typed at a prompt (None: nothing typed). On a terminal it is not echoed;
    from a pipe it is the next line of stdin, read a byte at a time so the lines after it
    stay for the chat."""
    if os.isatty(sys.stdin.fileno()):
        return getpass.getpass(PASSWORD_PROMPT) or None
    print(PASSWORD_PROMPT, end="", file=sys.stderr, flush=True)
    line = b""
    while (byte := os.read(sys.stdin.fileno(), 1)) and byte != b"\n":
        line += byte
    return line.decode("utf-8", "replace").removesuffix("\r") or None


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


async def main_async(args: argparse.Namespace, console: Console) -> int:
    try:
        return await chat_session(args, console)
    except ClientError as error:
        print(f"ephemeralchat-client: {error}", file=sys.stderr, flush=True)
        return EXIT_ERROR


async def chat_session(args: argparse.Namespace, console: Console) -> int:
    server = args.server.rstrip("/")
    async with httpx.AsyncClient(base_url=server, timeout=HTTP_TIMEOUT_SECONDS) as http:
        session = await enter_room(http, args, server)
        if session.owner_token:
            console.notice(f"Room created: {session.room_id}")
            # The key rides only in the fragment, which browsers never send to the server.
            key = f"&key={e2e.encode(session.key)}" if session.key and session.key_in_link else ""
            console.notice(f"Invite link: {server}/#room={session.room_id}{key}")
            # "--join=ID": a room id may start with "-", which would read as an option. A bare
            # --password makes the client ask for it: the password itself is never printed.
            asks = " --password" if session.password else ""
            key_option = f" --key={e2e.encode(session.key)}" if key and session.key else ""
            join = f"--join={session.room_id}{key_option} --name NAME{asks}"
            console.notice(f"Terminal: ephemeralchat-client --server {server} {join}")
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


async def enter_room(http: httpx.AsyncClient, args: argparse.Namespace, server: str) -> Session:
    """Creates or joins the room; a room that needs a password the command line did not give
    asks for it (and again after a wrong one) instead of ending the run."""
    asked = 0
    while True:
        try:
            return await open_session(http, args, server)
        except ClientError as error:
            given_on_command_line = args.password is not None and not asked
            if error.status != 401 or args.join is None or given_on_command_line or asked >= PASSWORD_TRIES:
                raise
            if asked:
                print("Wrong password; try again.", file=sys.stderr, flush=True)
        asked += 1
        args.password = await trio.to_thread.run_sync(ask_password, abandon_on_cancel=True)
        if args.password is None:
            raise ClientError("Could not join the room: it needs a password and none was typed")


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
                   help="room password; give the flag alone (or leave it out) to be asked for it")
    p.add_argument("--expiry", type=int, metavar="SECONDS", help="with --create: seconds until the room expires")
    p.add_argument("--max-users", type=int, metavar="N", help="with --create: most people at once")
    p.add_argument("--keep-room", action="store_true", help="with --create: keep the room open when you leave")
    p.add_argument("--e2e", action="store_true",
                   help="with --create: end-to-end encrypt the room (the key goes in the invite link, "
                   "or comes from --password)")
    p.add_argument("--key", help="with --join: the room's end-to-end key (the invite link's key=...)")
    return p


def from_link(link: str, server: str, key: str | None) -> tuple[str, str, str | None]:
    """Server, room id and key of an invite link (``https://HOST/#room=ID&key=KEY``)."""
    base, _, fragment = link.partition("#")
    fields = dict(parse_qsl(fragment))
    if not fields.get("room"):
        parser().error(f"--join: {link!r} is not an invite link (https://HOST/#room=ID)")
    return base.rstrip("/") or server, fields["room"], fields.get("key", key)


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    if args.join is not None and "#" in args.join:
        args.server, args.join, args.key = from_link(args.join, args.server, args.key)
    if args.join is not None and (args.expiry is not None or args.max_users is not None or args.keep_room or args.e2e):
        parser().error("--expiry, --max-users, --keep-room and --e2e only go with --create")
    if args.key is not None:
        if args.join is None:
            parser().error("--key only goes with --join")
        try:
            args.key = e2e.read_key(args.key)
        except ValueError as error:
            parser().error(f"--key: {error}")
    if args.password == "":
        args.password = ask_password()
    # On a terminal the typed line is already on screen; the room's copy replaces it.
    console = Console(sys.stdout, typed_echo=os.isatty(sys.stdin.fileno()))
    try:
        status = trio.run(main_async, args, console)
    except KeyboardInterrupt:
        status = EXIT_OK  # Ctrl-C is how many people leave a terminal chat.
    sys.exit(status)
