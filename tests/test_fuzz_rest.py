"""Generated REST input against a real ``ephemeralchat`` process: never a 5xx, always a documented answer.

Schemathesis reads the server's own ``/openapi.json`` and generates requests from it, valid
ones and ones that break the schema on purpose, then checks every answer against that same
document: no server error, a documented status code and content type, a body matching the
documented model. The budget is fixed and the generation derandomized, so every run sends
the same requests.
"""

from __future__ import annotations

import copy
import socket
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import hypothesis.strategies as st
import pytest
import requests
import schemathesis
import trio
from hypothesis import given
from schemathesis import GenerationMode
from schemathesis.schemas import APIOperation, BaseSchema

from .browser_support import ServerProcess, server_process
from .fuzzing import fuzz_settings
from .support import running_app

# Generous per-address limits: the fuzzer creates and joins rooms far faster than a person.
SERVER_ENV = {"ROOMS_PER_MINUTE": "1000000", "JOINS_PER_MINUTE": "1000000"}
SEED = 20_240_607
EXAMPLES = 150  # per operation and generation mode
STATEFUL_EXAMPLES = 60
HEADER_EXAMPLES = 300

CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
    "response_headers_conformance",
    # Input that breaks the schema must be refused with a 4xx, never taken.
    "negative_data_rejection",
)
# Not JSON and without input: the HTML client and the Prometheus text.
UNDOCUMENTED = {"/", "/metrics"}
ERROR_SCHEMA = {"detail": {"title": "Detail", "type": "string"}}


def schemathesis_config(base_url: str, mode: str = "all") -> schemathesis.Config:
    checks: dict[str, Any] = {"enabled": False, **{name: {"enabled": True} for name in CHECKS}}
    generation = {"mode": mode, "deterministic": True}
    return schemathesis.Config.from_dict(
        {"seed": SEED, "base-url": base_url, "generation": generation, "checks": checks}
    )


def assert_server_clean(server: ServerProcess) -> None:
    assert server.proc.poll() is None, "the server exited"
    bad = [line for line in server.output if "Traceback" in line or " ERROR " in line]
    assert not bad, "\n".join(server.output)


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    with server_process(SERVER_ENV) as running:
        yield running


@pytest.fixture(scope="module")
def http() -> Iterator[requests.Session]:
    with requests.Session() as session:
        yield session


@pytest.fixture(scope="module")
def openapi(server: ServerProcess, http: requests.Session) -> dict[str, Any]:
    response = http.get(f"{server.url}/openapi.json", timeout=10)
    assert response.status_code == 200
    document: dict[str, Any] = response.json()
    return document


@pytest.fixture(scope="module")
def rooms(server: ServerProcess, http: requests.Session) -> list[str]:
    """An open room and a password room, so generated room ids also hit rooms that exist."""
    ids = []
    for extra in ({}, {"password": "fixture-password"}):
        body = {"owner_name": "fixture", "expiry_seconds": 3600, "max_users": 1000, **extra}
        response = http.post(f"{server.url}/rooms/", json=body, timeout=10)
        assert response.status_code == 200, response.text
        ids.append(response.json()["room_id"])
    return ids


def operations(schema: BaseSchema) -> list[APIOperation]:
    found = [result.ok() for result in schema.get_all_operations()]
    return [operation for operation in found if operation.path not in UNDOCUMENTED]


def has_input(operation: APIOperation) -> bool:
    return bool(list(operation.iter_parameters()) or len(operation.body))


def test_openapi_states_every_answer(openapi: dict[str, Any]) -> None:
    """Each route documents each status it can answer, errors with the Error model."""
    expected = {
        ("post", "/rooms/"): {"200", "413", "422", "429", "503"},
        ("post", "/rooms/{room_id}/join"): {"200", "401", "404", "409", "413", "422", "429", "503"},
        ("get", "/rooms/{room_id}"): {"200", "401", "404", "422", "503"},
        ("get", "/rooms/{room_id}/messages"): {"200", "401", "404", "422", "503"},
        ("post", "/rooms/{room_id}/leave"): {"200", "404", "413", "422", "503"},
        ("post", "/rooms/{room_id}/close"): {"200", "403", "404", "413", "422", "503"},
        ("get", "/healthz"): {"200"},
        ("get", "/readyz"): {"200", "503"},
    }
    for (method, path), statuses in expected.items():
        responses = openapi["paths"][path][method]["responses"]
        assert set(responses) == statuses, (method, path, sorted(responses))
        for status, answer in responses.items():
            schema = answer["content"]["application/json"]["schema"]
            if status >= "400" and path != "/readyz":
                assert schema["properties"] == ERROR_SCHEMA and schema["required"] == ["detail"], (path, status)


def fuzz_operation(
    operation: APIOperation, mode: GenerationMode, rooms: list[str], http: requests.Session, statuses: Counter[int]
) -> int:
    """Runs the budget for one operation in one mode; the number of requests sent."""
    sent = 0

    # Valid requests name a fixture room now and then; a negative case keeps its room id,
    # which may be the very part that breaks the schema.
    @fuzz_settings(EXAMPLES)
    @given(case=operation.as_strategy(generation_mode=mode), room=st.sampled_from([None, *rooms]))
    def run(case: schemathesis.Case, room: str | None) -> None:
        nonlocal sent
        if room is not None and mode is GenerationMode.POSITIVE and case.path_parameters:
            case.path_parameters["room_id"] = room
        sent += 1
        response = case.call_and_validate(session=http, timeout=30)
        statuses[response.status_code] += 1

    run()
    return sent


def test_generated_requests_get_documented_answers(
    server: ServerProcess, openapi: dict[str, Any], rooms: list[str], http: requests.Session
) -> None:
    schema = schemathesis.openapi.from_dict(openapi, config=schemathesis_config(server.url))
    tried: Counter[str] = Counter()
    statuses: Counter[int] = Counter()
    started = time.monotonic()
    for operation in operations(schema):
        negative = [GenerationMode.NEGATIVE] if has_input(operation) else []
        for mode in [GenerationMode.POSITIVE, *negative]:
            tried[f"{operation.label} ({mode.value})"] = fuzz_operation(operation, mode, rooms, http, statuses)
    elapsed = time.monotonic() - started
    print(f"schemathesis: {sum(tried.values())} requests in {elapsed:.1f}s; statuses {dict(sorted(statuses.items()))}")
    for label, count in sorted(tried.items()):
        print(f"  {label}: {count}")
    assert all(count >= EXAMPLES // 2 for label, count in tried.items() if "/rooms" in label), tried
    assert statuses[200] and statuses[404] and statuses[422] and statuses[401], statuses
    assert_server_clean(server)


# Names as people type them: the stateless test covers the others; here the point is to get far.
PLAIN_NAME = {"type": "string", "pattern": "^[A-Za-z0-9]{1,50}$"}


def body_properties(document: dict[str, Any], path: str) -> dict[str, Any]:
    properties: dict[str, Any] = document["paths"][path]["post"]["requestBody"]["content"]["application/json"][
        "schema"
    ]["properties"]
    return properties


def linked(openapi: dict[str, Any]) -> dict[str, Any]:
    """The document with the links a client follows after create (room_id, owner_token), plain
    names and the bounds this server is configured with, so most generated calls get through."""
    document = copy.deepcopy(openapi)
    for path in ("/rooms/{room_id}/join", "/rooms/{room_id}/leave"):
        body_properties(document, path)["display_name"] = PLAIN_NAME
    path = "/rooms/"
    create = document["paths"][path]["post"]
    room_id = {"path.room_id": "$response.body#/room_id"}
    create["responses"]["200"]["links"] = {
        "JoinRoom": {"operationId": "post_join_room", "parameters": room_id},
        "RoomDetails": {"operationId": "get_room_details", "parameters": room_id},
        "LeaveRoom": {"operationId": "post_leave_room", "parameters": room_id},
        "CloseRoom": {
            "operationId": "post_close_room",
            "parameters": room_id,
            "requestBody": {"owner_token": "$response.body#/owner_token"},
        },
    }
    body = body_properties(document, path)
    body["owner_name"] = body["name"] = PLAIN_NAME
    body["expiry_seconds"] = {"type": "integer", "minimum": 1, "maximum": 86_400}
    body["max_users"] = {"type": "integer", "minimum": 1, "maximum": 1000}
    return document


def test_linked_calls_follow_a_created_room(server: ServerProcess, openapi: dict[str, Any]) -> None:
    """create -> join / details / leave / close on the room just created, with its owner token."""
    # Valid input only: the names this document narrows to are not the server's own rule, and
    # schema-breaking input is the stateless test's part.
    schema = schemathesis.openapi.from_dict(linked(openapi), config=schemathesis_config(server.url, "positive"))
    seen: Counter[tuple[str, int]] = Counter()
    base = schema.as_state_machine()

    class Chains(base):  # type: ignore[valid-type,misc]
        def after_call(self, response: schemathesis.Response, case: schemathesis.Case) -> None:
            seen[case.operation.label, response.status_code] += 1

    started = time.monotonic()
    Chains.run(settings=fuzz_settings(STATEFUL_EXAMPLES, stateful_step_count=6))
    elapsed = time.monotonic() - started
    print(f"stateful: {sum(seen.values())} requests in {elapsed:.1f}s; {dict(sorted(seen.items()))}")
    assert seen["POST /rooms/{room_id}/close", 200], seen
    assert seen["GET /rooms/{room_id}", 200] and seen["POST /rooms/{room_id}/join", 200], seen
    assert_server_clean(server)


HEADER_TEXT = st.text(
    alphabet=st.characters(min_codepoint=0x21, max_codepoint=0xFF, exclude_categories=("Cc", "Zs")), max_size=300
)
QUERY_TEXT = st.text(max_size=200)
QUERY_SIZES = st.sampled_from([0, 0, 1_000, 8_000, 20_000, 200_000])


OddRequest = tuple[str, str, dict[str, str], dict[str, str], dict[str, str] | None]


@st.composite
def odd_requests(draw: st.DrawFn, rooms: list[str]) -> OddRequest:
    # Real rooms, a well-formed id of no room, and one longer than any room id.
    room = draw(st.sampled_from([*rooms, "0" * 16, "x" * 65]))
    method, path = draw(
        st.sampled_from(
            [
                ("POST", "/rooms/"),
                ("POST", f"/rooms/{room}/join"),
                ("GET", f"/rooms/{room}"),
                ("POST", f"/rooms/{room}/leave"),
                ("POST", f"/rooms/{room}/close"),
                ("GET", "/healthz"),
            ]
        )
    )
    query = draw(st.dictionaries(QUERY_TEXT, QUERY_TEXT, max_size=4))
    if size := draw(QUERY_SIZES):
        query[draw(st.sampled_from(["password", "display_name", "token", "pad"]))] = "p" * size
    headers = draw(
        st.dictionaries(
            st.sampled_from(
                ["Authorization", "Content-Type", "Origin", "X-Forwarded-For", "X-Forwarded-Proto", "Host"]
            ),
            st.one_of(HEADER_TEXT, HEADER_TEXT.map(lambda token: "Bearer " + token)),
            max_size=4,
        )
    )
    body = draw(
        st.none()
        | st.fixed_dictionaries(
            {"display_name": st.text(max_size=60)},
            optional={"owner_name": st.text(max_size=60), "owner_token": st.text(max_size=300)},
        )
    )
    return method, path, query, headers, body


def test_odd_query_strings_and_headers_get_4xx(
    server: ServerProcess, openapi: dict[str, Any], rooms: list[str], http: requests.Session
) -> None:
    """Oversized query strings, odd tokens, names and headers: a documented answer or a 4xx."""
    tried: Counter[int] = Counter()

    @fuzz_settings(HEADER_EXAMPLES)
    @given(request=odd_requests(rooms))
    def run(request: OddRequest) -> None:
        method, path, query, headers, body = request
        # A connection of its own per request: a kept-alive one that the server's idle timeout
        # closes just as the next request goes out fails that request for no fault of the server's.
        headers = {"Connection": "close", **headers}
        response = http.request(method, server.url + path, params=query, headers=headers, json=body, timeout=30)
        tried[response.status_code] += 1
        assert response.status_code < 500, (response.status_code, response.text)
        if response.headers.get("content-type", "").startswith("application/json") and response.status_code >= 400:
            assert set(response.json()) == {"detail"} and isinstance(response.json()["detail"], str), response.text
            documented = template(openapi, method, path)
            assert str(response.status_code) in documented, (method, path, response.status_code, response.text)

    started = time.monotonic()
    run()
    print(f"odd requests: {sum(tried.values())} in {time.monotonic() - started:.1f}s; {dict(sorted(tried.items()))}")
    assert tried[431] and tried[422], tried  # oversized query strings and bad bodies both reached
    assert_server_clean(server)


def template(openapi: dict[str, Any], method: str, path: str) -> dict[str, Any]:
    """The documented responses of the operation ``path`` belongs to."""
    parts = path.strip("/").split("/")
    key = "/rooms/" if parts == ["rooms"] else "/" + "/".join("{room_id}" if i == 1 else p for i, p in enumerate(parts))
    responses: dict[str, Any] = openapi["paths"][key][method.lower()]["responses"]
    return responses


def unread_body_then_next_request(host: str, port: int) -> bytes:
    """Sends a GET's headers, reads the whole answer, then sends the body and a next request on
    the same connection: what comes back (b"" when the server closed the connection)."""
    body = b'{"display_name": "chat"}'
    head = b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body)
    with socket.create_connection((host, port), timeout=5) as sock:
        sock.sendall(head)
        answer = b""
        while not answer.endswith(b'{"status":"ok"}'):
            answer += sock.recv(65536)
        assert answer.startswith(b"HTTP/1.1 200"), answer
        try:
            sock.sendall(body + b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            return sock.recv(65536)
        except (BrokenPipeError, ConnectionResetError):
            return b""


async def test_unread_request_body_does_not_hang_the_connection() -> None:
    """A GET with a body is answered before its body arrives; the next request on that connection
    gets an answer or a closed connection, never silence. It used to hang, often but not always:
    hence several connections, from a thread so that the client does not share the server's loop."""
    async with running_app() as server:
        host, port = server.url.removeprefix("http://").rsplit(":", 1)
        for _ in range(50):
            after = await trio.to_thread.run_sync(unread_body_then_next_request, host, int(port))
            assert after == b"" or after.startswith(b"HTTP/1.1 200"), after
