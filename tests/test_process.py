"""The ``ephemeralchat`` command, run as a user runs it."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
import trio

from .support import connect, create_room, join_room, server_process
from .test_lifecycle import closed_with


async def test_two_clients_chat_through_the_command() -> None:
    async with server_process() as running:
        server = running.server
        async with server.client() as http:
            room = await create_room(http, name="Test Room", owner_name="Bob")
            joined = await join_room(http, room["room_id"], "Ann")
            async with connect(room["ws_url"]) as bob, connect(joined["ws_url"]) as ann:
                await bob.receive_until(event="user_online", display_name="Ann")
                await ann.say("hi Bob")
                assert (await bob.receive_until(type="message"))["text"] == "hi Bob"
                await bob.ws.send_message("hi Ann")
                assert (await ann.receive_until(type="message", display_name="Bob"))["text"] == "hi Ann"
        assert any("MemoryBus" in line for line in running.output)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
async def test_a_signal_closes_every_socket_with_1001_and_exits(tmp_path: Path, signum: signal.Signals) -> None:
    log_file = tmp_path / "logs" / "app.log"
    async with server_process({"LOG_FILE": str(log_file), "LOG_LEVEL": "debug"}) as running:
        async with running.server.client() as http:
            room = await create_room(http, owner_name="Bob", password="hunter2-secret")
            joined = await join_room(http, room["room_id"], "Ann", "hunter2-secret")
        async with connect(room["ws_url"]) as bob, connect(joined["ws_url"]) as ann:
            await bob.receive_until(event="user_online", display_name="Ann")
            await ann.say("a private message text")
            await bob.receive_until(type="message")
            running.proc.send_signal(signum)
            with trio.fail_after(10):
                for member in (bob, ann):
                    notice = await member.receive_until(type="system")
                    assert "shutting down" in notice["message"]
                    assert await closed_with(member) == (1001, "Server shutting down")
                assert await running.proc.wait() == 0
    logged = log_file.read_text()
    assert "serving on" in logged and signum.name in logged
    assert "hunter2-secret" not in logged and "a private message text" not in logged


async def test_bad_configuration_is_reported_not_a_traceback() -> None:
    result = await trio.run_process(
        [str(Path(__import__("sys").executable).with_name("ephemeralchat"))],
        env={"PORT": "eighty", "PATH": ""},
        capture_stdout=True,
        capture_stderr=True,
        check=False,
    )
    assert result.returncode != 0
    assert b"PORT must be a number" in result.stderr and b"Traceback" not in result.stderr
