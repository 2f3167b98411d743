"""What the publisher sends besides PUBLISH: the POST script call that numbers, stores and
publishes a run of chat messages, and the PRESENCE call that counts a room's members as it
publishes their presence."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from . import keys, scripts
from .history import dedupe_window, new_epoch

# Messages one POST call takes at most: a run to one room shares the script's fixed cost,
# and a bounded run keeps each script short (Redis serves nobody else meanwhile).
POSTS_PER_CALL = 64


class RedisPosts:
    """The settings of a room's history, the EVALSHA that posts messages under them, and the
    EVAL that publishes presence.

    The publisher pipelines these calls with its PUBLISHes (see ``channels``), on a
    connection where it loaded ``script`` first. Presence goes as EVAL, its short script
    whole: a Redis that lost its scripts (restarted, failed over) runs it all the same, where
    an EVALSHA would be refused and the presence lost with nobody to tell.
    """

    def __init__(self, history_size: int, history_bytes: int, *, sharded: bool = False) -> None:
        # On a cluster the scripts publish with SPUBLISH: to the room's shard alone.
        self.script = scripts.POST_SHARDED if sharded else scripts.POST
        self.sha = hashlib.sha1(self.script.encode()).hexdigest()
        self._presence = scripts.PRESENCE_SHARDED if sharded else scripts.PRESENCE
        self.history_size = history_size
        self.history_bytes = history_bytes
        self._dedupe_window = dedupe_window(history_size)

    def command(self, room_id: str, messages: Sequence[tuple[str, str | None]]) -> tuple[str | int, ...]:
        """One call for ``messages`` (each a message and its dedupe key), in order, to one room."""
        args: list[str | int] = [
            keys.room_channel(room_id),
            new_epoch(),
            self.history_size,
            self.history_bytes,
            self._dedupe_window,
        ]
        for message, dedupe in messages:
            args += (message, dedupe or "")
        return ("EVALSHA", self.sha, 4, keys.room_meta(room_id), *keys.room_history(room_id), *args)

    def presence(self, room_id: str, frame: str) -> tuple[str | int, ...]:
        """One call that publishes ``frame`` (presence without its count) with the room's count."""
        return ("EVAL", self._presence, 1, keys.room_users(room_id), keys.room_channel(room_id), frame)
