"""A pseudo-terminal for the terminal client, and the screen a person would read off it.

The kernel's line discipline echoes what is typed, as on a real terminal; ``Screen`` applies
the few control sequences the client writes (cursor up, erase line) to that output.
"""

from __future__ import annotations

import os
import pty
import re
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import trio

CONTROL = re.compile(rb"\x1b\[(\d*)([A-Za-z])|\r\n|\r|\n|[^\x1b\r\n]+")
SCREEN_SECONDS = 15


class Screen:
    """Rows of text as a terminal shows them after the bytes written to it."""

    def __init__(self) -> None:
        self.rows: list[str] = [""]
        self.row = 0
        self.raw = b""

    def feed(self, data: bytes) -> None:
        self.raw += data
        for match in CONTROL.finditer(data):
            token = match.group(0)
            if token in (b"\r\n", b"\n"):
                self.row += 1
                if self.row == len(self.rows):
                    self.rows.append("")
            elif token == b"\r":
                pass  # Back to the start of the row: the client then overwrites or erases it.
            elif match.group(2) == b"A":
                self.row = max(0, self.row - int(match.group(1) or 1))
            elif match.group(2) == b"K":
                self.rows[self.row] = ""
            elif not token.startswith(b"\x1b"):
                self.rows[self.row] += token.decode("utf-8", "replace")

    def text(self) -> str:
        return "\n".join(self.rows)


class Terminal:
    def __init__(self, master: int, proc: trio.Process) -> None:
        self.master = master
        self.proc = proc
        self.screen = Screen()
        self._changed = trio.Event()

    async def pump(self) -> None:
        stream = trio.lowlevel.FdStream(os.dup(self.master))
        async with stream:
            while True:
                try:
                    chunk = await stream.receive_some()
                except (OSError, trio.BrokenResourceError):
                    chunk = b""  # EIO: the client closed its side of the terminal.
                if not chunk:
                    break
                self.screen.feed(chunk)
                self._changed.set()
                self._changed = trio.Event()

    async def type(self, line: str) -> None:
        """Keys pressed, then Enter."""
        await trio.to_thread.run_sync(os.write, self.master, line.encode() + b"\r")

    async def shows(self, pattern: str) -> None:
        regex = re.compile(pattern, re.MULTILINE)
        with trio.move_on_after(SCREEN_SECONDS):
            while not regex.search(self.screen.text()):
                await self._changed.wait()
            return
        raise AssertionError(f"the screen never showed {pattern!r}:\n{self.screen.text()}")


@asynccontextmanager
async def terminal(command: Sequence[str]) -> AsyncIterator[Terminal]:
    """``command`` with a terminal for its keyboard and screen (stderr too, as in a shell)."""
    master, slave = pty.openpty()
    try:
        proc = await trio.lowlevel.open_process(
            list(command), stdin=slave, stdout=slave, stderr=slave,
            env={**os.environ, "NO_COLOR": "1", "COLUMNS": "100", "LINES": "40"},
        )
    finally:
        os.close(slave)
    running = Terminal(master, proc)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(running.pump)
            yield running
            with trio.fail_after(SCREEN_SECONDS):
                await proc.wait()
    finally:
        if proc.returncode is None:
            proc.kill()
            with trio.CancelScope(shield=True):
                await proc.wait()
        os.close(master)


