"""Server-to-client WebSocket frames as bytes (RFC 6455 §5.2).

A broadcast is framed once and the same bytes object goes to every member's outbox, so the
cost of framing does not grow with the size of the room. Server frames are never masked.
"""

from __future__ import annotations

import struct

_TEXT_FIN = 0x81  # FIN bit + opcode 0x1 (text)
# A ping with no payload: FIN bit + opcode 0x9. A peer answers it in its WebSocket library.
PING = bytes((0x89, 0))


def text_frame(payload: str) -> bytes:
    data = payload.encode()
    size = len(data)
    if size < 126:
        header = bytes((_TEXT_FIN, size))
    elif size < 1 << 16:
        header = struct.pack("!BBH", _TEXT_FIN, 126, size)
    else:
        header = struct.pack("!BBQ", _TEXT_FIN, 127, size)
    return header + data


def text_of(frame: bytes) -> str:
    """The text a frame made by ``text_frame`` carries."""
    size = frame[1] & 0x7F
    offset = 2 if size < 126 else 4 if size == 126 else 10
    return frame[offset:].decode()


def split(data: bytes) -> list[bytes]:
    """The whole frames, made by ``text_frame``, that ``data`` joins."""
    frames = []
    while data:
        size = data[1] & 0x7F
        offset = 2 if size < 126 else 4 if size == 126 else 10
        if size == 126:
            size = struct.unpack_from("!H", data, 2)[0]
        elif size == 127:
            size = struct.unpack_from("!Q", data, 2)[0]
        frames.append(data[: offset + size])
        data = data[offset + size :]
    return frames
