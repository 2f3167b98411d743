"""One instance's connections to Redis, and how they come back after an outage.

A ``RedisLink`` owns a bounded connection pool for commands and runs *sessions*: a session
starts once Redis answers, runs the tasks that need a live Redis (the pub/sub reader, the
publisher, the heartbeat) and ends on the first connection error anywhere, whether a
session task or a request's command hit it. Between sessions the link is not ready,
every call fails fast with ``BusUnavailable``, and it retries with exponential backoff.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import trio
import trio_asyncio
from redis import exceptions as rx
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.connection import AbstractConnection
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from . import BusUnavailable

log = logging.getLogger(__name__)

# Command connections per instance, however many rooms it serves; callers beyond it queue.
POOL_CONNECTIONS = 8
CONNECT_TIMEOUT_SECONDS = 2.0
# A command's bound, the wait for a pooled connection included.
COMMAND_TIMEOUT_SECONDS = 5.0
BACKOFF_MIN_SECONDS = 0.05
BACKOFF_MAX_SECONDS = 2.0

UNAVAILABLE = "The chat backend (Redis) is unavailable; try again shortly"

T = TypeVar("T")

# Errors that mean "Redis cannot be reached", as opposed to a bad command. On a cluster, a
# slot with no master to serve it (before its replica takes over, or before the cluster
# is formed) is one too.
LOST = (rx.ConnectionError, rx.TimeoutError, OSError, rx.RedisClusterException)

Session = Callable[[trio.Nursery], Awaitable[None]]

# What every connection of ours to Redis is opened with (see ``RedisLink._client``).
CONNECTION_OPTIONS: dict[str, Any] = {
    "socket_connect_timeout": CONNECT_TIMEOUT_SECONDS,
    "socket_timeout": None,
    "retry": Retry(NoBackoff(), 0),
    "decode_responses": True,
    # RESP2: pub/sub messages arrive as plain replies the reader parses, not as RESP3
    # pushes that redis-py would route to its own handler.
    "protocol": 2,
}


class RedisLink:
    def __init__(
        self,
        url: str,
        loop: trio_asyncio.TrioEventLoop,
        *,
        client_name: str,
        command_timeout_seconds: float = COMMAND_TIMEOUT_SECONDS,
    ) -> None:
        self._loop = loop
        self._command_timeout = command_timeout_seconds
        self.client = self._client(url, client_name)
        self._ready = False
        self._up = trio.Event()
        # Sessions re-established after a loss (the first one is not counted).
        self.reconnects = 0
        self._session = trio.CancelScope()
        self._on_loss: list[Callable[[], None]] = []
        # Callers' commands in flight at once: one per pool connection. Those waiting for a
        # turn wait here, before the command's time bound starts, so a burst of callers (a
        # reconnect storm) queues instead of reading as a Redis that stopped answering.
        self._turns = trio.Semaphore(POOL_CONNECTIONS)
        # Callers waiting for room in a queue a session drains (see ``enqueue``).
        self._waiting: set[trio.CancelScope] = set()

    def _client(self, url: str, client_name: str) -> Any:
        # No redis-py retries: a failed command ends the session, and the session's
        # reconnect loop (with backoff) is the one place that retries.
        # No redis-py timeouts on commands either: each one leaves an asyncio timer that
        # trio-asyncio keeps, cancelled or not, and wakes up for when it falls due (three
        # per command, so a burst of commands meant a burst of idle wake-ups five seconds
        # later). ``command`` bounds them on the Trio side instead.
        self.pool = BlockingConnectionPool.from_url(
            url,
            max_connections=POOL_CONNECTIONS,
            timeout=None,
            **CONNECTION_OPTIONS,
            # Named, so CLIENT LIST tells operators which instance holds which connection.
            client_name=client_name,
        )
        return Redis(connection_pool=self.pool)

    @property
    def ready(self) -> bool:
        """A session is up: commands may be sent."""
        return self._ready

    @ready.setter
    def ready(self, ready: bool) -> None:
        self._ready = ready
        if ready:
            self._up.set()
        elif self._up.is_set():
            self._up = trio.Event()

    async def until_ready(self) -> None:
        """Return once a session is up (at once, if one is)."""
        await self._up.wait()

    def on_loss(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` each time a session ends (Redis became unreachable)."""
        self._on_loss.append(callback)

    async def aio(self, fn: Callable[..., Awaitable[Any]], *args: Any, **kwargs: Any) -> Any:
        """Await an asyncio-flavoured redis-py call from Trio, with no readiness check."""
        return await trio_asyncio.aio_as_trio(fn, loop=self._loop)(*args, **kwargs)

    async def from_aio(self, fn: Callable[..., Awaitable[Any]], *args: Any) -> Any:
        """From asyncio code, await a Trio-flavoured call."""
        return await trio_asyncio.trio_as_aio(fn, loop=self._loop)(*args)

    async def command(self, fn: Callable[..., Awaitable[Any]], *args: Any, **kwargs: Any) -> Any:
        """``aio`` with the link's time bound; a Redis that stops answering counts as lost.

        Cancelling the call cancels its asyncio task, and redis-py drops a connection whose
        command was interrupted, so no reply can be read by the wrong caller.
        """
        with trio.move_on_after(self._command_timeout):
            return await self.aio(fn, *args, **kwargs)
        raise rx.TimeoutError(f"redis did not answer within {self._command_timeout} s")

    async def call(self, fn: Callable[..., Awaitable[Any]], *args: Any, **kwargs: Any) -> Any:
        """A command on behalf of a caller: fails fast while Redis is down."""
        if not self.ready:
            raise BusUnavailable(UNAVAILABLE)
        try:
            async with self._turns:
                if not self.ready:  # Lost while this call waited for its turn.
                    raise BusUnavailable(UNAVAILABLE)
                return await self.command(fn, *args, **kwargs)
        except LOST as error:
            self.lost(error)
            raise BusUnavailable(UNAVAILABLE) from error
        except rx.RedisError as error:
            log.error("redis command failed: %s", error)
            raise BusUnavailable(UNAVAILABLE) from error

    async def enqueue(self, channel: trio.MemorySendChannel[T], item: T) -> None:
        """Put ``item`` in a bounded queue that the session drains: at once if there is room,
        else once there is, unless Redis goes away meanwhile (then the caller hears of it)."""
        if not self.ready:
            raise BusUnavailable(UNAVAILABLE)
        try:
            channel.send_nowait(item)
            return
        except trio.WouldBlock:
            pass
        with trio.CancelScope() as waiting:
            self._waiting.add(waiting)
            try:
                await channel.send(item)
                return
            finally:
                self._waiting.discard(waiting)
        raise BusUnavailable(UNAVAILABLE)

    def lost(self, error: BaseException) -> None:
        """End the current session: Redis (or our connection to it) failed."""
        if self.ready:
            log.warning("lost redis: %s", error or type(error).__name__)
        self.ready = False
        self._session.cancel()

    @property
    def command_timeout_seconds(self) -> float:
        return self._command_timeout

    async def dedicated_connection(self) -> AbstractConnection:
        """A new connection outside the pool, for one task that keeps it for a whole session."""
        connection: AbstractConnection = self.pool.connection_class(**self.pool.connection_kwargs)
        await self.aio(connection.connect)
        return connection

    async def serve_handoffs(
        self,
        connection: AbstractConnection,
        gather: Callable[[], Awaitable[None]],
        send: Callable[[AbstractConnection], Awaitable[None]],
        answer_deadline: trio.CancelScope,
    ) -> None:
        """A session's sender on ``connection``: ``gather`` runs on Trio and hands each batch to
        ``send``, which stays on asyncio for the whole session (no crossing per batch) and sets
        ``answer_deadline`` around each batch's answer; a Redis that misses it, or fails, is lost."""
        async with trio.open_nursery() as nursery:
            nursery.start_soon(gather)
            try:
                with answer_deadline:
                    await self.aio(send, connection)
                raise rx.TimeoutError(f"redis did not answer within {self._command_timeout} s")
            except LOST as error:
                self.lost(error)
            nursery.cancel_scope.cancel()

    async def close_connection(self, connection: AbstractConnection) -> None:
        # Shielded and bounded: a cancelled close would leave the socket half-closed.
        with trio.CancelScope(shield=True), trio.move_on_after(CONNECT_TIMEOUT_SECONDS):
            await self.aio(connection.disconnect, nowait=True)

    async def run(self, session: Session, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Keep a session up while Redis answers; returns only when cancelled."""
        backoff = BACKOFF_MIN_SECONDS
        started = False
        try:
            while True:
                self._session = trio.CancelScope()
                with self._session:
                    try:
                        await self.command(self.client.ping)
                        async with trio.open_nursery() as nursery:
                            await session(nursery)
                            self.ready = True
                            backoff = BACKOFF_MIN_SECONDS
                            log.info("connected to redis")
                            if started:  # Not the first session: Redis came back.
                                self.reconnects += 1
                            if not started:
                                started = True
                                task_status.started()
                    except* (rx.RedisError, rx.RedisClusterException, OSError) as errors:
                        # Anything Redis answers with that breaks a session (even a bad
                        # reply) is retried with backoff rather than taking the server down.
                        self.lost(errors.exceptions[0])
                self.ready = False
                for waiting in self._waiting:
                    waiting.cancel()
                for callback in self._on_loss:
                    callback()
                await self._disconnect_pool()
                if not started:
                    started = True
                    task_status.started()  # Serve anyway: not ready until Redis answers.
                await trio.sleep(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX_SECONDS)
        finally:
            self.ready = False
            await self._disconnect_pool()

    async def _disconnect_pool(self) -> None:
        # Pooled sockets to the old server are dead; drop them rather than fail on each.
        with trio.CancelScope(shield=True), trio.move_on_after(CONNECT_TIMEOUT_SECONDS):
            try:
                await self.aio(self.pool.disconnect, inuse_connections=True)
            except (rx.RedisError, OSError) as error:
                log.debug("closing redis pool: %s", error)
