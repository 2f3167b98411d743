from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from .support import Server, running_app


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    """The app on a real Hypercorn on a loopback port, MemoryBus backend."""
    async with running_app() as running:
        yield running
