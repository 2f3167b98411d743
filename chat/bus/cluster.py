"""RedisBus on a Redis Cluster: commands routed by slot, room traffic on sharded pub/sub.

A room's keys and its channel share the room's hash tag (``keys``), so each room lives
on one shard: its scripts run there, and its frames are SPUBLISHed there (the POST script
does it from Lua) and travel only to that shard's subscribers, instead of to every node as
a classic PUBLISH does on a cluster.

Connections stay bounded however many rooms an instance serves: the cluster client's
command connections (at most ``POOL_CONNECTIONS`` at once, so per node too), and one
subscription connection per master that owns a room served here, over which SSUBSCRIBEs
go out in batches (one write for every room that changed). The publisher pipelines each
batch through the cluster client, which splits it by node and follows MOVED / ASK.

A node that fails is one shard's trouble, not the instance's: commands for its slots fail
(their callers hear ``BusUnavailable``: REST answers 503, senders get error frames), its
rooms' subscriptions are lost, and everything else goes on. The link then reads the slot
map again from any node that answers, and again (paced) until the failed slots have a
master, a promoted replica. A slot that moves (reshard, failover) ends its channels'
subscriptions at the old owner, which says so with SUNSUBSCRIBE. Either way the room is
subscribed again where its slot lives now and told ROOM_RESYNC, so it reads what it
missed from its history. Only a cluster of which no node answers ends the session, as one
Redis that stops answering does: the instance is not ready until it answers again.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any

import trio
import trio_asyncio
from redis import exceptions as rx
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.connection import AbstractConnection

from ..arrivals import while_more_arrive
from . import keys
from .channels import PUBLISH_BATCH, SUBSCRIBE_WAIT_SECONDS, RoomChannels, _runs, _settle
from .link import CONNECT_TIMEOUT_SECONDS, CONNECTION_OPTIONS, LOST, POOL_CONNECTIONS, RedisLink

log = logging.getLogger(__name__)


class ClusterLink(RedisLink):
    """A ``RedisLink`` whose client is a ``RedisCluster`` reached through seed nodes."""

    def __init__(
        self,
        seeds: Sequence[tuple[str, int]],
        loop: trio_asyncio.TrioEventLoop,
        *,
        password: str = "",
        client_name: str,
        command_timeout_seconds: float,
    ) -> None:
        self._seeds = list(seeds)
        self._password = password or None
        # Commands in flight at once: the cluster client opens a connection per command
        # on a node and fails (rather than waits) past its bound, so the wait is here.
        self._slots = trio.Semaphore(POOL_CONNECTIONS)
        self._trouble = trio.Event()
        self._on_new_map: list[Callable[[], None]] = []
        super().__init__("", loop, client_name=client_name, command_timeout_seconds=command_timeout_seconds)

    def _client(self, url: str, client_name: str) -> Any:
        return RedisCluster(
            startup_nodes=[ClusterNode(host, port) for host, port in self._seeds],
            password=self._password,
            client_name=client_name,
            max_connections=POOL_CONNECTIONS,
            # No retries (CONNECTION_OPTIONS), as on one Redis; MOVED and ASK are still
            # followed: a redirect is not a retry.
            **CONNECTION_OPTIONS,
        )

    async def command(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        async with self._slots:
            return await super().command(fn, *args, **kwargs)

    def lost(self, error: BaseException) -> None:
        """A node failed (or timed out): the watch reads the slot map again; the session goes on."""
        if self.ready and not self._trouble.is_set():
            log.warning("redis cluster node failed: %s", error or type(error).__name__)
        self._trouble.set()

    def on_new_map(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` each time the slot map was read again after a failure."""
        self._on_new_map.append(callback)

    async def watch(self) -> None:
        """For the session: after each failure, the slot map again, paced; none answers: lost."""
        self._trouble = trio.Event()
        while True:
            await self._trouble.wait()
            await trio.sleep(MAP_PACE_SECONDS)  # Failures come in bursts; one reading serves them.
            self._trouble = trio.Event()
            try:
                await self.command(self.client.nodes_manager.initialize)
            except (rx.RedisError, rx.RedisClusterException, OSError) as error:
                # No node answers, or none agrees on a full map: the cluster is down.
                super().lost(error)
                return
            for callback in self._on_new_map:
                callback()

    async def node_connection(self, node: ClusterNode) -> AbstractConnection:
        """A new connection to one node, outside the client's, for a task that keeps it."""
        connection: AbstractConnection = node.connection_class(**node.connection_kwargs)
        await self.aio(connection.connect)
        return connection

    async def _disconnect_pool(self) -> None:
        # Closing forgets the slot map too: the next session reads the cluster's afresh.
        with trio.CancelScope(shield=True), trio.move_on_after(CONNECT_TIMEOUT_SECONDS):
            try:
                await self.aio(self.client.aclose)
            except (rx.RedisError, OSError) as error:
                log.debug("closing redis cluster client: %s", error)


# How long after a node failed the slot map is read again, and then between readings while
# its slots have no master: a replica takes over after the cluster's node timeout.
MAP_PACE_SECONDS = 0.25


class ShardedChannels(RoomChannels):
    """``RoomChannels`` on a cluster: SSUBSCRIBE per shard node, SPUBLISH through the cluster client."""

    publish_command = "SPUBLISH"

    def __init__(self, link: ClusterLink, *args: Any) -> None:
        super().__init__(link, *args)
        self._cluster = link
        self._readers: dict[str, AbstractConnection] = {}
        self._where: dict[str, str] = {}  # channel -> the node it is subscribed on
        self._session_nursery: trio.Nursery | None = None
        link.on_new_map(self._changed_map)

    async def session(self, nursery: trio.Nursery) -> None:
        await self._link.command(self._link.client.initialize)
        self._session_nursery = nursery
        self._readers, self._where = {}, {}
        # A promoted replica or a new cluster has no scripts: each session loads them first.
        await self._link.command(self._link.client.script_load, self._posts.script)
        nursery.start_soon(self._cluster.watch)
        await nursery.start(self._sync)
        nursery.start_soon(self._publish)

    def _changed_map(self) -> None:
        # Rooms lost on a failed node are subscribed again where their slot lives now.
        self._changed.set()

    async def _sync(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:  # type: ignore[override]
        self._subscribed = set()
        await self._sync_once()
        pending = list(self._confirmations.values())
        with trio.move_on_after(SUBSCRIBE_WAIT_SECONDS):
            for confirmed in pending:
                await confirmed.wait()
        task_status.started()
        while True:
            await self._changed.wait()
            await self._sync_once()

    async def _sync_once(self) -> None:  # type: ignore[override]
        self._changed = trio.Event()
        wanted = {keys.room_channel(room_id) for room_id in self._local}
        add, remove = wanted - self._subscribed, self._subscribed - wanted
        for channel in add:
            self._confirmations.setdefault(channel, trio.Event())
        self._subscribed = wanted
        leaving: defaultdict[str, list[str]] = defaultdict(list)
        for channel in remove:
            node_name = self._where.pop(channel, None)
            if node_name is not None:
                leaving[node_name].append(channel)
        joining: defaultdict[str, list[str]] = defaultdict(list)
        nodes: dict[str, ClusterNode] = {}
        for channel in add:
            try:
                node = self._link.client.get_node_from_key(channel)
            except rx.RedisClusterException as error:  # Its slot has no master right now.
                self._lose(channel, error)
                continue
            nodes[node.name] = node
            joining[node.name].append(channel)
        for node_name, channels in leaving.items():
            if node_name in self._readers:
                try:
                    await self._send(self._readers[node_name], "SUNSUBSCRIBE", channels)
                except LOST as error:
                    self._link.lost(error)  # Its reader hears of it too, and drops the rest.
        for node_name, channels in joining.items():
            try:
                connection = await self._reader(nodes[node_name])
                for channel in channels:
                    self._where[channel] = node_name
                await self._send(connection, "SSUBSCRIBE", channels)
            except LOST as error:
                for channel in channels:
                    self._lose(channel, error)

    async def _send(self, connection: AbstractConnection, command: str, channels: list[str]) -> None:
        # One command a channel (a sharded one names a single slot), all in one write.
        packed = connection.pack_commands([(command, channel) for channel in sorted(channels)])
        await self._link.command(connection.send_packed_command, packed, check_health=False)

    async def _reader(self, node: ClusterNode) -> AbstractConnection:
        """The subscription connection to ``node``, opened (with its reader) on first need."""
        connection = self._readers.get(node.name)
        if connection is None:
            assert self._session_nursery is not None
            connection = await self._cluster.node_connection(node)
            self._readers[node.name] = connection
            self._session_nursery.start_soon(self._read_node, node.name, connection)
        return connection

    async def _read_node(self, node_name: str, connection: AbstractConnection) -> None:
        try:
            await self._link.aio(self._deliver_node_replies, node_name, connection)
        except LOST as error:
            # That node failed: its rooms are lost until the map says where they live now.
            if self._readers.get(node_name) is connection:
                del self._readers[node_name]
            for channel, where in list(self._where.items()):
                if where == node_name:
                    self._lose(channel, error)
        finally:
            await self._link.close_connection(connection)

    async def _deliver_node_replies(self, node_name: str, connection: AbstractConnection) -> None:
        while True:
            try:
                reply = await connection.read_response()
            except rx.ResponseError as error:
                # An SSUBSCRIBE that reached a node no longer owning its slot (MOVED):
                # read the slot map again and subscribe what is not where it should be.
                for channel, where in list(self._where.items()):
                    if where == node_name:
                        self._lose(channel, error)
                continue
            await self._dispatch_sharded(node_name, reply)

    def _lose(self, channel: str, error: BaseException) -> None:
        """The subscription of a room still served here ended: it is subscribed again once
        the slot map, read again, says where its slot lives now."""
        self._where.pop(channel, None)
        if channel in self._subscribed:
            self._subscribed.discard(channel)
            self._lost.add(keys.room_of_channel(channel))
        self._link.lost(error)

    async def _dispatch_sharded(self, node_name: str, reply: list[Any]) -> None:
        kind = reply[0]
        if kind == "smessage":
            await self._dispatch(["message", *reply[1:]])
        elif kind == "ssubscribe":
            await self._dispatch(["subscribe", *reply[1:]])
        elif kind == "sunsubscribe" and reply[1] in self._subscribed and self._where.get(reply[1]) == node_name:
            # Not asked for: its slot moved to another node.
            self._lose(reply[1], rx.ConnectionError(f"slot of {reply[1]} moved"))

    async def _publish(self) -> None:
        while True:
            if not self._gathered:
                self._gathered.append(await self._queued.receive())
            await while_more_arrive(self._queued, PUBLISH_BATCH - len(self._gathered))
            self._gathered += self._take_waiting(PUBLISH_BATCH - len(self._gathered))
            # In flight from here: should the session end before the cluster answers,
            # its frames may or may not have been published.
            batch, self._gathered = self._gathered, []
            self._in_flight, self._answered = batch, 0
            runs = _runs(batch)
            try:
                replies = await self._link.command(self._pipeline, runs)
            except LOST as error:
                self._link.lost(error)
                replies = [error] * len(runs)
            reload = False
            for run, reply in zip(runs, replies, strict=True):
                if isinstance(reply, rx.NoScriptError):
                    reload = True  # A promoted replica, or a flushed cache: load it, tell the senders.
                elif isinstance(reply, LOST):
                    self._link.lost(reply)
                if isinstance(reply, Exception):
                    log.error("redis refused %d frames for room %s: %s", len(run), run[0].room_id, reply)
                    reply = None
                for i, outgoing in enumerate(run):
                    self._answered += 1
                    _settle(outgoing, reply[i] if isinstance(reply, list) and i < len(reply) else reply)
            self._in_flight = []
            if reload:
                try:
                    await self._link.command(self._link.client.script_load, self._posts.script)
                except LOST as error:
                    self._link.lost(error)

    async def _pipeline(self, runs: list[list[Any]]) -> list[Any]:
        pipe = self._link.client.pipeline(transaction=False)
        for run in runs:
            pipe.execute_command(*self._command(run))
        replies: list[Any] = await pipe.execute(raise_on_error=False)
        return replies
