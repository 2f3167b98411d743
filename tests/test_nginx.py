"""deploy/nginx.conf, run by a real nginx in front of two real instances sharing one Redis.

The test renders the very file the deployment uses, changing only what must differ on a
test machine (upstream addresses, listen port, log level, temp paths), so a broken
WebSocket upgrade, a Host header that loses its port or a balancing rule that pins every
member to one instance fails here. nginx comes from Debian's package: .ci/install-nginx.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import tempfile
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import trio

from chat import protocol

from .redis_server import free_port, open_redis_server
from .support import Client, ServerProcess, chat_both_ways, connect, create_room, join_room, server_process
from .test_lifecycle import closed_with

# As deploy/docker-compose.yml sets it: nginx is the one trusted proxy in front.
INSTANCE_ENV = {"TRUSTED_PROXY_HOPS": "1"}

NGINX_CONF = Path(__file__).resolve().parents[1] / "deploy" / "nginx.conf"
UPSTREAM_SERVER = re.compile(r"^(?P<indent>[ \t]*)server app\d+:8000(?P<options>[^;\n]*);$", re.MULTILINE)
ERROR_LOG = re.compile(r"^error_log [^;\n]+;$", re.MULTILINE)
TEMP_PATHS = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
# nginx logs this (at notice level) once it has bound its listening socket.
READY = "start worker process"
START_SECONDS = 15
STOP_SECONDS = 10


def nginx_executable() -> str:
    # Debian puts it in /usr/sbin, which is not on every PATH.
    found = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin")
    assert found, "nginx is not installed: run .ci/install-nginx"
    return found


def replace_once(text: str, old: str, new: str) -> str:
    assert text.count(old) == 1, f"deploy/nginx.conf no longer has exactly one {old!r}"
    return text.replace(old, new)


def render(conf: str, *, listen_port: int, upstream_ports: list[int], workdir: Path) -> str:
    """deploy/nginx.conf for loopback ports, with its logs and temp files in ``workdir``."""
    servers = list(UPSTREAM_SERVER.finditer(conf))
    assert servers, "deploy/nginx.conf has no 'server appN:8000' upstream lines"
    indent, options = servers[0]["indent"], servers[0]["options"]
    loopback = "\n".join(f"{indent}server 127.0.0.1:{port}{options};" for port in upstream_ports)
    conf = conf[: servers[0].start()] + loopback + conf[servers[-1].end() :]
    conf = replace_once(conf, "listen 80;", f"listen 127.0.0.1:{listen_port};")
    conf, count = ERROR_LOG.subn("error_log stderr notice;", conf)
    assert count == 1, "deploy/nginx.conf must have one top-level error_log line"
    temp = "".join(f"    {name}_temp_path {workdir / name};\n" for name in TEMP_PATHS)
    return replace_once(conf, "http {\n", "http {\n" + temp)


def write_config(workdir: Path, *, listen_port: int, upstream_ports: list[int]) -> Path:
    # nginx's workers drop root (to "nobody"): they must reach their temp paths.
    workdir.chmod(0o755)
    conf = workdir / "nginx.conf"
    rendered = render(NGINX_CONF.read_text(), listen_port=listen_port, upstream_ports=upstream_ports, workdir=workdir)
    conf.write_text(rendered)
    return conf


class Lines:
    """Lines of a child's output, and a way to wait for one."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self._changed = trio.Event()

    async def pump(self, stream: trio.abc.ReceiveStream) -> None:
        buffer = b""
        async for chunk in stream:
            buffer += chunk
            *complete, buffer = buffer.split(b"\n")
            self.lines += [raw.decode(errors="replace") for raw in complete]
            self._changed.set()
            self._changed = trio.Event()

    async def wait_for(self, pattern: str | re.Pattern[str], count: int = 1, within: float = 10) -> list[str]:
        with trio.fail_after(within):
            while True:
                found = [line for line in self.lines if re.search(pattern, line)]
                if len(found) >= count:
                    return found
                await self._changed.wait()


@dataclass
class Nginx:
    port: int
    access_log: Lines = field(default_factory=Lines)
    error_log: Lines = field(default_factory=Lines)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@asynccontextmanager
async def running_nginx(upstream_ports: list[int]) -> AsyncIterator[Nginx]:
    """nginx in the foreground as a child of this test, on a loopback port; stopped on exit."""
    executable = nginx_executable()
    with tempfile.TemporaryDirectory(prefix="ephemeralchat-nginx-") as tmp:
        workdir = Path(tmp)
        nginx = Nginx(free_port())
        conf = write_config(workdir, listen_port=nginx.port, upstream_ports=upstream_ports)
        # -e: the log nginx writes before it reads the config goes to stderr, not /var/log.
        command = [executable, "-e", "stderr", "-p", str(workdir), "-c", str(conf)]
        command += ["-g", f"daemon off; pid {workdir / 'nginx.pid'};"]
        checked = await trio.run_process([*command, "-t"], capture_stdout=True, capture_stderr=True, check=False)
        assert checked.returncode == 0, checked.stderr.decode(errors="replace")
        async with trio.open_nursery() as nursery:
            proc: trio.Process = await nursery.start(
                # Its own process group: if nginx will not stop, its workers go with it.
                partial(
                    trio.run_process,
                    command,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    check=False,
                    start_new_session=True,
                )
            )
            assert proc.stdout is not None and proc.stderr is not None
            nursery.start_soon(nginx.access_log.pump, proc.stdout)
            nursery.start_soon(nginx.error_log.pump, proc.stderr)
            try:
                await nginx.error_log.wait_for(READY, within=START_SECONDS)
                yield nginx
            finally:
                with trio.CancelScope(shield=True):
                    if proc.returncode is None:
                        proc.send_signal(signal.SIGQUIT)  # graceful: finish logging, then exit
                    with trio.move_on_after(STOP_SECONDS):
                        await proc.wait()
                    if proc.returncode is None:
                        os.killpg(proc.pid, signal.SIGKILL)
                        await proc.wait()
        assert not [line for line in nginx.error_log.lines if re.search(r"\[(emerg|alert|crit)\]", line)], (
            nginx.error_log.lines
        )


def port_of(instance: ServerProcess) -> int:
    port = urlsplit(instance.url).port
    assert port is not None
    return port


@asynccontextmanager
async def deployment(
    instances: int = 2, env: dict[str, str] | None = None
) -> AsyncIterator[tuple[Nginx, list[ServerProcess]]]:
    """Redis, ``instances`` ephemeralchat processes on it (each with ``env`` on top), and
    nginx in front of them."""
    async with AsyncExitStack() as stack:
        redis = await stack.enter_async_context(open_redis_server())
        env = INSTANCE_ENV | {"REDIS_URL": redis.url} | (env or {})
        servers = [await stack.enter_async_context(server_process(env)) for _ in range(instances)]
        nginx = await stack.enter_async_context(running_nginx([port_of(s) for s in servers]))
        yield nginx, servers


@asynccontextmanager
async def spread_by_least_conn(http: httpx.AsyncClient, room_id: str) -> AsyncIterator[None]:
    """One short request between two WebSockets. Round-robin would then send the second
    socket to the same instance as the first; least_conn sends it to the idle one."""
    assert (await http.get(f"/rooms/{room_id}")).status_code == 200
    yield


def upstreams(lines: list[str]) -> set[str]:
    return {line.rsplit("upstream=", 1)[1] for line in lines}


async def test_chat_through_nginx_spans_both_instances() -> None:
    async with deployment() as (nginx, servers), httpx.AsyncClient(base_url=nginx.url, timeout=10) as http:
        assert (await http.get("/healthz")).json() == {"status": "ok"}
        assert (await http.get("/readyz")).status_code == 200
        # Per-instance numbers stay private: Prometheus scrapes the instances directly.
        assert (await http.get("/metrics")).status_code == 403

        room = await create_room(http, name="Behind nginx", owner_name="Bob")
        room_id = room["room_id"]
        joined = await join_room(http, room_id, "Ann")
        # Host reaches the instances with its port, so every ws_url points back at nginx.
        for url in (room["ws_url"], joined["ws_url"]):
            assert urlsplit(url).netloc == f"127.0.0.1:{nginx.port}", url

        async with (
            connect(room["ws_url"]) as bob,
            spread_by_least_conn(http, room_id),
            connect(joined["ws_url"]) as ann,
        ):
            await chat_both_ways(bob, ann, "hello via nginx", "and back")
            details = (await http.get(f"/rooms/{room_id}")).json()
            assert {u["display_name"] for u in details["online_users"]} == {"Bob", "Ann"}

            owner = {"Authorization": f"Bearer {room['owner_token']}"}
            response = await http.post(f"/rooms/{room_id}/close", headers=owner)
            assert response.status_code == 200, response.text
            for member in (ann, bob):
                await member.receive_until(type="system", message=protocol.CLOSED_BY_OWNER)
                assert (await closed_with(member))[0] == protocol.CLOSE_NORMAL

        # nginx logs a WebSocket when it ends. least_conn sent Ann (while Bob's socket was
        # open) to the other instance, so the chat above crossed Redis between instances.
        sockets = await nginx.access_log.wait_for(rf'"GET /rooms/{room_id}/ws HTTP/1\.1" 101 ', count=2)
        assert upstreams(sockets) == {f"127.0.0.1:{port_of(s)}" for s in servers}
        # Tokens ride in the query string: the access log must never show them.
        assert not [line for line in nginx.access_log.lines if "token=" in line or "?" in line]


async def fate(member: Client) -> str:
    """What a member hears first after an instance is told to stop: its own goodbye, or
    that someone on the stopping instance went offline."""
    with trio.fail_after(15):
        while True:
            frame = await member.receive()
            if frame["type"] == "system" and frame["message"] == protocol.SHUTTING_DOWN:
                return "drained"
            if frame.get("event") == "user_offline":
                return f"saw {frame['connection_id']} go"


async def test_a_draining_instance_says_goodbye_through_nginx() -> None:
    async with deployment() as (nginx, servers), httpx.AsyncClient(base_url=nginx.url, timeout=10) as http:
        room = await create_room(http, owner_name="Bob", preferences={"destroy_on_owner_offline": False})
        joined = await join_room(http, room["room_id"], "Ann")
        async with (
            connect(room["ws_url"]) as bob,
            spread_by_least_conn(http, room["room_id"]),
            connect(joined["ws_url"]) as ann,
        ):
            await bob.receive_until(event="user_online", display_name="Ann")
            # least_conn put Bob and Ann on different instances; stop the first one.
            servers[0].proc.send_signal(signal.SIGTERM)
            with trio.fail_after(15):
                await servers[0].proc.wait()
            fates = {bob.connection_id: await fate(bob), ann.connection_id: await fate(ann)}
            [(gone, _)] = [(cid, what) for cid, what in fates.items() if what == "drained"]
            [(stayed, what)] = [(cid, what) for cid, what in fates.items() if what != "drained"]
            assert what == f"saw {gone} go"
            leaving, staying = (bob, ann) if gone == bob.connection_id else (ann, bob)
            assert (await closed_with(leaving))[0] == protocol.CLOSE_GOING_AWAY
            # The member on the surviving instance chats on, through the same nginx.
            await staying.say("still here")
            assert (await staying.receive_until(type="message"))["text"] == "still here"
            assert staying.connection_id == stayed
