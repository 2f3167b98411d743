"""End-to-end encrypted rooms in the browser: two people chat; a third with the link minus its
key sees only "cannot decrypt"; the terminal client reads what the browser wrote and back."""

from __future__ import annotations

import os
import queue
import re
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

import redis
from playwright.sync_api import Page, expect

from . import test_browser as shared
from .browser_support import ServerProcess, server_process
from .redis_server import READY_LINE, free_port, redis_server_executable
from .test_browser import People, create_room, join_room, say, screenshot
from .test_e2e import published_vector

playwright, browser, chat_server, people = shared.playwright, shared.browser, shared.chat_server, shared.people

CANNOT_DECRYPT = "cannot decrypt this message (wrong or missing key)"
CLIENT = os.path.join(os.path.dirname(sys.executable), "ephemeralchat-client")
LINE_SECONDS = 15


def create_e2e_room(page: Page, server: ServerProcess, owner: str, password: str = "") -> str:
    return create_room(page, server, owner, room="Secret plans", password=password, e2e=True)


def fingerprint_of(page: Page) -> str:
    expect(page.locator("#room-e2e")).to_contain_text("End-to-end encrypted · key")
    return page.inner_text("#room-e2e").rsplit("key ", 1)[1]


def test_the_browser_speaks_the_published_format(people: People, chat_server: ServerProcess) -> None:
    page = people.page()
    page.goto(chat_server.url + "/")
    vector = published_vector()
    computed = page.evaluate(
        """async (v) => {
          const e2e = await import("/static/js/e2e.js");
          const raw = e2e.readKey(v.key);
          const sealed = await e2e.seal(await e2e.cipherKey(raw), v.room_id, v.connection_id, v.display_name,
                                        v.text, e2e.decode(v.iv));
          const derived = await e2e.passwordKeys(v.password, v.salt);
          return { ciphertext: sealed.ciphertext, fingerprint: await e2e.fingerprint(raw),
                   password_key: e2e.encode(derived.key), join_password: derived.join };
        }""",
        vector,
    )
    assert computed == {k: vector[k] for k in ("ciphertext", "fingerprint", "password_key", "join_password")}


def test_two_people_chat_and_a_link_without_its_key_reads_nothing(
    people: People, chat_server: ServerProcess
) -> None:
    ada = people.page()
    link = create_e2e_room(ada, chat_server, "Ada")
    assert re.search(r"#room=\w+&key=[\w-]{43}$", link), link
    room_id = re.search(r"#room=(\w+)", link).group(1)  # type: ignore[union-attr]
    grace = people.page()
    join_room(grace, link, "Grace")
    assert fingerprint_of(grace) == fingerprint_of(ada)
    say(ada, "The launch moves to Thursday")
    expect(grace.locator(".msg .bubble")).to_have_text(["The launch moves to Thursday"])
    say(grace, "Noted, I will tell nobody")
    expect(ada.locator(".msg .bubble")).to_have_text(["The launch moves to Thursday", "Noted, I will tell nobody"])
    screenshot(ada, "chat-e2e.png")

    eve = people.page()
    eve.goto(link.split("&key=")[0])
    expect(eve.locator("#join-info")).to_contain_text("this link has no key")
    join_room(eve, link.split("&key=")[0], "Eve")
    expect(eve.locator("#room-e2e")).to_contain_text("you have no key")
    expect(eve.locator(".msg .bubble.undecryptable")).to_have_text([CANNOT_DECRYPT] * 2)
    say(ada, "Still Thursday")
    expect(eve.locator(".msg .bubble.undecryptable")).to_have_count(3)
    screenshot(eve, "chat-e2e-no-key.png")
    say(eve, "let me in on it")
    expect(eve.locator(".sys.error", has_text="end-to-end encrypted and you have no key")).to_be_visible()
    expect(grace.locator(".msg .bubble")).to_have_text(
        ["The launch moves to Thursday", "Noted, I will tell nobody", "Still Thursday"]
    )
    # What the server keeps is the envelopes alone.
    with urllib.request.urlopen(f"{chat_server.url}/rooms/{room_id}/messages", timeout=10) as answer:
        kept = answer.read().decode()
    assert "Thursday" not in kept and '"ciphertext"' in kept and '"text"' not in kept


def test_a_password_room_takes_its_key_from_the_password(people: People, chat_server: ServerProcess) -> None:
    ada = people.page()
    link = create_e2e_room(ada, chat_server, "Ada", password="blue whale")
    assert "&key=" not in link  # The password is the key: the link need not carry it.
    grace = people.page()
    grace.goto(link)
    expect(grace.locator("#join-info")).to_contain_text("the password is also its key")
    join_room(grace, link, "Grace", password="blue whale")
    assert fingerprint_of(grace) == fingerprint_of(ada)
    say(grace, "whale song at noon")
    expect(ada.locator(".msg .bubble")).to_have_text(["whale song at noon"])


@contextmanager
def terminal_client(*args: str) -> Iterator[tuple[subprocess.Popen[str], queue.Queue[str]]]:
    proc = subprocess.Popen(
        [CLIENT, *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "NO_COLOR": "1"},
    )
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line.rstrip("\n"))

    threading.Thread(target=pump, daemon=True).start()
    try:
        yield proc, lines
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def expect_line(lines: queue.Queue[str], pattern: str) -> str:
    seen = []
    while True:
        try:
            line = lines.get(timeout=LINE_SECONDS)
        except queue.Empty:
            raise AssertionError(f"no line matched {pattern!r}: {seen}") from None
        seen.append(line)
        if re.search(pattern, line):
            return line


def test_the_terminal_client_and_the_browser_read_each_other(people: People, chat_server: ServerProcess) -> None:
    ada = people.page()
    link = create_e2e_room(ada, chat_server, "Ada")
    say(ada, "written in a browser")
    with terminal_client("--join", link, "--name", "Tom") as (tom, lines):
        fingerprint = expect_line(lines, r"key fingerprint").split("fingerprint ")[1].split(" (")[0]
        assert fingerprint == fingerprint_of(ada)
        expect_line(lines, r"Ada: written in a browser$")
        assert tom.stdin is not None
        tom.stdin.write("typed in a terminal\n")
        tom.stdin.flush()
        expect(ada.locator(".msg .bubble")).to_have_text(["written in a browser", "typed in a terminal"])
        tom.stdin.write("/quit\n")
        tom.stdin.flush()
        assert tom.wait(timeout=LINE_SECONDS) == 0


def test_a_swapped_script_is_refused_by_the_page(people: People, chat_server: ServerProcess) -> None:
    """Subresource Integrity in a real browser: a module altered on its way (by a proxy, a
    cache, a CDN) does not run, so the page never shows its forms."""
    page = people.page()
    errors: list[str] = []
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.route(
        "**/static/js/format.js",
        lambda route: route.fulfill(
            response=(fetched := route.fetch()), body=fetched.text() + "\nconsole.log('swapped');"
        ),
    )
    page.goto(chat_server.url + "/")
    page.wait_for_load_state("networkidle")
    expect(page.locator("#home-view")).to_be_hidden()
    assert any("integrity" in error for error in errors), errors
    untouched = people.page()  # The same page, as served, runs.
    untouched.goto(chat_server.url + "/")
    expect(untouched.locator("#home-view")).to_be_visible()


@contextmanager
def private_redis() -> Iterator[redis.Redis]:
    """A redis-server of this test's own, as tests/redis_server.py starts one, for sync code."""
    port = free_port()
    command = [redis_server_executable(), "--port", str(port), "--bind", "127.0.0.1", "--save", "",
               "--appendonly", "no", "--loglevel", "notice"]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        assert proc.stdout is not None
        for line in proc.stdout:  # Its log says when it listens; it ends if it cannot start.
            if READY_LINE in line:
                break
        client = redis.Redis(port=port, decode_responses=True, socket_timeout=5)
        client.ping()
        yield client
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def everything_in(client: redis.Redis) -> str:
    readers = {"string": "GET", "hash": "HGETALL", "set": "SMEMBERS"}
    parts = []
    for key in client.keys("*"):
        kind = client.type(key)
        if kind in readers:
            parts.append(f"{key} {client.execute_command(readers[kind], key)}")
        elif kind == "list":
            parts.append(f"{key} {client.lrange(key, 0, -1)}")
        elif kind == "zset":
            parts.append(f"{key} {client.zrange(key, 0, -1, withscores=True)}")
        elif kind == "stream":
            parts.append(f"{key} {client.xrange(key)}")
    return "\n".join(parts)


def test_browsers_on_two_instances_leave_no_plaintext_behind(people: People) -> None:
    """Two instances on one Redis, DEBUG logs: two browsers chat across them, and nothing the
    servers hold (every Redis value), log or expose (/metrics) contains a word of it."""
    words = ["periwinkle-accordion-3318", "tangerine-glacier-7046"]
    with private_redis() as store, ExitStack() as stack:
        env = {"REDIS_URL": f"redis://127.0.0.1:{store.connection_pool.connection_kwargs['port']}/0",
               "LOG_LEVEL": "DEBUG"}
        a, b = (stack.enter_context(server_process(env)) for _ in range(2))
        ada = people.page()
        link = create_room(ada, a, "Ada", room="Across", e2e=True)
        grace = people.page()
        join_room(grace, link.replace(a.url, b.url), "Grace")
        say(ada, words[0])
        expect(grace.locator(".msg .bubble")).to_have_text([words[0]])
        say(grace, words[1])
        expect(ada.locator(".msg .bubble")).to_have_text(words)
        held = everything_in(store)
        metrics = [urllib.request.urlopen(f"{s.url}/metrics", timeout=10).read().decode() for s in (a, b)]
        logs = "\n".join(a.output + b.output)
    assert ":log " in held and " DEBUG " in logs  # The room's history was read; logs as talkative as can be.
    for word in words:
        for where in (held, logs, *metrics):
            assert word not in where
