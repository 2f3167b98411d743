"""What the server costs, read from outside it: /proc for its processes, CLIENT LIST for Redis."""

from __future__ import annotations

import os
import socket
import threading
import time
from urllib.parse import urlsplit

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def rss_kib(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def total_rss_kib(pids: list[int]) -> int | None:
    values = [rss_kib(pid) for pid in pids]
    return None if not pids or None in values else sum(v for v in values if v is not None)


def cpu_ticks(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            # Fields after the command name, which may itself contain spaces and parentheses.
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return int(fields[11]) + int(fields[12])  # utime + stime


class CpuWindow:
    """Server CPU (% of one core, summed over pids) between start() and stop()."""

    def __init__(self, pids: list[int]) -> None:
        self.pids = pids

    def start(self) -> None:
        self.t0 = time.monotonic()
        self.ticks0 = [cpu_ticks(pid) for pid in self.pids]

    def stop(self) -> float | None:
        ticks1 = [cpu_ticks(pid) for pid in self.pids]
        elapsed = time.monotonic() - self.t0
        if not self.pids or None in ticks1 or None in self.ticks0:
            return None
        used = sum(b - a for a, b in zip(self.ticks0, ticks1, strict=True) if a is not None and b is not None)
        return round(100.0 * used / CLOCK_TICKS / elapsed, 2)


class CpuUse:
    """CPU seconds each pid used inside the ``with`` block (None where a pid could not be read)."""

    def __init__(self, pids: list[int]) -> None:
        self.pids = pids
        self.each: list[float | None] = []

    def __enter__(self) -> CpuUse:
        self._before = [cpu_ticks(pid) for pid in self.pids]
        return self

    def __exit__(self, *exc: object) -> None:
        after = [cpu_ticks(pid) for pid in self.pids]
        self.each = [
            None if a is None or b is None else round((b - a) / CLOCK_TICKS, 3)
            for a, b in zip(self._before, after, strict=True)
        ]

    @property
    def total(self) -> float | None:
        if not self.each or None in self.each:
            return None
        return round(sum(v for v in self.each if v is not None), 3)


class RssSampler:
    """Samples the servers' total RSS in a thread while the parent waits on its workers."""

    def __init__(self, pids: list[int], interval: float = 0.5) -> None:
        self.pids = pids
        self.interval = interval
        self.samples: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            value = total_rss_kib(self.pids)
            if value is not None:
                self.samples.append(value)
            self._stop.wait(self.interval)

    def __enter__(self) -> RssSampler:
        if self.pids:
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()


def redis_clients(redis_url: str) -> int | None:
    """Connections the Redis server holds, not counting this probe's own."""
    parts = urlsplit(redis_url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 6379), timeout=5) as sock:
            if parts.password:
                sock.sendall(_command("AUTH", parts.password))
                _read_reply(sock)
            sock.sendall(_command("CLIENT", "LIST"))
            listing = _read_reply(sock)
    except OSError:
        return None
    return max(0, sum(1 for line in listing.splitlines() if line.strip()) - 1)


def _command(*words: str) -> bytes:
    out = [f"*{len(words)}\r\n".encode()]
    for word in words:
        data = word.encode()
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


def _read_reply(sock: socket.socket) -> str:
    """One RESP reply: a status line, an error, or a bulk string (CLIENT LIST answers the latter)."""
    buffer = b""
    while b"\r\n" not in buffer:
        buffer += _recv(sock)
    head, _, rest = buffer.partition(b"\r\n")
    if head[:1] in (b"+", b"-", b":"):
        if head[:1] == b"-":
            raise OSError(head[1:].decode())
        return head[1:].decode()
    size = int(head[1:])
    while len(rest) < size + 2:
        rest += _recv(sock)
    return rest[:size].decode()


def _recv(sock: socket.socket) -> bytes:
    chunk = sock.recv(65536)
    if not chunk:
        raise OSError("redis closed the connection")
    return chunk
