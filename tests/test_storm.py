"""A reconnect storm: many sockets at once enter a few dozen at a time, and all get in."""

from __future__ import annotations

import trio
import trio.testing

from chat.bus import AdmitResult, MemberRecord, Reading
from chat.bus.memory import MemoryBus
from chat.ws.session import ENTERING_AT_ONCE

from .support import connect, create_room, join_room, running_app, settings


class GatedBus(MemoryBus):
    """Admissions wait for ``gate``; how many waited at once is kept."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = trio.Event()
        self.full = trio.Event()  # As many admissions waiting as the server lets through at once.
        self.admitting = 0
        self.most_at_once = 0

    async def admit(
        self, room_id: str, member: MemberRecord, sender: str = "", name_key: str = "", read: Reading | None = None
    ) -> AdmitResult:
        self.admitting += 1
        self.most_at_once = max(self.most_at_once, self.admitting)
        if self.admitting >= ENTERING_AT_ONCE:
            self.full.set()
        try:
            await self.gate.wait()
            return await super().admit(room_id, member, sender, name_key, read)
        finally:
            self.admitting -= 1


async def test_a_storm_of_sockets_enters_a_few_dozen_at_a_time_and_all_get_their_hello() -> None:
    storm = ENTERING_AT_ONCE + 16
    bus = GatedBus()
    config = settings(joins_per_minute=10_000, max_users_limit=1000)
    async with running_app(config, bus) as server, server.client() as http:
        room = await create_room(http, owner_name="Owner", max_users=storm + 1)
        urls = [room["ws_url"]]
        for k in range(storm - 1):
            urls.append((await join_room(http, room["room_id"], f"Phone {k}"))["ws_url"])
        hellos: list[str] = []
        everyone_in = trio.Event()

        async def phone(url: str) -> None:
            async with connect(url) as client:
                hellos.append(client.connection_id)
                if len(hellos) == storm:
                    everyone_in.set()
                await everyone_in.wait()

        async with trio.open_nursery() as nursery:
            for url in urls:
                nursery.start_soon(phone, url)
            with trio.fail_after(20):
                await bus.full.wait()
            await trio.testing.wait_all_tasks_blocked(0.05)  # The others have reached the server.
            assert bus.admitting == ENTERING_AT_ONCE  # The rest wait before their admission.
            bus.gate.set()
        assert len(set(hellos)) == storm and bus.most_at_once == ENTERING_AT_ONCE
