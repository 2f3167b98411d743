"""The plain POST read without h11 (chat.plain_post): whatever it reads, h11 reads the same way;
whatever it leaves, h11 still reads, and the connection answers as Hypercorn does."""

from __future__ import annotations

import h11
import pytest
from hypothesis import given
from hypothesis import strategies as st

from chat.plain_post import KnownLength, PlainPost, plain_post

from .fuzzing import fuzz_settings
from .test_connections import ask_raw, lane_and_hypercorn, post

MOST = 16 * 1024
BODY = b'{"name": "x", "owner_name": "Jo"}'


def read(data: bytes) -> PlainPost | None:
    ends = data.find(b"\r\n\r\n")
    assert ends >= 0
    return plain_post(data, ends, MOST)


def h11_reads(data: bytes) -> tuple[h11.Request, bytes] | None:
    """The request and body h11 reads from ``data``, None if it refuses it."""
    parser = h11.Connection(h11.SERVER, max_incomplete_event_size=MOST)
    parser.receive_data(data)
    try:
        request = parser.next_event()
        body = b""
        while isinstance(event := parser.next_event(), h11.Data):
            body += event.data
    except h11.RemoteProtocolError:
        return None
    if not isinstance(request, h11.Request) or not isinstance(event, h11.EndOfMessage):
        return None
    return request, body


def test_a_plain_post_is_read_as_h11_reads_it() -> None:
    data = post("/rooms/abc/join", BODY, "authorization: Bearer  t.k ", "x-empty:", "origin: https://a.example")
    mine = read(data)
    assert mine is not None
    theirs = h11_reads(data)
    assert theirs is not None
    request, body = theirs
    assert (mine.method, mine.target, mine.http_version) == (request.method, request.target, request.http_version)
    assert mine.headers == list(request.headers)
    assert data[mine.body_starts : mine.body_starts + mine.length] == body == BODY
    assert (b"authorization", b"Bearer  t.k") in mine.headers and (b"x-empty", b"") in mine.headers


@pytest.mark.parametrize(
    "data",
    [
        b"GET /rooms/ HTTP/1.1\r\nhost: t\r\n\r\n",
        post("/rooms/", BODY, version="1.0"),
        post("/rooms/", BODY, "expect: 100-continue"),
        b"POST /rooms/ HTTP/1.1\r\nhost: t\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n",
        post("/rooms/", BODY, "content-length: 3"),  # a second length
        post("/rooms/", BODY, "upgrade: h2c", "connection: upgrade"),
        b"POST /rooms/ HTTP/1.1\r\ncontent-length: 0\r\n\r\n",  # no host
        post("/rooms/", BODY, "host: other"),  # two hosts
        post("/rooms/", BODY, "x-folded: a\r\n  b"),  # obsolete line folding
        post("/rooms/", BODY, "x-bad : a"),  # white space before the colon
        post("/rooms/", BODY, "x-ctl: a\x01b"),
        b"POST /rooms/ HTTP/1.1\r\nhost: t\r\ncontent-length: +3\r\n\r\nabc",
        b"POST /rooms/ HTTP/1.1\r\nhost: t\r\ncontent-length: 99999999999999999999\r\n\r\n",
        b"POST /rooms/ HTTP/1.1\r\nhost: t\r\n\r\n",  # no length
        b"POST  /rooms/ HTTP/1.1\r\nhost: t\r\ncontent-length: 0\r\n\r\n",
        b"POST * HTTP/1.1\r\nhost: t\r\ncontent-length: 0\r\n\r\n",
        post("/rooms/", BODY, "x-long: " + "a" * MOST),
    ],
)
def test_anything_else_is_left_to_h11(data: bytes) -> None:
    assert read(data) is None


# Heads built from pieces that are each plain or just off it: whatever is read here, h11 reads
# the same way.
_PIECES = st.sampled_from(
    [
        "host: t", "host: t2", "content-length: 3", "content-length: 03", "content-length:3",
        "Content-Length: 3 ", "x-a: b c", "x-a:\tb\t", "x-a: \x7fb", "x-a: caf\xe9", "x-a b: c",
        "expect: 100-continue", "transfer-encoding: identity", "upgrade: websocket",
        " x-fold: y", "x-empty:", "connection: close", ": nameless",
    ]
)


@fuzz_settings(400)
@given(
    line=st.sampled_from(
        ["POST /rooms/ HTTP/1.1", "POST /r?q=1 HTTP/1.1", "post /rooms/ HTTP/1.1", "POST /rooms/ HTTP/1.0"]
    ),
    pieces=st.lists(_PIECES, max_size=6),
)
def test_whatever_is_read_without_h11_h11_reads_the_same(line: str, pieces: list[str]) -> None:
    data = ("\r\n".join([line, *pieces]) + "\r\n\r\nabcdef").encode("latin-1")
    mine = read(data)
    if mine is None:
        return
    theirs = h11_reads(data[: mine.body_starts + mine.length])
    assert theirs is not None, data
    request, body = theirs
    assert (mine.method, mine.target, mine.http_version) == (request.method, request.target, request.http_version)
    assert mine.headers == list(request.headers)
    assert body == data[mine.body_starts : mine.body_starts + mine.length]


def test_the_body_comes_in_pieces_and_what_follows_is_the_next_requests() -> None:
    body = KnownLength(b"ab", 5, closed=False)
    assert isinstance(data := body.next_event(), h11.Data) and data.data == b"ab"
    assert body.next_event() is h11.NEED_DATA and body.their_state is h11.SEND_BODY
    body.receive_data(b"cdeGET /")
    assert isinstance(data := body.next_event(), h11.Data) and data.data == b"cde"
    assert isinstance(body.next_event(), h11.EndOfMessage) and body.their_state is h11.DONE
    assert body.trailing_data == (b"GET /", False)


def test_a_body_cut_short_by_the_client_is_a_protocol_error() -> None:
    body = KnownLength(b"ab", 5, closed=True)
    body.next_event()
    with pytest.raises(h11.RemoteProtocolError):
        body.next_event()
    assert body.their_state is h11.ERROR


async def test_heads_left_to_h11_are_answered_as_hypercorn_answers_them() -> None:
    async with lane_and_hypercorn() as (ours, hypercorn):
        refused = b"[]"  # 422 from either: the same answer, where a room made would differ
        for request in (
            post("/rooms/", refused).replace(b"\r\n", b"\n"),  # bare line feeds
            b"POST /rooms/ HTTP/1.1\r\nhost: t\r\ntransfer-encoding: chunked\r\n\r\n2\r\n[]\r\n0\r\n\r\n",
            post("/rooms/", refused, "x-folded: a\r\n  b"),
            post("/rooms/", refused, "content-length: 3"),
            b"POST /rooms/ HTTP/1.1\r\ncontent-length: 2\r\n\r\n[]",
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",  # TLS to a plain port: refused at once
        ):
            assert await ask_raw(ours, request) == await ask_raw(hypercorn, request), request
