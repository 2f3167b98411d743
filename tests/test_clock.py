"""Timestamps as the API writes them."""

from __future__ import annotations

import random
from datetime import UTC, datetime

from chat import clock


def by_datetime(epoch_seconds: float) -> str:
    moment = datetime.fromtimestamp(epoch_seconds, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def test_iso_writes_what_datetime_writes_to_the_millisecond() -> None:
    rng = random.Random(7)
    moments = [rng.uniform(0, 4_102_444_800) for _ in range(20_000)]
    # Runs within one second (the formatted second is reused), and the edges of a second.
    moments += [1_796_296_511 + i / 997 for i in range(2_000)]
    moments += [1_796_296_511.9999996, 1_796_296_511.0000004, 1_796_296_512.0, 0.0, 59.9995, 1e9 - 1e-7]
    for moment in moments:
        assert clock.iso(moment) == by_datetime(moment), moment


def test_iso_is_utc_with_a_z() -> None:
    assert clock.iso(0.25) == "1970-01-01T00:00:00.250Z"
    assert clock.iso(1_796_296_511.472) == "2026-12-03T11:15:11.472Z"
