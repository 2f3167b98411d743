"""A real Redis Cluster for the tests: 3 masters with one replica each, from ``redis-server``.

Six nodes on free loopback ports, cluster config in a private temporary directory,
persistence off; ``redis-cli --cluster create`` joins them, and the fixture waits (polling
CLUSTER INFO, bounded) until every node says ``cluster_state:ok``. Faults are real too:
``kill`` sends SIGKILL to a node, ``move_slot`` migrates one slot with its keys to another
master. Everything stops when the context exits.

Needs Redis 7+ on PATH (cluster mode and sharded pub/sub): ``.ci/install-redis`` installs it.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import redis
import trio
from redis.crc import key_slot

from .redis_server import START_SECONDS, STOP_SECONDS, RedisServer, free_port, wait_until

MASTERS = 3
REPLICAS_PER_MASTER = 1
# Node timeout: how long a master may be silent before its replica takes over. Short, so a
# failover test waits a few seconds, not the default 15.
NODE_TIMEOUT_MS = 1000
FORM_SECONDS = 30
SLOTS = 16384


def has_cluster_redis() -> bool:
    """A redis-server on PATH that speaks cluster mode with sharded pub/sub (Redis 7+)."""
    found = shutil.which("redis-server")
    if not found:
        return False
    version = subprocess.run([found, "--version"], capture_output=True, text=True, check=False).stdout
    major = version.split("v=", 1)[-1].split(".", 1)[0]
    return major.isdigit() and int(major) >= 7


@dataclass(eq=False)
class Node:
    port: int
    # The cluster bus port, given explicitly: the default (port + 10000) may be taken or past 65535.
    bus_port: int
    # Plain Popen, not trio's: a cluster shared by a module's tests outlives each test's Trio run.
    process: subprocess.Popen[bytes] | None = None
    client: redis.Redis = field(init=False)

    def __post_init__(self) -> None:
        self.client = redis.Redis(port=self.port, decode_responses=True, socket_timeout=5)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def command(self, *args: Any) -> Any:
        return await trio.to_thread.run_sync(lambda: self.client.execute_command(*args))

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None


class RedisCluster:
    """The running cluster: its nodes, their roles, and the faults tests inflict on it."""

    def __init__(self, directory: str) -> None:
        self.directory = directory
        self.nodes = [Node(free_port(), free_port()) for _ in range(MASTERS * (1 + REPLICAS_PER_MASTER))]

    @property
    def seeds(self) -> str:
        """What ``REDIS_CLUSTER_NODES`` takes: every node's host:port."""
        return ",".join(node.address for node in self.nodes)

    async def start(self) -> None:
        async with trio.open_nursery() as nursery:
            for node in self.nodes:
                nursery.start_soon(self._start_node, node)
        await _run(
            "redis-cli", "--cluster", "create", *(n.address for n in self.nodes),
            "--cluster-replicas", str(REPLICAS_PER_MASTER), "--cluster-yes",
        )
        await self.until_healthy()

    async def _start_node(self, node: Node) -> None:
        # Started, not awaited: it returns at once, and the node outlives this Trio run.
        node.process = subprocess.Popen(  # noqa: ASYNC220
            ["redis-server", "--port", str(node.port), "--bind", "127.0.0.1",
             "--cluster-enabled", "yes", "--cluster-config-file", f"nodes-{node.port}.conf",
             "--cluster-port", str(node.bus_port), "--cluster-node-timeout", str(NODE_TIMEOUT_MS),
             "--save", "", "--appendonly", "no", "--dir", self.directory,
             # A replica syncs at once (the default waits 5 s for more replicas to share a
             # transfer): one that has not synced yet cannot take over from its master.
             "--repl-diskless-sync-delay", "0", "--logfile", f"node-{node.port}.log"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )

        async def answers() -> bool:
            if not node.alive:
                log = trio.Path(self.directory, f"node-{node.port}.log")
                said = (await log.read_text(errors="replace"))[-2000:] if await log.exists() else "(no log)"
                raise RuntimeError(f"redis-server on port {node.port} exited: {said}")
            try:
                return bool(await node.command("PING"))
            except redis.ConnectionError:
                return False

        await wait_until(answers, START_SECONDS, step=0.05)

    async def until_healthy(self, seconds: float = FORM_SECONDS) -> None:
        """Every live node reports cluster_state:ok and all slots assigned, and every replica has
        synced with its master, so it can take over (polled, bounded)."""

        async def healthy() -> bool:
            for node in self.nodes:
                if not node.alive:
                    continue
                try:
                    info = await node.command("CLUSTER", "INFO")
                except redis.RedisError:
                    return False
                text = info if isinstance(info, str) else str(info)
                if "cluster_state:ok" not in text or f"cluster_slots_ok:{SLOTS}" not in text:
                    return False
                replication = await node.command("INFO", "replication")
                if replication.get("role") == "slave" and replication.get("master_link_status") != "up":
                    return False
            return True

        await wait_until(healthy, seconds, step=0.1)

    async def slots(self) -> dict[int, Node]:
        """Each slot's master, as a live node reports it."""
        reporter = next(node for node in self.nodes if node.alive)
        by_port = {node.port: node for node in self.nodes}
        owners: dict[int, Node] = {}
        for start, end, master, *_ in await reporter.command("CLUSTER", "SLOTS"):
            for slot in range(int(start), int(end) + 1):
                owners[slot] = by_port[int(master[1])]
        return owners

    async def masters(self) -> list[Node]:
        return sorted(set((await self.slots()).values()), key=lambda node: node.port)

    async def master_of(self, key: str) -> Node:
        return (await self.slots())[key_slot(key.encode())]

    def kill(self, node: Node) -> None:
        """kill -9: the node vanishes mid-sentence, as a crashed host does."""
        assert node.process is not None
        node.process.send_signal(signal.SIGKILL)

    def pause(self) -> None:
        """Freeze every node: connections stay open, nothing answers (a hung cluster)."""
        for node in self.nodes:
            if node.process is not None:
                node.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        for node in self.nodes:
            if node.process is not None:
                node.process.send_signal(signal.SIGCONT)

    async def until_promoted(self, dead: Node, seconds: float = FORM_SECONDS) -> None:
        """Wait until a replica took over every slot of ``dead`` and the cluster is ok again."""

        async def exited() -> bool:
            return not dead.alive

        await wait_until(exited, seconds)

        async def taken_over() -> bool:
            try:
                return dead not in set((await self.slots()).values())
            except redis.RedisError:
                return False

        await wait_until(taken_over, seconds, step=0.1)
        await self.until_healthy(seconds)

    async def move_slot(self, slot: int, target: Node) -> None:
        """Migrate ``slot`` with its keys to master ``target``, as ``redis-cli --cluster
        reshard`` does for each slot: IMPORTING/MIGRATING, MIGRATE the keys, SETSLOT NODE."""
        source = (await self.slots())[slot]
        if source is target:
            return
        source_id = await source.command("CLUSTER", "MYID")
        target_id = await target.command("CLUSTER", "MYID")
        await target.command("CLUSTER", "SETSLOT", slot, "IMPORTING", source_id)
        await source.command("CLUSTER", "SETSLOT", slot, "MIGRATING", target_id)
        while True:
            names = await source.command("CLUSTER", "GETKEYSINSLOT", slot, 100)
            if not names:
                break
            await source.command("MIGRATE", "127.0.0.1", target.port, "", 0, 5000, "KEYS", *names)
        # Target first, then source, then the other masters; replicas learn it by gossip.
        for node in [target, source, *(m for m in await self.masters() if m not in (source, target))]:
            await node.command("CLUSTER", "SETSLOT", slot, "NODE", target_id)

        async def settled() -> bool:
            return (await self.slots())[slot] is target

        await wait_until(settled, FORM_SECONDS, step=0.1)

    def stop(self) -> None:
        for node in self.nodes:
            if node.process is not None:
                node.process.terminate()
        for node in self.nodes:
            process, node.process = node.process, None
            if process is None:
                continue
            try:
                process.wait(STOP_SECONDS)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            node.client.connection_pool.disconnect()


async def _run(*command: str) -> None:
    result = await trio.run_process(command, capture_stdout=True, capture_stderr=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed: {result.stdout.decode()}{result.stderr.decode()}")


@asynccontextmanager
async def open_redis_cluster() -> AsyncIterator[RedisCluster]:
    """A fresh cluster of 3 masters and 3 replicas, stopped (and its files removed) on exit."""
    if not has_cluster_redis():
        raise RuntimeError("the cluster tests need redis-server 7+ on PATH: run .ci/install-redis")
    with tempfile.TemporaryDirectory(prefix="ephemeralchat-cluster-") as directory:
        cluster = RedisCluster(directory)
        try:
            await cluster.start()
            yield cluster
        finally:
            cluster.stop()


@dataclass
class Backing:
    """What the instances share: one Redis, or a Redis Cluster, and how they are told of it."""

    redis: RedisServer
    env: dict[str, str]


class SharedCluster:
    """One cluster for the tests of a session that do not break it, started on first need."""

    def __init__(self) -> None:
        self._directory: tempfile.TemporaryDirectory[str] | None = None
        self._cluster: RedisCluster | None = None

    async def get(self) -> RedisCluster:
        if self._cluster is None:
            if not has_cluster_redis():
                raise RuntimeError("the cluster tests need redis-server 7+ on PATH: run .ci/install-redis")
            self._directory = tempfile.TemporaryDirectory(prefix="ephemeralchat-cluster-")
            cluster = RedisCluster(self._directory.name)
            try:
                await cluster.start()
            except BaseException:
                cluster.stop()
                raise
            self._cluster = cluster
        return self._cluster

    def close(self) -> None:
        if self._cluster is not None:
            self._cluster.stop()
            self._cluster = None
        if self._directory is not None:
            self._directory.cleanup()


class ClusterKeys(RedisServer):
    """What the tests ask of a shared Redis (commands, our keys left over), on a cluster."""

    def __init__(self, cluster: RedisCluster) -> None:
        self.url = ""
        self.port = None
        self._process = None
        first = cluster.nodes[0]
        self._client = redis.RedisCluster(host="127.0.0.1", port=first.port, decode_responses=True)
