"""Wall-clock time that moves with Trio's clock.

Room expiry is a Trio deadline, while the API speaks in UTC timestamps. Reading both from one
source keeps them in step, and lets tests drive expiry with ``MockClock`` without real sleeps.
"""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime

import trio

_anchor: trio.lowlevel.RunVar[tuple[float, float]] = trio.lowlevel.RunVar("wall_anchor")


def _wall_and_trio() -> tuple[float, float]:
    try:
        return _anchor.get()
    except LookupError:
        pair = (time.time(), trio.current_time())
        _anchor.set(pair)
        return pair


def now() -> float:
    """Seconds since the epoch, advancing with ``trio.current_time()``."""
    wall, at = _wall_and_trio()
    return wall + (trio.current_time() - at)


def deadline_at(epoch_seconds: float) -> float:
    """The Trio deadline that falls at the wall-clock moment ``epoch_seconds``."""
    wall, at = _wall_and_trio()
    return at + (epoch_seconds - wall)


# The formatted second last asked for: every frame carries a timestamp, and most of those a
# server makes in one second share everything but the milliseconds.
_second: tuple[float, str] = (-1.0, "")


def iso(epoch_seconds: float) -> str:
    """ISO 8601 UTC with millisecond precision and a ``Z`` suffix (as ``datetime`` rounds:
    to the nearest microsecond, then down to the millisecond)."""
    global _second
    fraction, whole = math.modf(epoch_seconds)
    micros = round(fraction * 1e6)
    if micros >= 1_000_000:
        whole, micros = whole + 1, micros - 1_000_000
    elif micros < 0:
        whole, micros = whole - 1, micros + 1_000_000
    if _second[0] != whole:
        _second = (whole, datetime.fromtimestamp(whole, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S."))
    return f"{_second[1]}{micros // 1000:03d}Z"
