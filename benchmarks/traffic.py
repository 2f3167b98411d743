"""What a worker sends and what its members receive during one measured phase.

A message text is ``B<phase>:<sender>:<seq>:<unix time>[:<padding>]``. The phase tag keeps
late deliveries of an earlier phase (warm-up, the previous ramp step) out of the counts; the
per-sender sequence number gives loss, duplicates and reordering; the send time gives latency,
valid because every process reads the same machine clock.
"""

from __future__ import annotations

import json
import re
import time
from array import array
from collections import Counter
from typing import Any

import trio
from trio_websocket import ConnectionClosed, WebSocketConnection

# Searched in the raw frame rather than parsed as JSON: a worker holding thousands of
# members spends its CPU here, and a saturated client would measure itself, not the server.
MARK = re.compile(r'"text"\s*:\s*"B(\d+):(\d+):(\d+):(\d+\.\d+)')
GOLDEN_RATIO = 0.6180339887498949


class Recorder:
    """Receipts of the current phase for every member of this worker."""

    def __init__(self) -> None:
        self.begin(-1, time.time())

    def begin(self, phase: int, start_wall: float) -> None:
        self.phase = phase
        self.start_wall = start_wall
        self.latencies_ms = array("d")
        self.unique: Counter[int] = Counter()
        self.sent: Counter[int] = Counter()
        self.duplicates = 0
        self.out_of_order = 0
        self.stale = 0
        self.per_second: Counter[int] = Counter()
        # (receiving member, sender) -> highest sequence seen and every sequence seen.
        self.tracks: dict[tuple[int, int], tuple[list[int], set[int]]] = {}
        self.offline: list[tuple[str, float]] = []
        self.disconnected = 0
        self.error_frames: Counter[str] = Counter()

    def receive(self, member: int, room: int, frame: str) -> None:
        now = time.time()
        mark = MARK.search(frame)
        if mark is None:
            if '"user_offline"' in frame or '"error"' in frame:
                self.note(json.loads(frame), now)
            return
        if int(mark[1]) != self.phase:
            self.stale += 1
            return
        sender, seq = int(mark[2]), int(mark[3])
        track = self.tracks.get((member, sender))
        if track is None:
            track = self.tracks[(member, sender)] = ([-1], set())
        last, seen = track
        if seq in seen:
            self.duplicates += 1
            return
        seen.add(seq)
        if seq < last[0]:
            self.out_of_order += 1
        else:
            last[0] = seq
        self.unique[room] += 1
        self.per_second[int(now - self.start_wall)] += 1
        self.latencies_ms.append((now - float(mark[4])) * 1000.0)

    def note(self, frame: dict[str, Any], now: float) -> None:
        if frame.get("type") == "error":
            # A refused message is not a lost one; it is counted apart so a wrong --pad shows.
            self.error_frames[str(frame.get("detail"))[:120]] += 1
        elif frame.get("event") == "user_offline":
            self.offline.append((str(frame.get("display_name")), now))

    def snapshot(self) -> dict[str, Any]:
        return {
            "unique": dict(self.unique),
            "sent": dict(self.sent),
            "duplicates": self.duplicates,
            "out_of_order": self.out_of_order,
            "stale": self.stale,
            "per_second": dict(self.per_second),
            "latencies": self.latencies_ms.tobytes(),
            "offline": [(name, at - self.start_wall) for name, at in self.offline],
            "disconnected": self.disconnected,
            "error_frames": dict(self.error_frames),
        }


async def send_at_rate(
    ws: WebSocketConnection,
    recorder: Recorder,
    room: int,
    sender: int,
    *,
    phase: int,
    start: float,
    secs: float,
    rate: float,
    pad: int,
    lockstep: bool = False,
) -> None:
    """Sends on a fixed schedule; a late sender catches up in a burst so offered load stays honest.

    By default each sender's ticks are shifted by a fraction of the interval (golden-ratio steps
    spread any number of senders evenly without knowing how many there are). In lockstep every
    sender ticks at once, as loadgen.js does: the bursts then measure queueing on both ends as
    much as the server.
    """
    interval = 1.0 / rate
    if not lockstep:
        start += interval * ((sender * GOLDEN_RATIO) % 1.0)
    padding = ":" + "x" * pad if pad else ""
    seq = 0
    while (due := start + seq * interval) < start + secs:
        await trio.sleep_until(due)
        text = f"B{phase}:{sender}:{seq}:{time.time():.6f}{padding}"
        try:
            await ws.send_message('{"type":"message","text":"' + text + '"}')
        except ConnectionClosed:
            return
        recorder.sent[room] += 1
        seq += 1
