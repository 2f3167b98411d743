"""How fast one connection may talk.

A token bucket lets a person type in bursts while holding a bot to a steady rate. What it
refuses adds to a debt that accepted messages pay back, so a client a little over the rate
only sees error frames, while one that floods keeps refusing until its debt says "flood".
Time is Trio's clock, so tests drive it with MockClock.
"""

from __future__ import annotations

import enum

import trio


class Verdict(enum.Enum):
    SEND = "send"
    REFUSE = "refuse"
    FLOOD = "flood"


class MessageRate:
    __slots__ = ("_debt", "_last", "_tokens", "burst", "flood_debt", "per_second")

    def __init__(self, per_second: float, burst: int, flood_debt: int) -> None:
        self.per_second = per_second
        self.burst = burst
        self.flood_debt = flood_debt
        self._tokens = float(burst)
        self._debt = 0
        self._last = trio.current_time()

    def judge(self) -> Verdict:
        now = trio.current_time()
        self._tokens = min(self.burst, self._tokens + (now - self._last) * self.per_second)
        self._last = now
        if self._tokens >= 1:
            self._tokens -= 1
            self._debt = max(0, self._debt - 1)
            return Verdict.SEND
        self._debt += 1
        return Verdict.FLOOD if self._debt > self.flood_debt else Verdict.REFUSE
