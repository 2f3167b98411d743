"""A room's positions and stored messages in process memory (MemoryBus's, per room).

The Redis backend keeps the same things in a stream and a hash (see ``scripts.POST`` and
``scripts.HISTORY``), with the same rules, so both buses answer ``history`` alike.
"""

from __future__ import annotations

import secrets
from collections import deque
from itertools import islice

from . import DEDUPE_MIN, History, Position, with_offset


def dedupe_window(history_size: int) -> int:
    """How many offsets back a room remembers dedupe keys: a resend is caught at least as
    far back as history goes."""
    return max(history_size, DEDUPE_MIN)


def new_epoch() -> str:
    return secrets.token_hex(8)


class RoomLog:
    def __init__(self, history_size: int, history_bytes: int) -> None:
        self.epoch = new_epoch()
        self.offset = 0
        self._size = history_size
        self._max_bytes = history_bytes
        # (offset, frame, its size in bytes), oldest first; offsets consecutive.
        self._kept: deque[tuple[int, str, int]] = deque()
        self._bytes = 0
        # dedupe key -> offset, oldest first (dicts keep insertion order).
        self._dedupe: dict[str, int] = {}
        self._dedupe_window = dedupe_window(history_size)

    def append(self, message: str, dedupe: str | None) -> tuple[int, str | None]:
        """The message's offset and frame to publish; no frame for a duplicate."""
        if dedupe and (first := self._dedupe.get(dedupe)) is not None:
            return first, None
        self.offset += 1
        frame = with_offset(message, self.offset)
        if dedupe:  # An empty key is none, as on Redis.
            self._dedupe[dedupe] = self.offset
            # Forgotten once the window's number of offsets old (Redis: at most 32 later).
            while (oldest := next(iter(self._dedupe.items())))[1] <= self.offset - self._dedupe_window:
                del self._dedupe[oldest[0]]
        if self._size:
            size = len(frame.encode())
            self._kept.append((self.offset, frame, size))
            self._bytes += size
            while len(self._kept) > self._size or self._bytes > self._max_bytes:
                self._bytes -= self._kept.popleft()[2]
        return self.offset, frame

    def read(self, since: int | None, epoch: str | None, limit: int) -> History:
        position = Position(self.epoch, self.offset)
        limit = max(0, limit)
        if since is None:
            newest = [frame for _, frame, _ in islice(self._kept, max(0, len(self._kept) - limit), None)]
            return History(position, newest, len(newest) == self.offset)
        if epoch != self.epoch or not 0 <= since <= self.offset:
            return History(position, [], False)
        oldest = self._kept[0][0] if self._kept else self.offset + 1
        if oldest > since + 1:
            return History(position, [], False)
        start = since + 1 - oldest
        return History(position, [frame for _, frame, _ in islice(self._kept, start, start + limit)], True)
