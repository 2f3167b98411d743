"""The original document's own client examples run unchanged (owner_name added) against the server."""

from __future__ import annotations

import shutil
import subprocess
import sys
from functools import partial
from pathlib import Path

import trio

from .support import Server

EXAMPLES = Path(__file__).with_name("seed_examples")


async def run_until(command: list[str], wanted: list[str]) -> list[str]:
    """Runs an example until every wanted text has appeared in its output, then stops it."""
    lines: list[str] = []
    async with trio.open_nursery() as nursery:
        proc = await nursery.start(
            partial(trio.run_process, command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, check=False)
        )
        with trio.fail_after(30):
            buffer = b""
            async for chunk in proc.stdout:
                buffer += chunk
                *complete, buffer = buffer.split(b"\n")
                lines += [line.decode() for line in complete]
                if all(any(text in line for line in lines) for text in wanted):
                    break
            else:
                raise AssertionError(f"example ended early: {lines}")
        proc.kill()
    return lines


def localised(example: str, server: Server, tmp_path: Path) -> Path:
    """The example with its hard-coded http://localhost:8000 pointed at the test server."""
    target = tmp_path / example
    target.write_text((EXAMPLES / example).read_text().replace("http://localhost:8000", server.url))
    return target


async def test_python_client_example(server: Server, tmp_path: Path) -> None:
    script = localised("python_client.py", server, tmp_path)
    lines = await run_until(
        [sys.executable, "-u", str(script)],
        ["Room: My Room", "Online users: 0/10", "Is full: False", "John Doe came online", "Hello from Python!"],
    )
    received = [line for line in lines if line.startswith("Received:")]
    assert "'message': 'Connected to room'" in received[0]
    assert "'text': 'Hello from Python!'" in received[-1] and "'display_name': 'John Doe'" in received[-1]


async def test_javascript_client_example(server: Server, tmp_path: Path) -> None:
    node = shutil.which("node")
    assert node, "Node.js is needed to run the document's JavaScript example"
    script = localised("javascript_client.js", server, tmp_path)
    lines = await run_until(
        [node, "--experimental-websocket", str(script)],
        ["Room: My Room", "/10", "Is full: false", "Connected to room:", "text: 'Hello from JavaScript!'"],
    )
    assert not any("WebSocket error" in line for line in lines)
    assert any("display_name: 'John Doe'" in line for line in lines)
