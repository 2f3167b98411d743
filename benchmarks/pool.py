"""The parent's side of the worker processes, and how their replies add up to one result."""

from __future__ import annotations

import multiprocessing
import time
from array import array
from collections import Counter
from typing import Any

from . import api, worker

# A spawned worker lives at most this long whatever happens to the parent.
WORKER_LIFETIME_SECONDS = 1800.0
# Extra time a reply may take beyond what the command itself asks for.
REPLY_SLACK_SECONDS = 60.0


class WorkerError(RuntimeError):
    pass


class WorkerPool:
    """N spawned processes; ``command`` sends one command to each and waits for all replies."""

    def __init__(self, count: int) -> None:
        context = multiprocessing.get_context("spawn")
        self.pipes = []
        self.processes = []
        for _ in range(count):
            parent_end, child_end = context.Pipe()
            process = context.Process(target=worker.main, args=(child_end, WORKER_LIFETIME_SECONDS), daemon=True)
            process.start()
            child_end.close()
            self.pipes.append(parent_end)
            self.processes.append(process)
        self.finished = False

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, *exc: object) -> None:
        if not self.finished:
            try:
                self.finish()
            except (WorkerError, OSError, EOFError):
                pass
        for process in self.processes:
            process.join(10)
            if process.is_alive():
                process.kill()
                process.join(5)

    def command(self, commands: list[dict[str, Any]], timeout: float) -> list[dict[str, Any]]:
        for pipe, command in zip(self.pipes, commands, strict=True):
            pipe.send(command)
        deadline = time.monotonic() + timeout + REPLY_SLACK_SECONDS
        replies = []
        for index, pipe in enumerate(self.pipes):
            if not pipe.poll(max(0.0, deadline - time.monotonic())):
                raise WorkerError(f"worker {index} did not answer {commands[index]['op']!r} in time")
            reply: dict[str, Any] = pipe.recv()
            if "error" in reply:
                raise WorkerError(f"worker {index}: {reply['error']}")
            replies.append(reply)
        return replies

    def finish(self) -> list[dict[str, Any]]:
        """Closes every member (stalled ones read their backlog first) and ends the workers."""
        self.finished = True
        return self.command([{"op": "close"}] * len(self.pipes), worker.STALLED_DRAIN_SECONDS + 10)

    def connect(self, specs: list[api.MemberSpec], parallel: int = 8) -> dict[str, Any]:
        """Connects ``specs`` (owners before members), spread round-robin over the workers."""
        rounds = [[s for s in specs if s.ws_url is not None], [s for s in specs if s.ws_url is None]]
        connected: Counter[int] = Counter()
        failed, errors, connect_ms = 0, [], array("d")
        started = time.monotonic()
        for batch in rounds:
            shares: list[list[dict[str, Any]]] = [[] for _ in self.pipes]
            for k, spec in enumerate(batch):
                shares[k % len(shares)].append(spec.to_dict())
            replies = self.command(
                [{"op": "connect", "members": share, "parallel": parallel} for share in shares], 60.0 + len(batch) / 20
            )
            for reply in replies:
                connected.update(reply["connected"])
                failed += reply["failed"]
                errors.extend(reply["errors"])
                connect_ms.frombytes(reply["connect_ms"])
        return {
            "connected": dict(connected),
            "failed": failed,
            "errors": errors[:5],
            "connect_secs": round(time.monotonic() - started, 2),
            "connect_ms": connect_ms,
        }

    def run(
        self, *, phase: int, secs: float, rate: float, pad: int = 0, drain: float = 2.0, lockstep: bool = False
    ) -> list[dict[str, Any]]:
        start_at = time.time() + 0.5  # every worker is listening well before this instant
        command = {
            "op": "run",
            "phase": phase,
            "start_at": start_at,
            "secs": secs,
            "rate": rate,
            "pad": pad,
            "drain": drain,
            "lockstep": lockstep,
        }
        return self.command([command] * len(self.pipes), secs + drain + 1)


def percentiles(values: array | list[float], prefix: str = "") -> dict[str, float | None]:
    ordered = sorted(values)
    if not ordered:
        return {f"{prefix}p50_ms": None, f"{prefix}p90_ms": None, f"{prefix}p99_ms": None, f"{prefix}max_ms": None}

    def at(p: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))], 2)

    return {
        f"{prefix}p50_ms": at(50),
        f"{prefix}p90_ms": at(90),
        f"{prefix}p99_ms": at(99),
        f"{prefix}max_ms": round(ordered[-1], 2),
    }


def delivery(replies: list[dict[str, Any]], connected: dict[int, int], secs: float) -> dict[str, Any]:
    """One phase's numbers over all workers: every room's sends times its connected members."""
    sent: Counter[int] = Counter()
    unique: Counter[int] = Counter()
    latencies = array("d")
    for reply in replies:
        sent.update(reply["sent"])
        unique.update(reply["unique"])
        latencies.frombytes(reply["latencies"])
    expected = sum(count * connected.get(room, 0) for room, count in sent.items())
    received = sum(unique.values())
    return {
        "sent": sum(sent.values()),
        "offered_deliveries_per_s": round(expected / secs),
        "delivered_per_s": round(received / secs),
        "expected": expected,
        "received": received,
        "loss": expected - received,
        "duplicates": sum(r["duplicates"] for r in replies),
        "out_of_order": sum(r["out_of_order"] for r in replies),
        **percentiles(latencies),
        "disconnected_during_run": sum(r["disconnected"] for r in replies),
        "error_frames": dict(sum((Counter(r["error_frames"]) for r in replies), Counter())),
        "client_cpu_percent_max": max(r["client_cpu_percent"] for r in replies),
    }


def per_second(replies: list[dict[str, Any]]) -> list[int]:
    buckets: Counter[int] = Counter()
    for reply in replies:
        buckets.update(reply["per_second"])
    return [buckets.get(s, 0) for s in range(max(buckets, default=-1) + 1)]
