"""How the client prints: timestamped lines, the same for every kind of frame."""

from __future__ import annotations

import os
import shutil
from datetime import datetime
from typing import TextIO

ANSI_COLORS = (31, 32, 33, 34, 35, 36)


class Console:
    """Where lines go: one place decides the format, colours only on a terminal."""

    def __init__(self, out: TextIO, typed_echo: bool = False) -> None:
        self.out = out
        self.color = out.isatty() and not os.environ.get("NO_COLOR")
        # The terminal echoes what the user types onto this same screen.
        self.typed_echo = typed_echo and out.isatty()

    def sent(self, text: str) -> None:
        """A typed message went to the room: its echo on the terminal is wiped, so the room's
        copy (name, time) is the one line of it on screen rather than a second one."""
        if not self.typed_echo:
            return
        columns = max(1, shutil.get_terminal_size().columns)
        rows = max(1, -(-len(text) // columns))
        print("\x1b[1A\x1b[2K" * rows, end="\r", file=self.out, flush=True)

    def _paint(self, text: str, code: int) -> str:
        return f"\x1b[{code}m{text}\x1b[0m" if self.color else text

    def line(self, text: str, at: datetime | None = None) -> None:
        stamp = (at or datetime.now().astimezone()).astimezone().strftime("%H:%M:%S")
        # One write, newline included: on a terminal, a key the user types meanwhile is echoed
        # after the whole line, never inside it.
        self.out.write(f"{self._paint(f'[{stamp}]', 2)} {text}\n")
        self.out.flush()

    def message(self, name: str, text: str, at: datetime | None, mine: bool) -> None:
        color = 1 if mine else ANSI_COLORS[sum(map(ord, name)) % len(ANSI_COLORS)]
        # Continuation lines are indented so a multi-line message still reads as one.
        self.line(f"{self._paint(name, color)}: {text.replace(chr(10), chr(10) + '    ')}", at)

    def notice(self, text: str, at: datetime | None = None) -> None:
        self.line(self._paint(f"* {text}", 2), at)

    def system(self, text: str, at: datetime | None = None) -> None:
        self.line(self._paint(f"*** {text}", 1), at)


def duration(seconds: float) -> str:
    total = max(0, int(seconds + 0.999))
    hours, rest = divmod(total, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"
