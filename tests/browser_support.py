"""Plumbing for the browser tests: a real ``ephemeralchat`` process and Debian's Chromium.

Playwright's async API needs asyncio, so the browser tests are plain synchronous tests
using its sync API; the server is a subprocess, which also keeps Trio out of their way.
"""

from __future__ import annotations

import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# The committed screenshots in docs/screenshots are refreshed with
# SCREENSHOTS_DIR=docs/screenshots; an ordinary run leaves the work tree alone.
SCREENSHOTS = Path(os.environ.get("SCREENSHOTS_DIR") or Path(tempfile.gettempdir()) / "ephemeralchat-screenshots")
SERVING = re.compile(r"serving on (http://\S+)")
STARTUP_SECONDS = 30


def require_chromium() -> str:
    """The Chromium binary; a missing one fails the run loudly instead of skipping it."""
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        found = shutil.which("chromium")
        hint = f" (there is one at {found}; set CHROMIUM_PATH)" if found else ""
        raise RuntimeError(
            f"Chromium not found at {CHROMIUM}{hint}. Install it with `bash .ci/install-browser` "
            "(apt-get install chromium); the browser tests never download a browser themselves."
        )
    return CHROMIUM


@dataclass
class ServerProcess:
    proc: subprocess.Popen[str]
    url: str
    output: list[str] = field(default_factory=list)


@contextmanager
def server_process(env: dict[str, str] | None = None) -> Iterator[ServerProcess]:
    """``ephemeralchat`` on a free loopback port, stopped with SIGTERM afterwards."""
    full_env = {
        **os.environ,
        "HOST": "127.0.0.1",
        "PORT": "0",
        "SECRET_KEY": "browser-test-secret",
        "PYTHONUNBUFFERED": "1",
        **(env or {}),
    }
    command = [os.path.join(os.path.dirname(sys.executable), "ephemeralchat")]
    proc = subprocess.Popen(
        command, env=full_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1
    )
    lines: list[str] = []
    urls: queue.Queue[str | None] = queue.Queue()

    # A reader thread keeps the pipe drained for the whole run, so a chatty server never blocks.
    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line.rstrip("\n"))
            match = SERVING.search(line)
            if match:
                urls.put(match.group(1))
        urls.put(None)

    reader = threading.Thread(target=pump, name="ephemeralchat-output", daemon=True)
    reader.start()
    try:
        try:
            url = urls.get(timeout=STARTUP_SECONDS)
        except queue.Empty:
            url = None
        if url is None:
            raise RuntimeError("ephemeralchat did not start:\n" + "\n".join(lines))
        yield ServerProcess(proc, url, lines)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        reader.join(timeout=5)
