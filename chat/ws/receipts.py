"""What a member tells the room besides messages: that it is typing, and how far it has read.

Both are cheap to send and easy to send too often, so the server paces them per member:
typing goes out at most once per interval (the rest are dropped: the others' "is typing"
outlives the interval anyway); read offsets are coalesced to at most one per interval, the
newest winning, with a trailing one when the interval ends, so the last read is never lost.
Time is Trio's clock, so tests drive both with MockClock.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import trio


class TypingThrottle:
    """Whether a typing frame may go out now: at most one per ``interval`` seconds."""

    __slots__ = ("_interval", "_next")

    def __init__(self, interval: float) -> None:
        self._interval = interval
        self._next = float("-inf")

    def allows(self) -> bool:
        now = trio.current_time()
        if now < self._next:
            return False
        self._next = now + self._interval
        return True


class ReadReceipts:
    """A member's read offsets, sent on by ``send`` at most once per ``interval``: the first
    at once, then the newest noted meanwhile once the interval is over."""

    def __init__(self, send: Callable[[int], Awaitable[None]], interval: float) -> None:
        self._send = send
        self._interval = interval
        self._noted = 0  # The highest offset the member reported.
        self._sent = 0  # The highest one handed to ``send``.
        self._noticed = trio.Event()

    def note(self, offset: int) -> None:
        """The member has seen up to ``offset``; lower than before changes nothing."""
        if offset > self._noted:
            self._noted = offset
            self._noticed.set()

    async def run(self) -> None:
        """Sends as the member reads; returns only when cancelled (then see ``flush``)."""
        while True:
            await self._noticed.wait()
            self._noticed = trio.Event()
            await self.flush()
            await trio.sleep(self._interval)

    async def flush(self) -> None:
        """Send the newest offset noted, unless it went out already."""
        if self._noted > self._sent:
            self._sent = self._noted
            await self._send(self._sent)
