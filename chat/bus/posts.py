"""Chat messages on Redis: the POST script call that numbers, stores and publishes one."""

from __future__ import annotations

import hashlib

from . import keys, scripts
from .history import dedupe_window, new_epoch


class RedisPosts:
    """The settings of a room's history, and the EVALSHA that posts one message under them.

    The publisher pipelines these calls with its PUBLISHes (see ``channels``), on a
    connection where it loaded ``script`` first.
    """

    script = scripts.POST
    sha = hashlib.sha1(scripts.POST.encode()).hexdigest()

    def __init__(self, history_size: int, history_bytes: int) -> None:
        self.history_size = history_size
        self.history_bytes = history_bytes
        self._dedupe_window = dedupe_window(history_size)

    def command(self, room_id: str, message: str, dedupe: str | None) -> tuple[str | int, ...]:
        return (
            "EVALSHA",
            self.sha,
            5,
            keys.room_meta(room_id),
            *keys.room_history(room_id),
            keys.room_channel(room_id),
            message,
            new_epoch(),
            self.history_size,
            self.history_bytes,
            dedupe or "",
            self._dedupe_window,
        )
