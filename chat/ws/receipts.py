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
    at once, then the newest noted meanwhile once the interval is over.

    The pacing runs as a task in ``nursery`` only while there is something to pace: an idle
    member (most of them) holds no task for it, which is a task's stack and cancel scopes
    less per connection."""

    __slots__ = ("_interval", "_noted", "_nursery", "_pacing", "_send", "_sent", "_stopped")

    def __init__(self, send: Callable[[int], Awaitable[None]], interval: float, nursery: trio.Nursery) -> None:
        self._send = send
        self._interval = interval
        self._nursery = nursery
        self._noted = 0  # The highest offset the member reported.
        self._sent = 0  # The highest one handed to ``send``.
        self._pacing: trio.CancelScope | None = None  # While a pacing task runs.
        self._stopped = False

    def note(self, offset: int) -> None:
        """The member has seen up to ``offset``; lower than before changes nothing."""
        if offset <= self._noted:
            return
        self._noted = offset
        if self._pacing is None and not self._stopped:
            self._pacing = trio.CancelScope()
            self._nursery.start_soon(self._pace, self._pacing)

    async def _pace(self, scope: trio.CancelScope) -> None:
        """Send now, then once per interval while the member reads on; ends when it stops."""
        try:
            with scope:
                while self._noted > self._sent:
                    await self.flush()
                    await trio.sleep(self._interval)
        finally:
            self._pacing = None

    def stop(self) -> None:
        """No more sending on its own (the member is leaving; see ``flush``)."""
        self._stopped = True
        if self._pacing is not None:
            self._pacing.cancel()

    async def flush(self) -> None:
        """Send the newest offset noted, unless it went out already."""
        if self._noted > self._sent:
            self._sent = self._noted
            await self._send(self._sent)
