"""``ephemeralchat-client`` as people run it: a process with a keyboard (stdin) and a screen (stdout)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from urllib.parse import urlsplit

import orjson
import trio

from ephemeralchat_client.delivery import Delivery

from . import netcut
from .support import Server, connect, create_room

CLIENT = os.path.join(os.path.dirname(sys.executable), "ephemeralchat-client")
# `python -m ephemeralchat_client` with the server's package unimportable: the client talks to
# the server only over its public API, so it must run where only the client is installed.
STANDALONE = (
    sys.executable, "-c",
    "import runpy, sys; sys.modules['chat'] = None; runpy.run_module('ephemeralchat_client', run_name='__main__')",
)
# Upper bound on waiting for one expected line; a healthy run takes milliseconds.
LINE_SECONDS = 15
STAMP = r"\[\d\d:\d\d:\d\d\]"


class ClientProcess:
    """One running client: type lines into it, wait for lines out of it."""

    def __init__(self, proc: trio.Process) -> None:
        self.proc = proc
        self.lines: list[str] = []
        self.errors: list[str] = []
        self._seen = 0
        self._open_pipes = 2
        self._changed = trio.Event()

    async def pump(self, stream: trio.abc.ReceiveStream, into: list[str]) -> None:
        pending = b""
        async for chunk in stream:
            pending += chunk
            *complete, pending = pending.split(b"\n")
            into.extend(raw.decode() for raw in complete)
            self._changed.set()
        if pending:
            into.append(pending.decode())
        self._open_pipes -= 1
        self._changed.set()

    async def expect(self, pattern: str) -> re.Match[str]:
        """The next stdout line (after those already matched) that matches ``pattern``."""
        regex = re.compile(pattern)
        try:
            return await self._wait_for(regex)
        except trio.TooSlowError:
            raise AssertionError(f"no line matched {pattern!r} in {LINE_SECONDS} s: {self.transcript()}") from None

    async def _wait_for(self, regex: re.Pattern[str]) -> re.Match[str]:
        with trio.fail_after(LINE_SECONDS):
            while True:
                for index in range(self._seen, len(self.lines)):
                    match = regex.search(self.lines[index])
                    if match:
                        self._seen = index + 1
                        return match
                if not self._open_pipes:
                    raise AssertionError(f"client exited before printing {regex.pattern!r}: {self.transcript()}")
                self._changed = trio.Event()
                await self._changed.wait()

    async def type(self, line: str) -> None:
        assert self.proc.stdin is not None
        await self.proc.stdin.send_all(line.encode() + b"\n")

    async def end_input(self) -> None:
        assert self.proc.stdin is not None
        await self.proc.stdin.aclose()

    async def exit_code(self) -> int:
        with trio.fail_after(LINE_SECONDS):
            return await self.proc.wait()

    def said(self) -> list[str]:
        """The chat messages on screen so far, as "name: text", in order."""
        said = (re.fullmatch(rf"{STAMP} ([^*\s][^:]*: .*)", line) for line in self.lines)
        return [match.group(1) for match in said if match]

    def transcript(self) -> str:
        return "\nstdout:\n" + "\n".join(self.lines) + "\nstderr:\n" + "\n".join(self.errors)


@asynccontextmanager
async def client(server: Server, *args: str, command: Sequence[str] = (CLIENT,)) -> AsyncIterator[ClientProcess]:
    proc = await trio.lowlevel.open_process(
        [*command, "--server", server.url, *args],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env={**os.environ, "NO_COLOR": "1"},
    )
    running = ClientProcess(proc)
    try:
        async with trio.open_nursery() as nursery:
            assert proc.stdout is not None and proc.stderr is not None
            nursery.start_soon(running.pump, proc.stdout, running.lines)
            nursery.start_soon(running.pump, proc.stderr, running.errors)
            yield running
            with trio.fail_after(LINE_SECONDS):
                await proc.wait()
    finally:
        if proc.returncode is None:
            proc.kill()
            with trio.CancelScope(shield=True):
                await proc.wait()


@asynccontextmanager
async def room_owner(server: Server, *args: str) -> AsyncIterator[tuple[ClientProcess, str]]:
    """A client that created a room and is in it; and the room id."""
    async with client(server, *args) as ada:
        room_id = (await ada.expect(r"Room created: (\S+)")).group(1)
        await ada.expect(r"\* Connected as")
        yield ada, room_id


async def test_create_join_chat_presence_and_quit(server: Server) -> None:
    async with room_owner(server, "--create", "Standup", "--name", "Ada") as (ada, room_id):
        assert f"Invite link: {server.url}/#room={room_id}" in "\n".join(ada.lines)
        async with client(server, f"--join={room_id}", "--name", "Grace") as grace:
            await grace.expect(r"\* Connected as Grace")
            await ada.expect(rf"^{STAMP} \* Grace joined \(2 online\)$")

            await grace.type("Morning Ada!")
            for side in (ada, grace):
                await side.expect(rf"^{STAMP} Grace: Morning Ada!$")
            await ada.type("Morning. Shall we start?")
            await grace.expect(rf"^{STAMP} Ada: Morning. Shall we start\?$")

            await grace.type("/who")
            await grace.expect(r"\* Online \(2/20\): Ada, Grace \(you\)$")
            await grace.type("/time")
            await grace.expect(r"\* The room expires in (9:[0-5]\d|10:00) \(at \d\d:\d\d:\d\d\)$")
            await grace.type("//slash stays")
            await ada.expect(rf"^{STAMP} Grace: /slash stays$")
            await grace.type("/close")
            await grace.expect(r"Only the room owner can close the room")

            await grace.type("/quit")
            await grace.expect(r"You left the room")
            assert await grace.exit_code() == 0, grace.transcript()
        await ada.expect(rf"^{STAMP} \* Grace left \(1 online\)$")
        await ada.type("/quit")
        assert await ada.exit_code() == 0, ada.transcript()


async def test_member_exits_cleanly_when_owner_closes(server: Server) -> None:
    async with room_owner(server, "--create", "Retro", "--name", "Ada") as (ada, room_id):
        async with client(server, f"--join={room_id}", "--name", "Grace") as grace:
            await ada.expect(r"Grace joined")
            await ada.type("/close")
            for side in (ada, grace):
                await side.expect(rf"^{STAMP} \*\*\* Room has been closed by owner$")
                assert await side.exit_code() == 0, side.transcript()


async def test_the_owner_kicks_a_member_by_name(server: Server) -> None:
    async with room_owner(server, "--create", "Retro", "--name", "Ada") as (ada, room_id):
        async with client(server, f"--join={room_id}", "--name", "Grace") as grace:
            await ada.expect(r"Grace joined")
            await grace.expect(r"\* Connected as Grace")
            async with client(server, f"--join={room_id}", "--name", "Linus") as linus:
                await linus.expect(r"\* Connected as Linus")
                await grace.expect(r"Linus joined")
                await grace.type("/kick Ada")
                await grace.expect(r"Only the room owner can remove members")
                await ada.type("/kick Nobody")
                await ada.expect(r"Nobody called Nobody is online")
                await ada.type("/kick grace")  # Names are matched as the server compares them.
                await grace.expect(rf"^{STAMP} \*\*\* You were removed from the room by its owner$")
                assert await grace.exit_code() != 0, grace.transcript()
                assert "closed the connection: Removed by the room owner" in "\n".join(grace.errors)
                for side in (ada, linus):
                    await side.expect(rf"^{STAMP} \*\*\* Grace was removed by the room owner$")
                    await side.expect(rf"^{STAMP} \* Grace left \(2 online\)$")
                await linus.type("/quit")
                await ada.type("/quit")


async def test_owner_leaving_ends_the_room_for_members(server: Server) -> None:
    async with room_owner(server, "--create", "", "--name", "Ada") as (ada, room_id):
        async with client(server, f"--join={room_id}", "--name", "Grace") as grace:
            await grace.expect(r"\* Connected as Grace")
            await ada.end_input()  # End of input leaves, like /quit.
            assert await ada.exit_code() == 0, ada.transcript()
            await grace.expect(r"\*\*\* Room owner went offline shutting down room$")
            assert await grace.exit_code() == 0, grace.transcript()


async def test_keep_room_survives_owner_and_expiry_ends_it(server: Server) -> None:
    brief = ("--create", "Brief", "--name", "Ada", "--keep-room", "--expiry", "2")
    async with room_owner(server, *brief) as (ada, room_id):
        async with client(server, f"--join={room_id}", "--name", "Grace") as grace:
            await ada.expect(r"Grace joined")
            await ada.type("/quit")
            assert await ada.exit_code() == 0, ada.transcript()
            await grace.expect(r"\* Ada left \(1 online\)")
            await grace.expect(r"\*\*\* Room has expired$")
            assert await grace.exit_code() == 0, grace.transcript()


async def test_password_room(server: Server) -> None:
    async with room_owner(server, "--create", "Vault", "--name", "Ada", "--password", "s3cret") as (ada, room_id):
        async with client(server, f"--join={room_id}", "--name", "Eve", "--password", "guess") as eve:
            assert await eve.exit_code() == 1
        assert any("Invalid password (HTTP 401)" in line for line in eve.errors), eve.transcript()
        async with client(server, f"--join={room_id}", "--name", "Grace", "--password", "s3cret") as grace:
            await grace.type("/who")  # Details of a password room need the password too.
            await grace.expect(r"\* Online \(2/20\): Ada, Grace \(you\)$")
            await grace.type("/quit")
            assert await grace.exit_code() == 0, grace.transcript()
        await ada.type("/quit")


async def test_errors_exit_nonzero_with_a_clear_message(server: Server) -> None:
    async with client(server, "--join=no-such-room", "--name", "Grace") as lost:
        assert await lost.exit_code() == 1
    assert any("Room not found (HTTP 404)" in line for line in lost.errors), lost.transcript()

    async with room_owner(server, "--create", "Tiny", "--name", "Ada", "--max-users", "1") as (ada, room_id):
        async with client(server, f"--join={room_id}", "--name", "Grace") as late:
            assert await late.exit_code() == 1
        assert any("Room is full (HTTP 409)" in line for line in late.errors), late.transcript()
        await ada.type("/quit")

    nowhere = Server("http://127.0.0.1:9")  # Discard port: nothing listens there.
    async with client(nowhere, "--join=abc", "--name", "Grace") as refused:
        assert await refused.exit_code() == 1
    assert any("cannot reach http://127.0.0.1:9" in line for line in refused.errors), refused.transcript()


async def test_a_newcomer_sees_the_last_messages_first(server: Server) -> None:
    async with room_owner(server, "--create", "Notes", "--name", "Ada") as (ada, room_id):
        for line in ("Agenda: the release", "Notes are in the doc"):
            await ada.type(line)
            await ada.expect(rf"^{STAMP} Ada: {line}$")
        async with client(server, f"--join={room_id}", "--name", "Grace") as grace:
            await grace.expect(r"\* Connected as Grace")
            await grace.expect(rf"^{STAMP} Ada: Agenda: the release$")
            await grace.expect(rf"^{STAMP} Ada: Notes are in the doc$")
            await ada.type("Welcome Grace")
            await grace.expect(rf"^{STAMP} Ada: Welcome Grace$")
            assert grace.said() == ["Ada: Agenda: the release", "Ada: Notes are in the doc", "Ada: Welcome Grace"]
            await grace.type("/quit")
        await ada.type("/quit")


async def test_a_dropped_client_resumes_with_everything_it_missed_once(server: Server) -> None:
    """Grace's laptop sleeps and its network goes: her connections die without a close while
    Ada goes on talking, and Grace types a line before she notices."""
    port = urlsplit(server.url).port
    assert port is not None
    async with room_owner(server, "--create", "Flaky", "--name", "Ada") as (ada, room_id):
        async with client(server, f"--join={room_id}", "--name", "Grace") as grace:
            await grace.expect(r"\* Connected as Grace")
            await ada.type("one")
            await grace.expect(rf"^{STAMP} Ada: one$")

            grace.proc.send_signal(signal.SIGSTOP)
            try:
                ports = await trio.to_thread.run_sync(netcut.connections_to, port, grace.proc.pid)
                await trio.to_thread.run_sync(netcut.cut, port, ports)
                for line in ("two", "three"):
                    await ada.type(line)
                    await ada.expect(rf"^{STAMP} Ada: {line}$")
                await grace.type("back soon")  # Read once she runs again, on a socket that is gone.
            finally:
                grace.proc.send_signal(signal.SIGCONT)

            await grace.expect(r"\* Reconnected$")
            await ada.expect(rf"^{STAMP} Grace: back soon$")
            await ada.type("four")
            await grace.expect(rf"^{STAMP} Ada: four$")
            await ada.expect(rf"^{STAMP} Ada: four$")
            expected = ["Ada: one", "Ada: two", "Ada: three", "Grace: back soon", "Ada: four"]
            assert grace.said() == expected, grace.transcript()
            assert ada.said() == expected, ada.transcript()
            # Back within the grace: for Ada she never left, nor joined again.
            assert not any("Grace left" in line for line in ada.lines), ada.transcript()
            assert sum("Grace joined" in line for line in ada.lines) == 1, ada.transcript()
            await grace.type("/quit")
        await ada.type("/quit")


async def test_a_refused_message_is_named_and_not_sent_again(server: Server) -> None:
    async with room_owner(server, "--create", "Long", "--name", "Ada") as (ada, _):
        await ada.type("x" * 4001)
        await ada.expect(r"\* Error: Message is longer than 4000 characters \(not sent: x{39}…\)$")
        await ada.type("shorter")
        await ada.expect(rf"^{STAMP} Ada: shorter$")
        assert ada.said() == ["Ada: shorter"]
        await ada.type("/quit")


async def test_runs_as_a_module_without_the_server_code(server: Server) -> None:
    async with client(server, "--create", "Solo", "--name", "Ada", command=STANDALONE) as ada:
        await ada.expect(r"\* Connected as Ada")
        await ada.type("Just me")
        await ada.expect(rf"^{STAMP} Ada: Just me$")
        await ada.type("/quit")
        assert await ada.exit_code() == 0, ada.transcript()


def test_unacknowledged_messages_go_again_under_their_first_client_id() -> None:
    delivery = Delivery()
    first, second = (orjson.loads(delivery.send(text)) for text in ("hello", "again"))
    assert first["client_id"] != second["client_id"]
    delivery.acknowledged(first["client_id"])
    assert [orjson.loads(frame) for frame in delivery.unacknowledged()] == [second]
    assert delivery.refused(second["client_id"]) == "again"
    assert delivery.unacknowledged() == []


def test_the_client_resumes_from_the_newest_offset_and_shows_none_twice() -> None:
    delivery = Delivery()
    url = "ws://h/rooms/r/ws?token=t"
    assert delivery.url(url) == url  # First entry: history follows the hello.
    assert delivery.entered({"epoch": "e1", "offset": 2}) is None
    assert [delivery.fresh({"offset": n}) for n in (1, 2, 2, 3, 1)] == [True, True, False, True, False]
    assert delivery.url(url) == url + "&since=3&epoch=e1"
    assert delivery.entered({"epoch": "e1", "offset": 5, "recovered": True}) is True
    assert delivery.fresh({"offset": 4})
    # Nothing is replayed after a failed resume: the next message is the one after the hello's offset.
    assert delivery.entered({"epoch": "e2", "offset": 9, "recovered": False}) is False
    assert not delivery.fresh({"offset": 9}) and delivery.fresh({"offset": 10})
    assert delivery.url(url) == url + "&since=10&epoch=e2"
    # Told while connected that the room's stream was lost: its new offsets are not old ones.
    delivery.resynced({"type": "system", "message": "…", "epoch": "e3", "offset": 0, "recovered": False})
    assert delivery.fresh({"offset": 1}) and delivery.url(url) == url + "&since=1&epoch=e3"


async def test_the_client_tells_the_room_what_it_has_read_and_prints_no_typing(server: Server) -> None:
    async with server.client() as http:
        room = await create_room(http, owner_name="Bob")
        async with connect(room["ws_url"]) as bob:
            async with client(server, f"--join={room['room_id']}", "--name", "Grace") as grace:
                await grace.expect(r"\* Connected as Grace")
                await bob.receive_until(event="user_online", display_name="Grace")
                await bob.ws.send_message('{"type":"typing"}')
                await bob.say("Seen this?")
                await grace.expect(rf"^{STAMP} Bob: Seen this\?$")
                read = await bob.receive_until(type="read")
                assert (read["display_name"], read["offset"]) == ("Grace", 1)
                await grace.type("/quit")
                assert await grace.exit_code() == 0, grace.transcript()
            assert not any("typing" in line.lower() for line in grace.lines), grace.transcript()
