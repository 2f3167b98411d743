"""Our frame encoder against wsproto's, byte for byte, at every length boundary."""

from __future__ import annotations

import pytest
from wsproto.frame_protocol import FrameProtocol

from chat.ws.wire import split, text_frame, text_of


@pytest.mark.parametrize("size", [0, 1, 125, 126, 127, 65_535, 65_536, 200_000])
def test_frames_match_wsproto(size: int) -> None:
    payload = ("é" * size)[: size // 2] + "x" * (size - size // 2)
    reference = FrameProtocol(client=False, extensions=[]).send_data(payload, fin=True)
    frame = text_frame(payload)
    assert frame == reference
    assert text_of(frame) == payload


def test_split_gives_back_each_joined_frame_whole() -> None:
    frames = [text_frame(text) for text in ("a", "é" * 100, "x" * 70_000, "")]
    assert split(b"".join(frames)) == frames
    assert split(b"") == []
