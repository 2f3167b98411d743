"""The terminal client as a person meets it: asked for a room's password, and on a real
terminal (a pseudo-terminal here), where what they type is already on the screen."""

from __future__ import annotations

import re

from .support import Server
from .terminal import terminal
from .test_client import CLIENT, STAMP, client, room_owner


async def test_a_password_room_asks_for_the_password_instead_of_exiting(server: Server) -> None:
    async with room_owner(server, "--create", "Vault", "--name", "Ada", "--password", "s3cret") as (ada, room_id):
        # The join command to pass on asks for the password; it never shows it.
        command = next(line for line in ada.lines if "Terminal: " in line)
        assert command.endswith(f"--join={room_id} --name NAME --password"), command
        assert not any("s3cret" in line for line in ada.lines), ada.transcript()

        async with client(server, f"--join={room_id}", "--name", "Grace") as grace:
            await grace.type("guess")  # A wrong one is asked for again.
            await grace.type("s3cret")
            await grace.expect(r"\* Connected as Grace")
            await grace.type("Found it")
            await ada.expect(rf"^{STAMP} Grace: Found it$")
            await grace.type("/quit")
            assert await grace.exit_code() == 0, grace.transcript()
        prompts = "\n".join(grace.errors)
        assert prompts.count("Room password: ") == 2 and "Wrong password; try again." in prompts, prompts

        async with client(server, f"--join={room_id}", "--name", "Eve") as eve:
            await eve.end_input()  # Nothing typed at the prompt: a clear refusal.
            assert await eve.exit_code() == 1
        assert any("needs a password" in line for line in eve.errors), eve.transcript()
        await ada.type("/quit")


async def test_on_a_terminal_a_typed_line_is_on_screen_once(server: Server) -> None:
    async with room_owner(server, "--create", "Desk", "--name", "Ada") as (ada, room_id):
        async with terminal([CLIENT, "--server", server.url, f"--join={room_id}", "--name", "Grace"]) as grace:
            await grace.shows(r"\* Connected as Grace")
            await grace.type("Morning all")
            await grace.shows(rf"^{STAMP} Grace: Morning all$")
            await ada.expect(rf"^{STAMP} Grace: Morning all$")
            await ada.type("Hi Grace")
            await grace.shows(rf"^{STAMP} Ada: Hi Grace$")
            rows = grace.screen.rows
            assert [row for row in rows if "Morning all" in row] == [
                next(row for row in rows if re.fullmatch(rf"{STAMP} Grace: Morning all", row))
            ], grace.screen.text()
            await grace.type("/quit")
            await grace.shows(r"\* You left the room")
        await ada.type("/quit")
