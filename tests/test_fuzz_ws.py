"""Generated WebSocket input against a live server: hostile frames never cost a room.

After every generated frame the fuzzing member gets its message back or an error frame (or,
over the frame limit, close 1009), and two other members of the same room keep talking.

How Hypothesis meets Trio here: one server, one room and its long-lived members live in the
test's own Trio run. Hypothesis runs in a worker thread (``trio.to_thread``), where ``@given``
drives a plain sync function as usual (generation, shrinking, the example budget), and each
example hands its input back to the Trio run with ``trio.from_thread.run``. So nothing is
restarted per example, every await stays in one event loop, and no example ever sleeps.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlencode

import hypothesis.strategies as st
import orjson
import pytest
import trio
from hypothesis import given
from trio_websocket import ConnectionClosed
from websockets.exceptions import ConnectionClosed as WsClosed
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect as ws_connect

from chat.config import Settings

from . import support
from .fuzzing import fuzz_settings
from .support import Client, Server, connect, create_room, running_app

FRAME_LIMIT = 65_536
MAX_CHARS = 4_000
FRAME_EXAMPLES = 500
QUERY_EXAMPLES = 200
STEP_SECONDS = 10  # a bound on one example's round trip, never a wait


def server_settings() -> Settings:
    # The message rate limit is not under test here: a fuzzer sends far faster than a person.
    return support.settings(messages_per_second=1e9, message_burst=10**9, flood_debt=10**9)


# -- frames ------------------------------------------------------------------------------------

TEXT = st.text(st.characters(exclude_categories=["Cs"]))
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
    max_leaves=20,
)


def as_json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


@st.composite
def json_objects(draw: st.DrawFn) -> str:
    """Objects with random keys and types, now and then shaped like a chat message."""
    data: dict[str, Any] = draw(st.dictionaries(TEXT, JSON_VALUES, max_size=5))
    if draw(st.booleans()):
        data["type"] = draw(st.sampled_from(["message", "Message", "ping", "", None, 1, [], {}]) | JSON_VALUES)
    if draw(st.booleans()):
        data["text"] = draw(TEXT | JSON_VALUES)
    return as_json(data)


@st.composite
def edge_frames(draw: st.DrawFn) -> str:
    """Huge numbers, deep nesting, lengths around the message and frame limits."""
    kind = draw(st.sampled_from(["number", "nested", "long_text", "long_json", "blank"]))
    if kind == "number":
        digits = "9" * draw(st.integers(1, 20_000))
        number = draw(st.sampled_from([digits, "-" + digits, f"1e{digits[:6]}", f"0.{digits}", "1e-400"]))
        return '{"type": "message", "text": "n", "n": ' + number + "}"
    if kind == "nested":
        depth = draw(st.integers(1, 20_000))
        inner = draw(st.sampled_from(["[" * depth + "]" * depth, '{"a":' * depth + "1" + "}" * depth]))
        return '{"type": "message", "text": ' + inner + "}"
    length = draw(st.sampled_from([MAX_CHARS - 1, MAX_CHARS, MAX_CHARS + 1, 40_000, FRAME_LIMIT, FRAME_LIMIT + 1]))
    char = draw(st.sampled_from(["a", "é", "😀", " "]))
    # Around the frame limit, lengths are in bytes (rounded up to whole characters).
    text = char * (-(-length // len(char.encode())) if length >= FRAME_LIMIT else length)
    if kind == "long_json":
        return as_json({"type": "message", "text": text})
    return " \t\n" * draw(st.integers(0, 3)) if kind == "blank" else text


FRAMES: st.SearchStrategy[str | bytes] = st.one_of(
    TEXT,
    json_objects(),
    JSON_VALUES.map(as_json),
    edge_frames(),
    st.binary(max_size=200),
    st.sampled_from([b"", b"\x00" * (FRAME_LIMIT + 1), b"x" * FRAME_LIMIT]),
)


def size(frame: str | bytes) -> int:
    return len(frame.encode() if isinstance(frame, str) else frame)


def deliverable_texts(frame: str) -> set[str]:
    """What a chat message made from ``frame`` may carry: the frame itself, or its JSON text."""
    texts = {frame}
    try:
        data = json.loads(frame)
    except (ValueError, RecursionError):
        return texts
    if isinstance(data, dict) and isinstance(data.get("text"), str):
        texts.add(data["text"])
    return texts


# -- the room under fire -----------------------------------------------------------------------


@dataclass
class Room:
    server: Server
    room_id: str
    listener: Client
    talker: Client
    fuzzer: Client | None = None
    # The fuzzer's connection belongs to keep_fuzzer's task: a closed one is replaced there.
    ready: trio.Event = field(default_factory=trio.Event)
    lost: trio.Event = field(default_factory=trio.Event)
    outcomes: Counter[str] = field(default_factory=Counter)
    canaries: int = 0

    def url(self, name: str) -> str:
        return f"{self.server.ws}/rooms/{self.room_id}/ws?display_name={name}"


@asynccontextmanager
async def room_under_fire(server: Server) -> AsyncIterator[Room]:
    async with server.client() as http:
        room = await create_room(
            http,
            owner_name="owner",
            max_users=1000,
            expiry_seconds=3600,
            preferences={"destroy_on_owner_offline": False},
        )
    url = f"{server.ws}/rooms/{room['room_id']}/ws?display_name="
    async with connect(url + "listener") as listener, connect(url + "talker") as talker:
        yield Room(server, room["room_id"], listener, talker)


async def keep_fuzzer(room: Room) -> None:
    """Holds the fuzzing member's connection, and opens a new one when the server closed it."""
    while True:
        async with connect(room.url("fuzzer")) as fuzzer:
            room.fuzzer = fuzzer
            room.ready.set()
            await room.lost.wait()
        room.lost = trio.Event()


async def next_answer(client: Client) -> dict[str, Any]:
    """The fuzzer's next own message or error frame; presence and others' messages skipped."""
    while True:
        frame = await client.receive(within=STEP_SECONDS)
        if frame["type"] == "error" or (frame["type"] == "message" and frame["connection_id"] == client.connection_id):
            return frame


async def room_still_talks(room: Room) -> None:
    """A message from one member reaches another: the room survived."""
    room.canaries += 1
    canary = f"canary {room.canaries}"
    await room.talker.say(canary)
    for member in (room.listener, room.talker):  # the talker drains its own queue too
        await member.receive_until(within=STEP_SECONDS, type="message", text=canary)


async def fire(room: Room, frame: str | bytes) -> None:
    with trio.fail_after(STEP_SECONDS):
        await room.ready.wait()
        fuzzer = room.fuzzer
        assert fuzzer is not None
        await fuzzer.ws.send_message(frame)
        if size(frame) > FRAME_LIMIT:
            with pytest.raises(ConnectionClosed) as closed:
                while True:
                    await fuzzer.ws.get_message()
            assert closed.value.reason.code == 1009, closed.value.reason
            room.ready, room.fuzzer = trio.Event(), None
            room.lost.set()
            room.outcomes["closed 1009"] += 1
        else:
            answer = await next_answer(fuzzer)
            room.outcomes[answer["type"]] += 1
            if isinstance(frame, bytes):
                assert answer["type"] == "error", (frame[:80], answer)
            elif answer["type"] == "message":
                text = answer["text"]
                assert text in deliverable_texts(frame), (frame[:200], text[:200])
                assert text.strip() and len(text) <= MAX_CHARS, text[:200]
            else:
                assert isinstance(answer["detail"], str) and answer["detail"], answer
                if not frame.startswith("{"):  # plain text: refused only when blank or too long
                    assert not frame.strip() or len(frame) > MAX_CHARS, (frame[:200], answer)
        await room_still_talks(room)


async def run_in_thread(body: Callable[[], None]) -> None:
    """Hypothesis in a worker thread; each example calls back into this Trio run."""
    await trio.to_thread.run_sync(body)


def no_errors_logged(caplog: pytest.LogCaptureFixture) -> None:
    errors = [record for record in caplog.records if record.levelno >= logging.ERROR]
    assert not errors, [record.getMessage() for record in errors]


async def test_generated_frames_never_cost_the_room(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    async with running_app(server_settings()) as server, room_under_fire(server) as room:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(keep_fuzzer, room)

            @fuzz_settings(FRAME_EXAMPLES)
            @given(frame=FRAMES)
            def example(frame: str | bytes) -> None:
                trio.from_thread.run(fire, room, frame)

            await run_in_thread(example)
            nursery.cancel_scope.cancel()
        print(f"websocket frames: {sum(room.outcomes.values())} examples; {dict(room.outcomes)}")
        assert sum(room.outcomes.values()) >= FRAME_EXAMPLES
        assert room.outcomes["message"] and room.outcomes["error"] and room.outcomes["closed 1009"], room.outcomes
        await room_still_talks(room)
    no_errors_logged(caplog)


# -- the WebSocket URL -------------------------------------------------------------------------

QUERY_KEYS = st.sampled_from(["display_name", "token", "room", ""]) | st.text(max_size=10)
QUERY_VALUES = TEXT.filter(lambda value: len(value) <= 80) | st.sampled_from(["", "a.b", "a.b?c", ".", "x" * 60])


@st.composite
def queries(draw: st.DrawFn) -> str:
    pairs = draw(st.lists(st.tuples(QUERY_KEYS, QUERY_VALUES), max_size=4))
    query = urlencode(pairs)
    if draw(st.booleans()):  # raw, with broken percent escapes and stray separators
        query += "&" + quote(draw(st.text(st.sampled_from("%zZ09fF=&?+;/ a"), max_size=30)), safe="%=&?+;/")
    # Up to past what Hypercorn reads at once, where it answers 431.
    if pad := draw(st.sampled_from([0, 0, 0, 2_000, 20_000, 100_000])):
        query += "&display_name=" + "p" * pad
    return query


def knock(base: str, room_id: str, query: str) -> str:
    """Opens the room socket with ``query``: admitted, closed with 1008, or refused with a 4xx.

    A sync client from the Hypothesis thread: trio-websocket fails on the server's first ping
    when it arrives while the client is already closing, which a socket closed at once often meets."""
    url = f"{base}/rooms/{room_id}/ws?{query}"
    try:
        with ws_connect(url, open_timeout=STEP_SECONDS, close_timeout=STEP_SECONDS, proxy=None) as ws:
            try:
                hello = orjson.loads(ws.recv(timeout=STEP_SECONDS))
            except WsClosed as closed:
                assert closed.rcvd is not None and closed.rcvd.code == 1008, closed
                return "closed 1008"
            assert hello["type"] == "system" and hello["message"] == "Connected to room", hello
            return "admitted"
    except InvalidStatus as rejected:
        assert 400 <= rejected.response.status_code < 500, rejected
        return f"rejected {rejected.response.status_code}"


async def test_odd_websocket_queries_get_1008_or_4xx(caplog: pytest.LogCaptureFixture) -> None:
    """Odd tokens and display names, broken escapes, oversized query strings on the socket URL."""
    caplog.set_level(logging.WARNING)
    outcomes: Counter[str] = Counter()
    async with running_app(server_settings()) as server, room_under_fire(server) as room:

        @fuzz_settings(QUERY_EXAMPLES)
        @given(query=queries(), wrong_room=st.booleans())
        def example(query: str, wrong_room: bool) -> None:
            outcome = knock(server.ws, "0" * 16 if wrong_room else room.room_id, query)
            assert not (wrong_room and outcome == "admitted"), query
            outcomes[outcome] += 1

        await run_in_thread(example)
        await room_still_talks(room)
    print(f"websocket queries: {sum(outcomes.values())} examples; {dict(outcomes)}")
    assert outcomes["admitted"] and outcomes["closed 1008"] and outcomes["rejected 431"], outcomes
    no_errors_logged(caplog)


@pytest.mark.parametrize("char", ["a", "é", "😀"])
async def test_frame_limit_is_in_bytes_whatever_the_characters(char: str) -> None:
    """Hypercorn counts a text frame in characters: 16 Ki emoji are 64 KiB and pass (too long for
    a message: an error frame), one more closes the socket with 1009 (it used to be taken)."""
    async with running_app(server_settings()) as server, room_under_fire(server) as room:
        async with connect(room.url("big")) as big:
            fits = char * (FRAME_LIMIT // len(char.encode()))
            await big.ws.send_message(fits)
            assert (await next_answer(big))["type"] == "error"
            await big.ws.send_message(fits + char)
            with trio.fail_after(STEP_SECONDS), pytest.raises(ConnectionClosed) as closed:
                while True:
                    await big.ws.get_message()
            assert closed.value.reason.code == 1009
        await room_still_talks(room)
