"""End-to-end encrypted rooms from the terminal client, as people run it: the key in the
invite link or from the room password; without it, "cannot decrypt" and nothing sent."""

from __future__ import annotations

import re

from ephemeralchat_client import e2e

from .support import Server
from .test_client import STAMP, client, room_owner


def printed(lines: list[str], pattern: str) -> str:
    """The first group of the first line printed so far that matches (the client prints its
    room's links before it connects)."""
    return next(m.group(1) for line in lines if (m := re.search(pattern, line)))


async def test_the_invite_link_carries_the_key_and_only_its_holders_read(server: Server) -> None:
    async with room_owner(server, "--create", "Secret", "--e2e", "--name", "Ada") as (ada, room_id):
        fingerprint = (await ada.expect(r"key fingerprint ([0-9a-f]{4}( [0-9a-f]{4}){3})")).group(1)
        link = printed(ada.lines, rf"Invite link: (\S+/#room={room_id}&key=[\w-]+)$")
        key = e2e.read_key(re.sub(r".*&key=", "", link))
        assert fingerprint == e2e.fingerprint(key)
        async with client(server, "--join", link, "--name", "Grace") as grace:
            await grace.expect(rf"key fingerprint {fingerprint}")
            await ada.expect(r"Grace joined")
            await grace.type("the vault code is 7261")
            for side in (ada, grace):
                await side.expect(rf"^{STAMP} Grace: the vault code is 7261$")
            async with client(server, f"--join={room_id}", "--name", "Eve") as eve:
                await eve.expect(r"end-to-end encrypted and you have no key")
                # History reaches her, unreadable; what she types never leaves her terminal.
                await eve.expect(rf"^{STAMP} \* Grace: cannot decrypt this message \(wrong or missing key\)$")
                await eve.type("hello?")
                await eve.expect(r"Not sent: this room is end-to-end encrypted and you have no key")
                await ada.type("Eve cannot read this")
                await grace.expect(rf"^{STAMP} Ada: Eve cannot read this$")
                await eve.expect(rf"^{STAMP} \* Ada: cannot decrypt this message")
                await eve.type("/quit")
                assert await eve.exit_code() == 0, eve.transcript()
            assert not any("hello?" in line for line in ada.lines + grace.lines)
            await grace.type("/quit")
        await ada.type("/quit")


async def test_a_password_room_can_take_its_key_from_the_password(server: Server) -> None:
    args = ("--create", "Vault", "--e2e", "--password", "s3cret", "--name", "Ada")
    async with room_owner(server, *args) as (ada, room_id):
        invite = printed(ada.lines, r"Invite link: (\S+)$")
        assert invite.endswith(f"#room={room_id}")  # No key in the link: the password is it.
        async with server.client() as http:
            # The server holds a secret derived from the password, never the password itself.
            refused = await http.get(f"/rooms/{room_id}", params={"password": "s3cret"})
            assert refused.status_code == 401 and e2e.decode(refused.json()["e2e_salt"])
        async with client(server, f"--join={room_id}", "--name", "Grace", "--password", "s3cret") as grace:
            await grace.expect(r"End-to-end encrypted; key fingerprint")
            await ada.type("only with the password")
            await grace.expect(rf"^{STAMP} Ada: only with the password$")
            await grace.type("/who")
            await grace.expect(r"\* Online \(2/20\): Ada, Grace \(you\)$")
            await grace.type("/quit")
        async with client(server, f"--join={room_id}", "--name", "Eve", "--password", "guess") as eve:
            assert await eve.exit_code() == 1
        assert any("Invalid password (HTTP 401)" in line for line in eve.errors), eve.transcript()
        await ada.type("/quit")
