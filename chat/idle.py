"""Keep-alive for the requests chat.connections serves itself: a connection whose next request
head has not come within Hypercorn's ``keep_alive_timeout`` is closed, as Hypercorn closes it.

One task sweeps every such connection twice a second, rather than each connection setting its
cancel scope's deadline for each wait and lifting it for each answer: those two settings were
about 5 µs of every request (Trio works out the scope's place among all deadlines each time;
benchmarks/RESULTS.md, 2026-12-04 "night"). A connection is closed up to one sweep late.
"""

from __future__ import annotations

import trio

SWEEP_SECONDS = 0.5


class IdleConnections:
    """The connections waiting for a request head, each with the time it may wait until."""

    def __init__(self) -> None:
        self._waiting: dict[trio.CancelScope, float] = {}

    def waiting(self, scope: trio.CancelScope, seconds: float) -> None:
        """The connection (its scope, cancelled when the time is up) waits ``seconds`` at most."""
        self._waiting[scope] = trio.current_time() + seconds

    def busy(self, scope: trio.CancelScope) -> None:
        """The connection has its head (or has ended): no longer bound."""
        self._waiting.pop(scope, None)

    def __len__(self) -> int:
        return len(self._waiting)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        while True:
            await trio.sleep(SWEEP_SECONDS)
            now = trio.current_time()
            late = [scope for scope, until in self._waiting.items() if until <= now]
            for scope in late:
                del self._waiting[scope]
                scope.cancel()
