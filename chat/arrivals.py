"""Waiting while frames keep arriving, so that one piece of work carries them all."""

from __future__ import annotations

from typing import Any

import trio


async def while_more_arrive(channel: trio.MemoryReceiveChannel[Any], most: int) -> None:
    """Yield to the other tasks for as long as they keep bringing ``channel`` more, up to ``most``.

    A sender's frames travel one scheduling round apart (a socket's reader, then its session,
    each hands over and yields), so under load work that starts at once carries one frame:
    one write per member per frame, one Redis send per frame. Waiting while frames keep
    coming lets one piece of work carry them all; when nothing else arrives it costs two
    rounds. Two, because Trio runs each round's tasks in either order: a sender active every
    round adds between two rounds of ours, not always within one.
    """
    waiting = channel.statistics().current_buffer_used
    while waiting < most:
        await trio.lowlevel.cancel_shielded_checkpoint()
        await trio.lowlevel.cancel_shielded_checkpoint()
        arrived = channel.statistics().current_buffer_used
        if arrived == waiting:
            return
        waiting = arrived
