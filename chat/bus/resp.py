"""Commands packed for Redis (RESP arrays of bulk strings), as redis-py packs them, faster.

redis-py's ``pack_command`` checks and encodes each argument in Python; a room creation's
script call has two dozen arguments, and packing them that way was a twentieth of the
creation's server time (a loop of our own in Python, half of that). hiredis, the parser
redis-py already reads replies with, packs a command in C with the same encoding (str as
UTF-8, int in decimal, float as its shortest repr, bytes as they are; a bool, None or
anything else refused with TypeError, as redis-py refuses them). Sent with redis-py's
``send_packed_command``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from hiredis import pack_command


def packed(commands: Iterable[Sequence[Any]]) -> bytes:
    # hiredis takes a command only as a tuple (``tuple`` of one is that same tuple, no copy).
    return b"".join([pack_command(tuple(command)) for command in commands])
