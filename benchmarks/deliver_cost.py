"""``python -m benchmarks.deliver_cost [--rounds N]``: what one ``Member.deliver()`` costs.

In one process, without sockets: a member whose socket takes every frame at once (the
straight path, a reader that keeps up) and one whose socket takes nothing (the queued path,
a reader that lags: its writer never gets to run). Each round delivers 250 frames of 1,004
bytes to a fresh member; prints one JSON line with the median and 10th percentile of the ns
per call over the rounds. The member's signature before OUTBOX_BYTES is accepted too, so the
same file measures an older tree (``PYTHONPATH=<that tree> python benchmarks/deliver_cost.py``).
"""

from __future__ import annotations

import argparse
import inspect
import json
import time

import trio

from chat.bus import MemberRecord
from chat.ws import wire
from chat.ws.member import Member

FRAME = wire.text_frame("x" * 1_000)
PER_ROUND = 250  # under the outbox's 256 frames


class Socket:
    def __init__(self, takes: bool) -> None:
        self.takes = takes

    def write_now(self, data: bytes) -> int:
        return len(data) if self.takes else 0

    async def send_frames(self, frames: list[bytes]) -> None:
        await trio.sleep_forever()

    async def close(self, code: int, reason: str) -> None:
        pass


def member(nursery: trio.Nursery, takes: bool) -> Member:
    record = MemberRecord("c", "n", 0.0, False)
    # A byte limit never reached, where the member has one: the cost of checking it is measured.
    no_byte_limit = (1 << 40,) if "outbox_bytes" in inspect.signature(Member).parameters else ()
    new = Member(record, 256, *no_byte_limit)
    socket = Socket(takes)
    new.attach(socket, nursery, socket.write_now)
    return new


async def measure(rounds: int) -> dict[str, dict[str, float]]:
    result = {}
    async with trio.open_nursery() as nursery:
        for path, takes in (("straight", True), ("queued", False)):
            times = []
            for _ in range(rounds):
                lagging = member(nursery, takes)
                deliver = lagging.deliver
                if not takes:
                    deliver(FRAME)  # opens the outbox and starts its writer: once per lag, not per frame
                started = time.perf_counter_ns()
                for _ in range(PER_ROUND):
                    deliver(FRAME)
                times.append((time.perf_counter_ns() - started) / PER_ROUND)
                if not takes:
                    lagging.close_too_slow()
            times.sort()
            result[path] = {"median_ns": round(times[len(times) // 2]), "p10_ns": round(times[len(times) // 10])}
        nursery.cancel_scope.cancel()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2_000)
    args = parser.parse_args()
    print(json.dumps({"benchmark": "deliver_cost", "frame_bytes": len(FRAME), **trio.run(measure, args.rounds)}))


if __name__ == "__main__":
    main()
