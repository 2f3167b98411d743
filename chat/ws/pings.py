"""Keep-alive for every local member from one task, not a sleeping task per socket.

Each member gets a WebSocket ping every ``interval`` seconds, the members spread over the
interval in slices so that a large instance never writes them all at once. A peer that
keeps its connection acknowledges the ping in its kernel, whatever its application does.
A peer that vanished (lid closed, NAT entry dropped) does not: the kernel then ends the
connection once its data has gone unacknowledged for the socket's user timeout
(``AsgiSocket.give_up_unacknowledged_after``), and the member departs as if it had left.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

import trio

SLICES = 20


class Pingable(Protocol):
    def ping(self) -> None: ...


async def ping_members(members: Callable[[], Sequence[Pingable]], interval: float) -> None:
    """Forever: ping every member that ``members()`` lists once per ``interval``."""
    while True:
        everyone = members()
        for start in range(SLICES):
            _ping(everyone[start::SLICES])
            await trio.sleep(interval / SLICES)


def _ping(members: Sequence[Pingable]) -> None:
    # A function of its own, so that no loop variable keeps the last member pinged alive
    # while the task sleeps.
    for member in members:
        member.ping()
