"""Room creation and joining served on plain ASGI: the REST calls that come in bursts.

A client that opens rooms opens many, and a room link handed around brings a join per person.
Through Quart, most of such a call's time went to the framework around it (request and app
contexts, werkzeug's request and response objects, hooks and signals, a nursery of two tasks per
request) and to Hypercorn writing the answer's head, body and end with a write each
(benchmarks/RESULTS.md, 2026-12-03 "REST room creation"). Here they are served straight from
Hypercorn's ASGI call, as room sockets are (chat.http), by the same calls (chat.routes.create and
join), with the same answers: status, JSON body, headers (chat.headers' security headers and
CORS, Retry-After), errors (chat.routes.error_answer), body limits (413 past MAX_BODY_BYTES,
408 when the body does not arrive within Quart's BODY_TIMEOUT). The answer goes out in one write
(chat.hypercorn_http).

Only ``POST /rooms``, ``POST /rooms/`` and ``POST /rooms/{room_id}/join`` come here; every other
request, these paths with any other method included, goes through Quart as before (and Quart
keeps the routes, for the OpenAPI document and for its test client).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

import orjson
import trio
from werkzeug.exceptions import RequestEntityTooLarge, RequestTimeout
from werkzeug.sansio.utils import get_content_length, get_host

from . import routes
from .app import ChatApp
from .headers import ALWAYS, cors
from .hypercorn_http import answer
from .origins import Origins
from .payloads import JSON

log = logging.getLogger(__name__)

# Sends a whole answer: status, headers (as ASGI has them) and body.
Answer = Callable[[int, list[tuple[bytes, bytes]], bytes], Awaitable[None]]
# The whole request body if it has all arrived already, else None (nothing read).
AtHand = Callable[[], bytes | None]

CREATE = re.compile(r"/rooms/?")
JOIN = re.compile(r"/rooms/([^/]+)/join")
# Past this much of an oversized body, the 413 goes out without waiting for the rest.
OVERSIZED_DRAIN_BYTES = 1024 * 1024


class Disconnected(Exception):
    """The client went away before its request body was complete: nobody to answer."""


class RestLane:
    def __init__(self, app: ChatApp, origins: Origins) -> None:
        self._app = app
        self._origins = origins
        self._max_body_bytes: int | None = app.config["MAX_CONTENT_LENGTH"]
        self._body_timeout: float | None = app.config["BODY_TIMEOUT"]
        self._server_name: str = app.config["SERVER_NAME"] or ""

    @staticmethod
    def takes(method: str, path: str) -> bool:
        """Whether a request (with no root path) is one of ours."""
        return method == "POST" and (CREATE.fullmatch(path) is not None or JOIN.fullmatch(path) is not None)

    async def serve(
        self,
        scope: dict[str, Any],
        receive: Any,
        send: Any,
        whole: Answer | None = None,
        at_hand: AtHand | None = None,
    ) -> bool:
        """Serve an HTTP request if it is one of ours; False (having done nothing) if not.
        ``whole``: where the server takes a whole answer in one call; ``at_hand``: the whole
        body if it has arrived, without waiting (chat.raw_http has both)."""
        path = scope["path"]
        if scope.get("root_path") or not self.takes(scope["method"], path):
            return False
        joining = JOIN.fullmatch(path)
        room_id = joining[1] if joining is not None else None
        headers = _first_values(scope["headers"])
        caller = self._caller(scope, headers, receive, at_hand)
        app = self._app
        extra: list[tuple[str, str]] = []
        try:
            if room_id is None:
                payload = await routes.create(app, caller)
            else:
                payload = await routes.join(app, room_id, caller)
            status = 200
        except Disconnected:
            return True
        except Exception as error:
            if not isinstance(error, routes.EXPECTED_ERRORS):
                log.exception("unhandled error on %s %s", scope["method"], path)
                app.metrics.error("unhandled")
            status, payload, extra = routes.error_answer(error)
        body = orjson.dumps(payload)
        # The headers as Quart's answer had them, in its order: its own, the error's, then the
        # after-request ones (chat.headers).
        named = [*extra, *ALWAYS, *cors(self._origins, _text(headers, b"origin"), "POST")]
        await (whole or partial(answer, send))(
            status,
            [(b"content-type", JSON.encode()), (b"content-length", str(len(body)).encode())]
            + [(name.lower().encode(), value.encode()) for name, value in named],
            body,
        )
        return True

    def _caller(
        self, scope: dict[str, Any], headers: dict[bytes, bytes], receive: Any, at_hand: AtHand | None
    ) -> routes.Caller:
        scheme = scope["scheme"]
        host_header = _text(headers, b"host")
        if host_header is None and scope["http_version"] < "1.1":
            host_header = self._server_name  # as Quart does for HTTP/1.0
        declared = get_content_length(_text(headers, b"content-length"), _text(headers, b"transfer-encoding"))

        async def read_body() -> bytes:
            return await self._read_body(receive, declared, at_hand)

        return routes.Caller(
            address=(scope.get("client") or ("<local>",))[0],
            scheme=scheme,
            host=get_host(scheme, host_header, scope.get("server")),
            authorization=_text(headers, b"authorization") or "",
            read_body=read_body,
        )

    async def _read_body(self, receive: Any, declared: int | None, at_hand: AtHand | None) -> bytes:
        """The whole body, within the limits Quart applies: RequestEntityTooLarge past
        MAX_CONTENT_LENGTH (declared or received), RequestTimeout after BODY_TIMEOUT (a body
        already at hand is taken without waiting, so without that bound)."""
        most = self._max_body_bytes
        oversized = declared is not None and most is not None and declared > most
        if not oversized and at_hand is not None and (body := at_hand()) is not None:
            if most is not None and len(body) > most:
                raise RequestEntityTooLarge()
            return body
        chunks: list[bytes] = []
        size = 0
        with trio.move_on_after(float("inf") if self._body_timeout is None else self._body_timeout):
            if oversized:
                await _drain(receive)
                raise RequestEntityTooLarge()
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    raise Disconnected()
                chunk = message.get("body", b"")
                if chunk:
                    chunks.append(chunk)
                    size += len(chunk)
                    if most is not None and size > most:
                        if message.get("more_body", False):
                            await _drain(receive)
                        raise RequestEntityTooLarge()
                if not message.get("more_body", False):
                    return b"".join(chunks)
        raise RequestTimeout()


async def _drain(receive: Any) -> None:
    """Read and drop the rest of an oversized body, up to OVERSIZED_DRAIN_BYTES, before the 413.

    Quart read bodies in a task of their own while the answer was made, so a client still
    sending got the 413 once it was done, rather than a reset mid-send when the connection (not
    reusable after an unread body) closes with its data unread."""
    dropped = 0
    while dropped <= OVERSIZED_DRAIN_BYTES:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise Disconnected()
        dropped += len(message.get("body", b""))
        if not message.get("more_body", False):
            return


def _first_values(raw: list[tuple[bytes, bytes]]) -> dict[bytes, bytes]:
    """Each header's first value by its name. Names come lower-case, as h11, h2 and
    chat.plain_post give them; only the few headers read are decoded (``_text``)."""
    return dict(reversed(raw))


def _text(headers: dict[bytes, bytes], name: bytes) -> str | None:
    """A header's first value, decoded as Quart decodes them (latin-1)."""
    value = headers.get(name)
    return None if value is None else value.decode("latin1")
