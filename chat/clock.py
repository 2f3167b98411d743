"""Wall-clock time that moves with Trio's clock.

Room expiry is a Trio deadline, while the API speaks in UTC timestamps. Reading both from one
source keeps them in step, and lets tests drive expiry with ``MockClock`` without real sleeps.
"""

from __future__ import annotations

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


def iso(epoch_seconds: float) -> str:
    """ISO 8601 UTC with millisecond precision and a ``Z`` suffix."""
    moment = datetime.fromtimestamp(epoch_seconds, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
