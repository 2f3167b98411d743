"""Requests' commands, batched: concurrent requests share one Redis round trip.

A request's step (count a rate, create a room, look at a room, take a seat) is a handful of
commands. Sent alone, each step is a round trip to Redis and the work around it. Here a step
is a *job*: it waits in a bounded queue, and a Trio task per session gathers whatever jobs are
waiting and pipelines all their commands on a connection of its own (chat.bus.wire: spoken
from Trio, so a batch costs no crossing to asyncio). Each job's commands go out together and
in order, so a job may wrap them in MULTI/EXEC.

Every script a batch calls is loaded in this session before the batch goes out, so Redis
runs a job's commands in order, each once. Should its scripts be flushed under a running
session (NOSCRIPT), they are loaded again and exactly the commands Redis refused go once
more: the rest of their jobs ran (sending a whole job again would, say, seat a member twice
and tell it its own seat filled the room). A Redis that answers a job's command with any
other error fails that job alone; a lost connection, or a batch not answered within the
link's command timeout, fails the whole batch and the jobs waiting, and ends the session.
"""

from __future__ import annotations

import logging
from typing import Any

import trio
from redis import exceptions as rx
from redis.commands.core import AsyncScript

from ..arrivals import while_more_arrive
from . import BusUnavailable
from .link import LOST, UNAVAILABLE, RedisLink
from .resp import packed
from .wire import Wire

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
            wire = await self._link.open_wire()
        except LOST as error:
            self._link.lost(error)
            return
        self._loaded = set()  # A Redis that restarted lost them.
        batch: list[Job] = []
        try:
            while True:
                batch = [await self._queued.receive()]
                await while_more_arrive(self._queued, JOBS_PER_BATCH - 1)
                while len(batch) < JOBS_PER_BATCH:
                    try:
                        batch.append(self._queued.receive_nowait())
                    except trio.WouldBlock:
                        break
                with trio.fail_after(self._link.command_timeout_seconds):
                    await self._send(wire, batch)
                batch = []
        except trio.TooSlowError:
            self._link.lost(rx.TimeoutError(f"redis did not answer within {self._link.command_timeout_seconds} s"))
        except LOST as error:
            self._link.lost(error)
        finally:
            # Cancelled or lost: nobody can say which of these Redis ran.
            _fail(batch)
            await wire.aclose()

    async def _send(self, wire: Wire, batch: list[Job]) -> None:
        """The scripts the batch calls loaded first (once a session), then one round trip for
        the batch, and one more for the commands refused NOSCRIPT."""
        if len(self._loaded) < len(self._scripts):
            await self._load(wire, [sha for sha in self._scripts if sha not in self._loaded])
        replies = iter(await wire.exchange(packed([c for job in batch for c in job.commands]), _count(batch)))
        for job in batch:
            job.replies = [next(replies) for _ in job.commands]
        refused = [
            (job, i) for job in batch for i, reply in enumerate(job.replies) if isinstance(reply, rx.NoScriptError)
        ]
        if refused:  # Flushed under this session.
            await self._load(wire, list(self._scripts))
            again = await wire.exchange(packed([job.commands[i] for job, i in refused]), len(refused))
            for (job, i), reply in zip(refused, again, strict=True):
                job.replies[i] = reply
        for job in batch:
            job.done.set()

    async def _load(self, wire: Wire, shas: list[str]) -> None:
        """These scripts into Redis, in one round trip."""
        replies = await wire.exchange(packed([("SCRIPT", "LOAD", self._scripts[sha]) for sha in shas]), len(shas))
        for sha, reply in zip(shas, replies, strict=True):
            if isinstance(reply, Exception):
                raise reply
            self._loaded.add(sha)


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


def _count(batch: list[Job]) -> int:
    return sum(len(job.commands) for job in batch)


def _fail(jobs: list[Job]) -> None:
    lost = BusUnavailable(UNAVAILABLE)
    for job in jobs:
        job.fail(lost)
