"""Room pub/sub over Redis: one connection per instance, one reader, one publisher.

The reader owns the pub/sub connection and hands each room's frames to that room's local
subscriptions. Subscriptions are reconciled rather than commanded: the rooms with local
subscribers are the wanted set, and one task brings the connection's SUBSCRIBEs in line
with it, so a new connection after an outage resubscribes every room by the same path.
Publishing queues the final frame for the publisher, which pipelines whatever is waiting
on a connection of its own: the hot path never waits for a Redis round trip. A chat
message (a post) waits in the same queue and goes out in the same pipeline as a call of
the POST script, which numbers, stores and publishes it; the sender's receipt hears the
script's answer. Sharing the queue keeps posts and plain frames in the order they came.

The reader and the sender each run as one asyncio task for a whole session rather than
one bridge crossing per batch: a crossing costs an asyncio task and several Trio scheduling
rounds each way, which under load is most of a frame's trip through Redis. Frames still
cross without one: trio-asyncio runs asyncio callbacks inside a Trio task, so the reader
hands frames to Trio channels with ``send_nowait``, and a Trio gatherer hands the sender
each batch by resolving a future. Gathering waits scheduling rounds for more frames, so it
runs on Trio: trio-asyncio gives every asyncio step a Trio round of its own, and on asyncio
those waits were most of the publisher's time under load.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, NamedTuple

import trio
from redis import exceptions as rx
from redis.asyncio.connection import AbstractConnection

from ..arrivals import while_more_arrive
from . import CONTROL, ROOM_RESYNC, SUBSCRIPTION_FRAMES, Receipt, keys
from .link import LOST, RedisLink
from .posts import POSTS_PER_CALL, RedisPosts
from .resp import packed

log = logging.getLogger(__name__)

# The reader's, the publisher's and the requests' batches' (chat.bus.batches), besides the
# link's command pool.
SESSION_CONNECTIONS = 3
# Frames waiting for the publisher; a full queue makes publishers wait (backpressure).
OUTGOING_FRAMES = 4096
PUBLISH_BATCH = 512
# How long a new room waits for Redis to confirm its SUBSCRIBE before going on regardless.
SUBSCRIBE_WAIT_SECONDS = 5.0


class Outgoing(NamedTuple):
    """What the publisher sends: a frame to PUBLISH, presence to count and publish, or a chat
    message to POST."""

    room_id: str
    frame: str  # A post's message, still without its offset; presence, without its count.
    undelivered: Callable[[], None] | None = None  # A frame's sender, told if it may be lost.
    post: bool = False
    counted: bool = False  # Presence: published with the room's count (Bus.announce).
    receipt: Receipt | None = None
    dedupe: str | None = None


class RoomChannels:
    publish_command = "PUBLISH"

    def __init__(self, link: RedisLink, posts: RedisPosts, on_control: Callable[[str, str], None]) -> None:
        self._link = link
        self._posts = posts
        # Told (room id, frame) of every control frame (ROOM_END, ROOM_REMOVE ...) as it arrives.
        self._on_control = on_control
        self._local: dict[str, set[trio.MemorySendChannel[str]]] = {}
        # Channels SUBSCRIBEd (and not since UNSUBSCRIBEd) on the current connection.
        self._subscribed: set[str] = set()
        self._confirmations: dict[str, trio.Event] = {}
        # Rooms subscribed when the connection was lost: told ROOM_RESYNC once subscribed again.
        self._lost: set[str] = set()
        self._changed = trio.Event()
        self._outgoing, self._queued = trio.open_memory_channel[Outgoing](OUTGOING_FRAMES)
        # Frames taken from the queue for the next batch: kept across sessions, in order.
        self._gathered: list[Outgoing] = []
        # The batch handed to the sender, of which Redis has answered the first ``_answered``.
        self._in_flight: list[Outgoing] = []
        self._answered = 0
        # Set while the sender waits for a batch, which resolving ``_handoff`` gives it.
        self._sender_ready = trio.Event()
        self._handoff: asyncio.Future[list[Outgoing]] | None = None
        # Its deadline is set while a batch awaits Redis's answer: a Redis that stops
        # answering ends the session, without an asyncio timer per batch.
        self._answer_deadline = trio.CancelScope()
        link.on_loss(self._release)

    async def session(self, nursery: trio.Nursery) -> None:
        """Start this session's reader, subscriptions and publisher; returns once resubscribed."""
        connection = await nursery.start(self._read)
        await nursery.start(self._sync, connection)
        nursery.start_soon(self._publish)

    @asynccontextmanager
    async def subscribe(self, room_id: str) -> AsyncIterator[trio.MemoryReceiveChannel[str]]:
        send, receive = trio.open_memory_channel[str](SUBSCRIPTION_FRAMES)
        channel = keys.room_channel(room_id)
        subscribers = self._local.setdefault(room_id, set())
        subscribers.add(send)
        try:
            if channel not in self._subscribed:
                self._confirmations.setdefault(channel, trio.Event())
                self._changed.set()
            confirmed = self._confirmations.get(channel)
            # Frames published before Redis confirms would be lost to this room, so wait;
            # while Redis is down the next session subscribes it instead.
            if confirmed is not None and self._link.ready:
                with trio.move_on_after(SUBSCRIBE_WAIT_SECONDS):
                    await confirmed.wait()
            async with receive:
                yield receive
        finally:
            subscribers.discard(send)
            send.close()
            if not subscribers and self._local.get(room_id) is subscribers:
                del self._local[room_id]
                self._changed.set()
                if channel not in self._subscribed:  # Left before its SUBSCRIBE was sent.
                    self._confirmations.pop(channel, trio.Event()).set()

    async def publish(self, room_id: str, frame: str, undelivered: Callable[[], None] | None = None) -> None:
        await self._queue(Outgoing(room_id, frame, undelivered))

    async def announce(self, room_id: str, presence: str) -> None:
        await self._queue(Outgoing(room_id, presence, counted=True))

    async def post(self, room_id: str, message: str, receipt: Receipt | None, dedupe: str | None) -> None:
        await self._queue(Outgoing(room_id, message, post=True, receipt=receipt, dedupe=dedupe))

    async def _queue(self, outgoing: Outgoing) -> None:
        await self._link.enqueue(self._outgoing, outgoing)

    def _release(self) -> None:
        for confirmed in self._confirmations.values():
            confirmed.set()
        self._confirmations.clear()
        self._subscribed = set()
        # Their frames published until the next session resubscribes them never come.
        self._lost = set(self._local)
        # Some of the batch may have gone out before the connection failed; nobody can say
        # which. Frames queued behind it wait for the next session.
        batch, self._in_flight = self._in_flight[self._answered :], []
        if batch:
            log.warning("%d frames may not have been published: redis went away", len(batch))
        for outgoing in batch:
            _settle(outgoing, None)

    async def _read(self, *, task_status: trio.TaskStatus[AbstractConnection] = trio.TASK_STATUS_IGNORED) -> None:
        connection = await self._link.dedicated_connection()
        try:
            task_status.started(connection)
            try:
                await self._link.aio(self._deliver_replies, connection)
            except LOST as error:
                self._link.lost(error)
        finally:
            await self._link.close_connection(connection)

    async def _deliver_replies(self, connection: AbstractConnection) -> None:
        """Runs on asyncio for the whole session; waits as long as the rooms are quiet."""
        while True:
            await self._dispatch(await connection.read_response())

    async def _dispatch(self, reply: list[Any]) -> None:
        kind = reply[0]
        if kind == "message":
            room_id = keys.room_of_channel(reply[1])
            if reply[2].startswith(CONTROL):
                self._on_control(room_id, reply[2])
            await self._hand_on(room_id, reply[2])
        elif kind == "subscribe":
            confirmed = self._confirmations.pop(reply[1], None)
            if confirmed is not None:
                confirmed.set()
            room_id = keys.room_of_channel(reply[1])
            if room_id in self._lost:
                self._lost.discard(room_id)
                await self._hand_on(room_id, ROOM_RESYNC)

    async def _hand_on(self, room_id: str, frame: str) -> None:
        for send in list(self._local.get(room_id, ())):
            try:
                try:
                    send.send_nowait(frame)
                except trio.WouldBlock:
                    # That room's subscriber is far behind: the reader waits for it, and
                    # Redis buffers for us meanwhile.
                    await self._link.from_aio(send.send, frame)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass  # That subscription ended while we waited for it.

    async def _sync(
        self, connection: AbstractConnection, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        self._subscribed = set()
        await self._sync_once(connection)
        pending = list(self._confirmations.values())
        with trio.move_on_after(SUBSCRIBE_WAIT_SECONDS):
            for confirmed in pending:
                await confirmed.wait()
        task_status.started()
        try:
            while True:
                await self._changed.wait()
                await self._sync_once(connection)
        except LOST as error:
            self._link.lost(error)

    async def _sync_once(self, connection: AbstractConnection) -> None:
        self._changed = trio.Event()
        wanted = {keys.room_channel(room_id) for room_id in self._local}
        add, remove = wanted - self._subscribed, self._subscribed - wanted
        for channel in add:
            self._confirmations.setdefault(channel, trio.Event())
        # Recorded before the awaits, so changes made meanwhile are diffed on the next round.
        self._subscribed = wanted
        if remove:
            await self._link.command(connection.send_command, "UNSUBSCRIBE", *sorted(remove))
        if add:
            await self._link.command(connection.send_command, "SUBSCRIBE", *sorted(add))

    async def _publish(self) -> None:
        try:
            connection = await self._link.dedicated_connection()
        except LOST as error:
            self._link.lost(error)
            return
        try:
            self._sender_ready, self._answer_deadline = trio.Event(), trio.CancelScope()
            await self._link.serve_handoffs(connection, self._gather, self._send_gathered, self._answer_deadline)
        finally:
            await self._link.close_connection(connection)

    async def _gather(self) -> None:
        """Runs on Trio for the whole session: gathers each batch and hands it to the sender."""
        while True:
            if not self._gathered:
                self._gathered.append(await self._queued.receive())
            await while_more_arrive(self._queued, PUBLISH_BATCH - len(self._gathered))
            await self._sender_ready.wait()
            handoff = self._handoff
            if handoff is None or handoff.done():
                # The sender was cancelled, so this session is ending: the batch waits for the next.
                await trio.sleep_forever()
            self._gathered += self._take_waiting(PUBLISH_BATCH - len(self._gathered))
            batch, self._gathered = self._gathered, []
            self._sender_ready = trio.Event()
            # In flight from here: should the session end before Redis acknowledges it,
            # its frames may or may not have been published.
            self._in_flight, self._answered = batch, 0
            handoff.set_result(batch)

    async def _send_gathered(self, connection: AbstractConnection) -> None:
        """Runs on asyncio for the whole session: pipelines each batch the gatherer hands it."""
        loop = asyncio.get_running_loop()
        # A Redis that restarted empty has no scripts: each session loads them first.
        await self._load_scripts(connection)
        while True:
            self._handoff = loop.create_future()
            self._sender_ready.set()
            batch = await self._handoff
            runs = _runs(batch)
            commands = [self._command(run) for run in runs]
            self._answer_deadline.deadline = trio.current_time() + self._link.command_timeout_seconds
            await connection.send_packed_command(packed(commands), check_health=False)
            refused = False
            for run in runs:
                try:
                    reply = await connection.read_response()
                except rx.ResponseError as error:
                    # Refused (NOSCRIPT after a SCRIPT FLUSH, a full Redis...): read whole,
                    # so the connection is still in step; that command's senders hear.
                    log.error("redis refused %d frames for room %s: %s", len(run), run[0].room_id, error)
                    reply, refused = None, True
                for i, outgoing in enumerate(run):
                    self._answered += 1
                    # A post's reply is the list of its run's offsets (empty: the room is gone).
                    _settle(outgoing, reply[i] if isinstance(reply, list) and i < len(reply) else reply)
            if refused:
                await self._load_scripts(connection)
            self._answer_deadline.deadline = math.inf
            self._in_flight = []

    def _command(self, run: list[Outgoing]) -> tuple[Any, ...]:
        """The one command that sends a run (see ``_runs``)."""
        first = run[0]
        if first.post:
            return self._posts.command(first.room_id, [(o.frame, o.dedupe) for o in run])
        if first.counted:
            return self._posts.presence(first.room_id, first.frame)
        return (self.publish_command, keys.room_channel(first.room_id), first.frame)

    async def _load_scripts(self, connection: AbstractConnection) -> None:
        self._answer_deadline.deadline = trio.current_time() + self._link.command_timeout_seconds
        await connection.send_command("SCRIPT", "LOAD", self._posts.script)
        await connection.read_response()
        self._answer_deadline.deadline = math.inf

    def _take_waiting(self, most: int) -> list[Outgoing]:
        batch: list[Outgoing] = []
        while len(batch) < most:
            try:
                batch.append(self._queued.receive_nowait())
            except trio.WouldBlock:
                break
        return batch


def _runs(batch: list[Outgoing]) -> list[list[Outgoing]]:
    """The batch as commands: each frame alone, consecutive posts to one room together."""
    runs: list[list[Outgoing]] = []
    for outgoing in batch:
        last = runs[-1] if runs else None
        if (
            outgoing.post
            and last is not None
            and last[0].post
            and last[0].room_id == outgoing.room_id
            and len(last) < POSTS_PER_CALL
        ):
            last.append(outgoing)
        else:
            runs.append([outgoing])
    return runs


def _settle(outgoing: Outgoing, reply: Any) -> None:
    """Tell a frame's sender what became of it: Redis's reply, or None when unknown."""
    try:
        if not outgoing.post:
            if reply is None and outgoing.undelivered is not None:
                outgoing.undelivered()
        elif outgoing.receipt is not None:
            if isinstance(reply, int) and reply > 0:
                outgoing.receipt.posted(reply)
            else:
                outgoing.receipt.lost()  # Unknown, refused, or (0) the room is gone.
    except Exception:  # A sender's bug must not end the session of every room.
        log.exception("telling a sender about its frame failed")
