"""``ephemeralchat`` / ``python -m chat``: read the configuration and serve it with Hypercorn."""

from __future__ import annotations

import logging
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

import trio
from hypercorn.config import Config
from hypercorn.trio import serve as hypercorn_serve

from . import collector, connections, logs
from .bus import Bus
from .bus.memory import MemoryBus
from .config import ConfigError, Settings
from .http import ChatApp, create_app

log = logging.getLogger("chat")

# Connections the kernel queues before the server accepts them: as many as Linux allows, which
# is net.core.somaxconn (4096 by default), so a host that takes bigger storms raises only that.
# Hypercorn's 100 drops the SYNs of a reconnect storm, and each dropped client retries only
# after 1, 3, 7, 15 ... seconds.
LISTEN_BACKLOG = 65535


def hypercorn_config(settings: Settings) -> Config:
    config = Config()
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    config.bind = [f"{host}:{settings.port}"]
    config.backlog = LISTEN_BACKLOG
    # Pings come from the Hub (chat.ws.pings): one task for every socket, not one each.
    config.websocket_ping_interval = None
    config.websocket_max_message_size = settings.frame_max_bytes
    config.graceful_timeout = settings.shutdown_grace_seconds
    config.accesslog = None
    config.errorlog = logging.getLogger("hypercorn.error")
    return config


@asynccontextmanager
async def open_bus(settings: Settings) -> AsyncIterator[Bus]:
    """The backend the settings ask for, open for as long as the server runs."""
    if not settings.uses_redis:
        yield MemoryBus(history_size=settings.history_size, history_bytes=settings.history_bytes)
        return
    # Imported here: trio-asyncio installs its asyncio policy on import, which a
    # MemoryBus server has no use for.
    from .bus.redis import open_redis_bus

    async with open_redis_bus(
        settings.redis_dsn,
        presence_timeout_seconds=settings.presence_timeout_seconds,
        history_size=settings.history_size,
        history_bytes=settings.history_bytes,
        cluster_nodes=settings.redis_cluster_nodes,
        password=settings.redis_password,
    ) as bus:
        yield bus


# After the drain only idle keep-alive connections remain, which Hypercorn would otherwise
# wait for up to its whole graceful timeout.
AFTER_DRAIN_GRACE_SECONDS = 0.5


async def wait_for_shutdown(app: ChatApp, config: Config) -> None:
    """Returns on SIGINT/SIGTERM, after every WebSocket was told to go away (close 1001)."""
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for signum in signals:
            log.info("%s received: closing connections", signal.Signals(signum).name)
            break
    await app.hub.drain(app.settings.shutdown_grace_seconds)
    config.graceful_timeout = min(config.graceful_timeout, AFTER_DRAIN_GRACE_SECONDS)


async def serve(settings: Settings, *, task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED) -> None:
    async with open_bus(settings) as bus:
        app = create_app(settings, bus)
        config = hypercorn_config(settings)
        connections.install()
        collector.settle()
        async with trio.open_nursery() as nursery:
            binds = await nursery.start(
                partial(hypercorn_serve, app, config, shutdown_trigger=partial(wait_for_shutdown, app, config))
            )
            for bind in binds:
                log.info("EphemeralChat serving on %s (%s backend)", bind, type(bus).__name__)
            task_status.started(binds)


def main() -> None:
    try:
        settings = Settings.from_env()
    except ConfigError as error:
        sys.exit(f"ephemeralchat: {error}")
    logs.configure(settings)
    if settings.generated_secret:
        log.warning(
            "SECRET_KEY is not set: generated one for this process. "
            "Set SECRET_KEY (the same on every instance) before running more than one."
        )
    trio.run(serve, settings)


if __name__ == "__main__":
    main()
