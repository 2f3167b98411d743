"""Requests' commands, batched: concurrent requests share one Redis round trip and one crossing.

A request's step (count a rate, create a room, look at a room, take a seat) is a handful of
commands. Sent alone, each step costs a bridge crossing to asyncio (an asyncio task and
several Trio scheduling rounds each way) and a round trip to Redis, and under load that
crossing is most of the step's CPU. Here a step is a *job*: it waits in a bounded queue, a
Trio task per session gathers whatever jobs are waiting, and a sender that stays on asyncio
for the whole session pipelines all their commands on a connection of its own, as the
publisher does for frames: no crossing per batch, a handoff instead. Each job's commands go
out together and in order, so a job may wrap them in MULTI/EXEC.

Every script a batch calls is loaded in this session before the batch goes out, so Redis
runs a job's commands in order, each once. Should its scripts be flushed under a running
session (NOSCRIPT), they are loaded again and exactly the commands Redis refused go once
more: the rest of their jobs ran (sending a whole job again would, say, seat a member twice
and tell it its own seat filled the room). A Redis that answers a job's command with any
other error fails that job alone; a lost connection fails the whole batch and the jobs
waiting, and ends the session.
"""

from __future__ import annotations

import asyncio
import logging
import math
from typing import Any

import trio
from redis import exceptions as rx
from redis.asyncio.connection import AbstractConnection
from redis.commands.core import AsyncScript

from ..arrivals import while_more_arrive
from . import BusUnavailable
from .link import LOST, UNAVAILABLE, RedisLink
from .resp import packed

log = logging.getLogger(__name__)

# Jobs waiting for the next batch; a full queue makes requests wait (backpressure).
QUEUED_JOBS = 1024
JOBS_PER_BATCH = 256

Command = tuple[Any, ...]


class Job:
    __slots__ = ("commands", "done", "error", "replies")

    def __init__(self, commands: list[Command]) -> None:
        self.commands = commands
        self.replies: list[Any] = []
        self.error: BaseException | None = None
        self.done = trio.Event()

    def fail(self, error: BaseException) -> None:
        if not self.done.is_set():
            self.error = error
            self.done.set()


class Batches:
    def __init__(self, link: RedisLink) -> None:
        self._link = link
        self._queue, self._queued = trio.open_memory_channel[Job](QUEUED_JOBS)
        self._scripts: dict[str, str] = {}  # sha -> source, of the scripts jobs have called
        self._loaded: set[str] = set()  # Those this session has loaded into Redis.
        # The batch Redis has been sent and not yet answered in full.
        self._in_flight: list[Job] = []
        # Set while the sender waits for a batch, which resolving ``_handoff`` gives it.
        self._sender_ready = trio.Event()
        self._handoff: asyncio.Future[list[Job]] | None = None
        # The bound on Redis's answer to the batch in flight (none while the sender waits).
        self._answer_deadline = trio.CancelScope()
        link.on_loss(self._release)

    def session(self, nursery: trio.Nursery) -> None:
        nursery.start_soon(self._serve)

    async def run(self, *commands: Command) -> list[Any]:
        """The replies to ``commands``, sent together with those of concurrent jobs."""
        job = Job(list(commands))
        await self._link.enqueue(self._queue, job)
        await job.done.wait()
        if job.error is not None:
            raise BusUnavailable(UNAVAILABLE) from job.error
        for reply in job.replies:
            if isinstance(reply, rx.ResponseError):
                log.error("redis command failed: %s", reply)
                raise BusUnavailable(UNAVAILABLE) from reply
        return job.replies

    async def script(self, script: AsyncScript, keys: list[str], args: list[Any]) -> Any:
        """One call of a registered Lua script, as a job of its own."""
        (reply,) = await self.run(self.evalsha(script, keys, args))
        return reply

    def evalsha(self, script: AsyncScript, keys: list[str], args: list[Any]) -> Command:
        """A call of a registered Lua script, as one of a job's commands."""
        self._scripts[script.sha] = script.script  # type: ignore[assignment]
        return ("EVALSHA", script.sha, len(keys), *keys, *args)

    def _release(self) -> None:
        """The session ended: the jobs still waiting fail now rather than at the next one."""
        lost = BusUnavailable(UNAVAILABLE)
        while True:
            try:
                self._queued.receive_nowait().fail(lost)
            except trio.WouldBlock:
                break

    async def _serve(self) -> None:
        try:
            connection = await self._link.dedicated_connection()
        except LOST as error:
            self._link.lost(error)
            return
        try:
            self._sender_ready, self._answer_deadline = trio.Event(), trio.CancelScope()
            self._loaded = set()  # A Redis that restarted lost them.
            await self._link.serve_handoffs(connection, self._gather, self._send_batches, self._answer_deadline)
        finally:
            # Cancelled or lost: nobody can say which of these Redis ran.
            batch, self._in_flight = self._in_flight, []
            _fail(batch)
            await self._link.close_connection(connection)

    async def _gather(self) -> None:
        """Runs on Trio for the whole session: gathers each batch and hands it to the sender."""
        batch: list[Job] = []
        try:
            while True:
                batch = [await self._queued.receive()]
                await while_more_arrive(self._queued, JOBS_PER_BATCH - 1)
                await self._sender_ready.wait()
                handoff = self._handoff
                if handoff is None or handoff.done():
                    return  # The sender was cancelled: this session is ending.
                while len(batch) < JOBS_PER_BATCH:
                    try:
                        batch.append(self._queued.receive_nowait())
                    except trio.WouldBlock:
                        break
                self._sender_ready = trio.Event()
                self._in_flight, batch = batch, []
                handoff.set_result(self._in_flight)
        finally:
            _fail(batch)  # Taken from the queue, never sent.

    async def _send_batches(self, connection: AbstractConnection) -> None:
        """Runs on asyncio for the whole session: pipelines each batch the gatherer hands it,
        without a crossing from Trio per batch (most of a lone job's cost)."""
        loop = asyncio.get_running_loop()
        while True:
            self._handoff = loop.create_future()
            self._sender_ready.set()
            batch = await self._handoff
            self._answer_deadline.deadline = trio.current_time() + self._link.command_timeout_seconds
            await self._send(connection, batch)
            self._answer_deadline.deadline = math.inf
            self._in_flight = []

    async def _send(self, connection: AbstractConnection, batch: list[Job]) -> None:
        """Runs on asyncio: the scripts it calls loaded first (once a session), then one
        pipeline for the batch, and once more for the commands refused NOSCRIPT."""
        if len(self._loaded) < len(self._scripts):
            await self._load(connection, [sha for sha in self._scripts if sha not in self._loaded])
        await self._pipeline(connection, batch)
        refused = [
            (job, i) for job in batch for i, reply in enumerate(job.replies) if isinstance(reply, rx.NoScriptError)
        ]
        if refused:  # Flushed under this session.
            await self._load(connection, list(self._scripts))
            await connection.send_packed_command(packed([job.commands[i] for job, i in refused]), check_health=False)
            for job, i in refused:
                job.replies[i] = await _reply(connection)
        for job in batch:
            job.done.set()

    async def _load(self, connection: AbstractConnection, shas: list[str]) -> None:
        """Runs on asyncio: these scripts into Redis, in one round trip."""
        await connection.send_packed_command(
            packed([("SCRIPT", "LOAD", self._scripts[sha]) for sha in shas]), check_health=False
        )
        for sha in shas:
            await connection.read_response()
            self._loaded.add(sha)

    async def _pipeline(self, connection: AbstractConnection, batch: list[Job]) -> None:
        commands = [command for job in batch for command in job.commands]
        await connection.send_packed_command(packed(commands), check_health=False)
        for job in batch:
            job.replies = [await _reply(connection) for _ in job.commands]


class Unbatched:
    """``Batches``' calls for a Redis Cluster, where one job's keys may live on other nodes
    than the next job's: each job goes out alone, through the cluster client, which routes it
    by slot. A job wrapped in MULTI/EXEC is sent as a transaction (its keys share one slot)."""

    def __init__(self, link: RedisLink) -> None:
        self._link = link

    def session(self, nursery: trio.Nursery) -> None:
        """Nothing runs for a whole session: each job is its own call."""

    async def run(self, *commands: Command) -> list[Any]:
        """The replies to ``commands``, as Redis sends them (a hash as a flat list).

        For MULTI ... EXEC, only the replies of the commands inside."""
        body = [command for command in commands if command not in (("MULTI",), ("EXEC",))]
        pipe = self._link.client.pipeline(transaction=len(body) < len(commands))
        for command in body:
            pipe.execute_command(*command)
        replies: list[Any] = await self._link.call(pipe.execute)
        return [_flat(reply) for reply in replies]

    async def script(self, script: AsyncScript, keys: list[str], args: list[Any]) -> Any:
        return await self._link.call(script, keys=keys, args=args)


def _flat(reply: Any) -> Any:
    # The cluster client turns a hash into a dict; a job's caller reads it as Redis sends it.
    return [item for pair in reply.items() for item in pair] if isinstance(reply, dict) else reply


async def _reply(connection: AbstractConnection) -> Any:
    """Runs on asyncio: the next reply, or the error Redis answered instead."""
    try:
        return await connection.read_response()
    except rx.ResponseError as error:  # Read whole: the connection stays in step.
        return error


def _fail(jobs: list[Job]) -> None:
    lost = BusUnavailable(UNAVAILABLE)
    for job in jobs:
        job.fail(lost)
