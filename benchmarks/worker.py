"""One load-generating process: holds its share of the members and obeys the parent's commands.

The parent sends one command at a time over a pipe and waits for every worker's reply, which
is the barrier between phases (connect owners, connect members, run, close). A run starts at
a wall-clock instant the parent picks, so all workers' senders start together.
"""

from __future__ import annotations

import resource
import time
from array import array
from dataclasses import dataclass, field
from functools import partial
from multiprocessing.connection import Connection
from typing import Any

import httpx
import trio
from trio_websocket import CloseReason, ConnectionClosed, WebSocketConnection, open_websocket_url

from . import api
from .traffic import Recorder, send_at_rate

HELLO_TIMEOUT_SECONDS = 15.0
# How long closing sockets get before the worker gives up on them.
DISCONNECT_SECONDS = 2.0
STALLED_DRAIN_SECONDS = 10.0


@dataclass
class Member:
    index: int
    spec: api.MemberSpec
    ws: WebSocketConnection | None = None
    release: trio.Event = field(default_factory=trio.Event)
    reading: trio.CancelScope = field(default_factory=trio.CancelScope)
    done: trio.Event = field(default_factory=trio.Event)
    # For a stalled member: what it found once it read again after the run.
    final: dict[str, Any] | None = None


class Worker:
    def __init__(self, nursery: trio.Nursery, http: httpx.AsyncClient) -> None:
        self.nursery = nursery
        self.http = http
        self.members: list[Member] = []
        self.recorder = Recorder()

    async def handle(self, command: dict[str, Any]) -> dict[str, Any]:
        op = command["op"]
        if op == "connect":
            return await self.connect([api.MemberSpec(**m) for m in command["members"]], command["parallel"])
        if op == "run":
            return await self.run(command)
        if op == "create":
            return await self.create(command)
        if op == "close":
            return await self.close()
        raise ValueError(f"unknown op {op!r}")

    async def connect(self, specs: list[api.MemberSpec], parallel: int) -> dict[str, Any]:
        connected: dict[int, int] = {}
        errors: list[str] = []
        connect_ms = array("d")
        limit = trio.Semaphore(parallel)

        async def one(spec: api.MemberSpec) -> None:
            async with limit:
                member = Member(len(self.members), spec)
                self.members.append(member)
                started = time.perf_counter()
                try:
                    await self.nursery.start(self.hold, member)
                except Exception as exc:
                    errors.append(f"{spec.name}: {exc!r}"[:300])
                    return
                connect_ms.append((time.perf_counter() - started) * 1000.0)
                connected[spec.room] = connected.get(spec.room, 0) + 1

        async with trio.open_nursery() as nursery:
            for spec in specs:
                nursery.start_soon(one, spec)
        return {"connected": connected, "failed": len(errors), "errors": errors[:5], "connect_ms": connect_ms.tobytes()}

    async def hold(self, member: Member, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Joins, connects, waits for the hello, then reads until released (or never, if stalled)."""
        try:
            await self._hold(member, task_status)
        finally:
            member.done.set()

    async def _hold(self, member: Member, task_status: trio.TaskStatus[None]) -> None:
        spec = member.spec
        ws_url = spec.ws_url or await api.join(self.http, spec)
        async with open_websocket_url(
            api.with_display_name(ws_url, spec.name),
            connect_timeout=HELLO_TIMEOUT_SECONDS,
            disconnect_timeout=DISCONNECT_SECONDS,
        ) as ws:
            with trio.fail_after(HELLO_TIMEOUT_SECONDS):
                hello = await ws.get_message()
            if "Connected to room" not in hello:
                raise api.ApiError(f"unexpected first frame {str(hello)[:120]}")
            member.ws = ws
            task_status.started()
            if spec.stall:
                await member.release.wait()
                member.final = await drain(ws)
                return
            with member.reading:
                try:
                    while True:
                        frame = await ws.get_message()
                        self.recorder.receive(member.index, spec.room, str(frame))
                except ConnectionClosed:
                    self.recorder.disconnected += 1

    async def run(self, command: dict[str, Any]) -> dict[str, Any]:
        phase, start_at = command["phase"], command["start_at"]
        self.recorder.begin(phase, start_at)
        start = trio.current_time() + (start_at - time.time())
        cpu_before = cpu_seconds()
        async with trio.open_nursery() as nursery:
            for member in self.members:
                if member.spec.sender is not None and member.ws is not None:
                    nursery.start_soon(
                        partial(
                            send_at_rate,
                            member.ws,
                            self.recorder,
                            member.spec.room,
                            member.spec.sender,
                            phase=command["phase"],
                            start=start,
                            secs=command["secs"],
                            rate=command["rate"],
                            pad=command["pad"],
                            lockstep=command["lockstep"],
                        )
                    )
        await trio.sleep_until(start + command["secs"] + command["drain"])
        busy = cpu_seconds() - cpu_before
        # Over the send window only: nearly all the work falls in it, and the drain would dilute it.
        return {**self.recorder.snapshot(), "client_cpu_percent": round(100.0 * busy / command["secs"], 1)}

    async def create(self, command: dict[str, Any]) -> dict[str, Any]:
        """Room creation as fast as ``clients`` concurrent clients can go, for ``secs``."""
        latencies = array("d")
        errors: dict[str, int] = {}
        start = trio.current_time() + (command["start_at"] - time.time())
        await trio.sleep_until(start)
        end = start + command["secs"]

        async def client_loop(k: int) -> None:
            base = command["urls"][k % len(command["urls"])]
            async with httpx.AsyncClient(timeout=api.REST_TIMEOUT_SECONDS) as http:
                n = 0
                while trio.current_time() < end:
                    began = time.perf_counter()
                    try:
                        await api.create_one(http, base, command["first_index"] + k * 1_000_000 + n, command["expiry"])
                    except Exception as exc:
                        key = type(exc).__name__ + (f" {exc}"[:80] if isinstance(exc, api.ApiError) else "")
                        errors[key] = errors.get(key, 0) + 1
                    else:
                        latencies.append((time.perf_counter() - began) * 1000.0)
                    n += 1

        async with trio.open_nursery() as nursery:
            for k in range(command["clients"]):
                nursery.start_soon(client_loop, command["client_offset"] + k)
        return {"latencies": latencies.tobytes(), "errors": errors, "secs": trio.current_time() - start}

    async def close(self) -> dict[str, Any]:
        stalled = [m for m in self.members if m.spec.stall and m.ws is not None]
        with trio.move_on_after(STALLED_DRAIN_SECONDS + DISCONNECT_SECONDS + 1):
            for member in stalled:
                member.release.set()
            for member in stalled:
                await member.done.wait()
        release_all(self.members)
        return {"stalled": [{"name": m.spec.name, **(m.final or {"result": "no answer"})} for m in stalled]}


async def drain(ws: WebSocketConnection) -> dict[str, Any]:
    """Reads what piled up behind a stalled member, to learn whether and how the server closed it."""
    backlog = 0
    with trio.move_on_after(STALLED_DRAIN_SECONDS):
        try:
            while True:
                await ws.get_message()
                backlog += 1
        except ConnectionClosed:
            pass
    reason: CloseReason | None = ws.closed
    if reason is None:
        return {"closed_by_server": False, "backlog_frames": backlog}
    return {
        "closed_by_server": True,
        "close_code": reason.code,
        "close_reason": reason.reason,
        "backlog_frames": backlog,
    }


def release_all(members: list[Member]) -> None:
    for member in members:
        member.release.set()
        member.reading.cancel()


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


async def serve(pipe: Connection, deadline_seconds: float) -> None:
    async with httpx.AsyncClient(timeout=api.REST_TIMEOUT_SECONDS) as http:
        with trio.move_on_after(deadline_seconds):
            async with trio.open_nursery() as nursery:
                worker = Worker(nursery, http)
                while True:
                    try:
                        command = await trio.to_thread.run_sync(pipe.recv, abandon_on_cancel=True)
                    except EOFError:
                        break  # the parent is gone: nothing left to report to
                    try:
                        reply = await worker.handle(command)
                    except Exception as exc:
                        reply = {"error": repr(exc)[:500]}
                    pipe.send(reply)
                    if command["op"] == "close":
                        break
                release_all(worker.members)
                # Members close their sockets politely; whoever cannot within the grace is cut off.
                with trio.move_on_after(DISCONNECT_SECONDS + 1):
                    for member in worker.members:
                        await member.done.wait()
                nursery.cancel_scope.cancel()


def main(pipe: Connection, deadline_seconds: float) -> None:
    """Entry point of a spawned worker process."""
    raise_fd_limit()
    trio.run(serve, pipe, deadline_seconds)
