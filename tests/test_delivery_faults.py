"""Delivery under faults: real instances, real Redis, nginx; clients dropped, instances
killed or drained, Redis restarted empty. A client that resumes as docs/protocol.md says
(tests/resuming.py) ends up holding every message exactly once, in the room's order.
"""

from __future__ import annotations

import heapq
import os
import random
import signal
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial

import httpx
import pytest
import trio

from chat import protocol
from chat.bus import keys
from chat.bus.redis import CLIENT_NAME_PREFIX

from .redis_server import RedisServer, open_redis_server, wait_until
from .resuming import DROPS, Drop, Progress, ResumingClient
from .support import create_room, join_room
from .test_nginx import deployment
from .test_scaling import Cluster, _all_ready, cluster

# Every message of a schedule stays in history and in the resend window, so a client away
# for a while still gets exactly what it missed (eviction is test_delivery's business).
HISTORY = "1000"
CLIENTS = 6
MESSAGES_EACH = 30
FAULTS = 16
# Acknowledged messages (room-wide) a dropped client may stay away for.
AWAY_MOST = 25
# Unacknowledged messages a client may have in flight.
WINDOW = 4
SCHEDULES = 5
SCHEDULE_SECONDS = 30


@dataclass(frozen=True, order=True)
class Fault:
    """At ``at`` acknowledged messages, drop ``client`` (``how``); it resumes on instance
    ``back_on`` once ``away`` more have been acknowledged."""

    at: int
    client: int
    how: Drop
    away: int
    back_on: int


def schedule(rng: random.Random, clients: int, total: int, faults: int) -> list[Fault]:
    """Faults that never strike a client while it is still away from the previous one."""
    back_at = [0] * clients
    out: list[Fault] = []
    for at in sorted(rng.randrange(total - AWAY_MOST) for _ in range(faults)):
        free = [c for c in range(clients) if back_at[c] <= at]
        if not free:
            continue
        client, away = rng.choice(free), rng.choice([0, 0, rng.randint(1, AWAY_MOST)])
        back_at[client] = at + away + 1
        out.append(Fault(at, client, rng.choice(DROPS), away, rng.randrange(2)))
    return out


def acknowledged(clients: list[ResumingClient]) -> int:
    return sum(len(c.acks) for c in clients)


def stalled(clients: list[ResumingClient], each: int) -> bool:
    """No acknowledgement can come until someone held away comes back."""
    return not any(not c.held and (c.pending or len(c.sent) < each) for c in clients)


async def run_faults(clients: list[ResumingClient], faults: list[Fault], instances: list[str], each: int) -> None:
    """Drops and comebacks, in the order of the schedule, as the room's messages progress."""
    progress = clients[0].progress
    # (acknowledged messages, tie-break, fault to strike or client to bring back, instance)
    events: list[tuple[int, int, Fault | ResumingClient, str]] = [
        (fault.at, 2 * n, fault, "") for n, fault in enumerate(faults)
    ]
    heapq.heapify(events)
    total = len(clients) * each

    def finished() -> bool:
        # Everyone has everything: what the schedule still holds has nothing left to lose,
        # and the clients are stopping (one waited for would never connect again).
        return all(c.done(total) for c in clients)

    while events:
        at, n, what, instance = heapq.heappop(events)
        await progress.until(partial(due, clients, at, each), within=SCHEDULE_SECONDS)
        if isinstance(what, ResumingClient):
            what.release(instance)
            continue
        client = clients[what.client]
        await progress.until(lambda c=client: c.connected or finished(), within=SCHEDULE_SECONDS)
        if finished():
            return
        client.hold()
        assert await client.drop(what.how), client.name
        heapq.heappush(events, (at + what.away, n + 1, client, instances[what.back_on]))


def due(clients: list[ResumingClient], at: int, each: int) -> bool:
    return acknowledged(clients) >= at or stalled(clients, each)


def check_delivery(clients: list[ResumingClient], each: int) -> None:
    """Every client holds the room's whole stream: 1..total, no gap, no duplicate delivered,
    each sender's messages in its order, each acknowledged at its offset."""
    total = len(clients) * each
    reference = clients[0].texts()
    for c in clients:
        assert (c.duplicates, c.gaps, c.unrecovered, c.errors) == ([], [], 0, []), (c.name, c.sessions)
        assert c.offsets() == list(range(1, total + 1)), c.name
        assert c.texts() == reference, c.name
    offset_of = {m["text"]: m["offset"] for m in clients[0].messages}
    assert len(offset_of) == total
    for c in clients:
        sent = [text for _, text in c.sent]
        assert sent == [f"{c.name} {i}" for i in range(each)]
        assert [offset_of[text] for text in sent] == sorted(offset_of[text] for text in sent), c.name
        for client_id, text in c.sent:
            assert set(c.acks[client_id]) == {offset_of[text]}, (c.name, text, c.acks[client_id])


async def members(
    http: httpx.AsyncClient, room_id: str, names: list[str], progress: Progress
) -> list[ResumingClient]:
    return [ResumingClient(name, (await join_room(http, room_id, name))["ws_url"], progress) for name in names]


async def converse(
    clients: list[ResumingClient],
    each: int,
    during: Callable[[], Awaitable[None]] | None = None,
    *,
    between: Callable[[], Awaitable[None]] | None = None,
    within: float = SCHEDULE_SECONDS,
) -> None:
    """Every client enters (one at a time, ``between`` run after each), then all send
    ``each`` messages while ``during`` runs; returns once every client has every message
    and every ack, with the sockets closed."""
    total = len(clients) * each
    try:
        await _converse(clients, each, during, between, within)
    except BaseException:
        # Shown with the failure: where each client stands.
        for c in clients:
            print(c.standing(total))
        raise


async def _converse(
    clients: list[ResumingClient],
    each: int,
    during: Callable[[], Awaitable[None]] | None,
    between: Callable[[], Awaitable[None]] | None,
    within: float,
) -> None:
    progress = clients[0].progress
    total = len(clients) * each
    with trio.fail_after(within + 10):
        async with trio.open_nursery() as nursery:
            for c in clients:
                nursery.start_soon(c.keep_connected)
                await progress.until(lambda c=c: c.connected, within=10)
                if between is not None:
                    await between()
            for c in clients:
                nursery.start_soon(c.say_all, [f"{c.name} {i}" for i in range(each)], WINDOW)
            if during is not None:
                nursery.start_soon(during)
            await progress.until(lambda: all(c.done(total) for c in clients), within=within)
            for c in clients:
                await c.stop()


def seeds() -> list[int]:
    """``FAULT_SEED`` (to replay a run) or a fresh one, and the ones after it."""
    first = int(os.environ.get("FAULT_SEED") or random.SystemRandom().randrange(2**32))
    return [first + i for i in range(SCHEDULES)]


def resent(clients: list[ResumingClient]) -> tuple[int, int]:
    """Messages resent after a reconnect, and how many of them the room already had (posted
    before the drop, their ack lost with it): those the server must not post again."""
    offset_of = {m["text"]: m["offset"] for m in clients[0].messages}
    texts = {client_id: text for c in clients for client_id, text in c.sent}
    again = [(texts[client_id], at) for c in clients for client_id, at in c.resent]
    return len(again), sum(offset_of[text] <= at for text, at in again)


def closes(clients: list[ResumingClient]) -> dict[str, int]:
    """How the clients' sessions ended, by close code and reason."""
    return dict(Counter(f"{s.close[0]} {s.close[1]}".strip() for c in clients for s in c.sessions if s.close))


def instance_urls(c: Cluster) -> list[str]:
    return [instance.url for instance in c.instances]


@pytest.mark.deadline(SCHEDULES * SCHEDULE_SECONDS + 60)
async def test_generated_drop_and_resume_schedules_lose_nothing() -> None:
    async with cluster(env={"HISTORY_SIZE": HISTORY}) as c:
        instances = instance_urls(c)
        async with c.instances[0].server.client() as http:
            for seed in seeds():
                rng = random.Random(seed)
                total = CLIENTS * MESSAGES_EACH
                faults = schedule(rng, CLIENTS, total, FAULTS)
                room = await create_room(http, owner_name="Olga", max_users=CLIENTS * 2)
                progress = Progress()
                clients = await members(http, room["room_id"], [f"c{i}" for i in range(CLIENTS)], progress)
                for i, client in enumerate(clients):
                    client.instance = instances[i % 2]
                print(f"seed {seed}: {len(faults)} drops", flush=True)
                started = trio.current_time()
                await converse(clients, MESSAGES_EACH, partial(run_faults, clients, faults, instances, MESSAGES_EACH))
                took = trio.current_time() - started
                resumes = [s.hello for client in clients for s in client.sessions[1:] if s.hello]
                replayed = sum(bool(m.get("replayed")) for client in clients for m in client.messages)
                print(
                    f"seed {seed}: {CLIENTS} clients x {MESSAGES_EACH} messages over 2 instances, "
                    f"{len(faults)} drops ({sum(f.how == 'reset' for f in faults)} resets), "
                    f"{len(resumes)} resumes, {replayed} messages replayed, "
                    f"(resent, already posted) {resent(clients)}, "
                    f"{took:.2f} s; sessions ended {closes(clients)}"
                )
                assert all(hello["recovered"] is True for hello in resumes), seed
                check_delivery(clients, MESSAGES_EACH)


KILL_MESSAGES_EACH = 40


async def test_members_of_a_killed_instance_resume_on_the_other_with_nothing_lost() -> None:
    async with cluster(env={"HISTORY_SIZE": HISTORY}) as c:
        a, b = c.instances
        async with a.server.client() as http:
            room = await create_room(http, owner_name="Olga", max_users=10)
            progress = Progress()
            clients = await members(http, room["room_id"], ["ann", "bob", "cid", "dee"], progress)
            on_b = clients[:2]
            for client in clients:
                client.instance = (b if client in on_b else a).url
            total = len(clients) * KILL_MESSAGES_EACH
            in_flight: list[int] = []

            async def kill_b() -> None:
                await progress.until(lambda: acknowledged(clients) >= total // 3, within=SCHEDULE_SECONDS)
                for client in on_b:
                    client.hold()
                b.proc.kill()  # SIGKILL: no close frame, no goodbye, whatever B was doing.
                in_flight.extend(len(client.pending) for client in on_b)
                await progress.until(lambda: not any(client.connected for client in on_b), within=10)
                for client in on_b:
                    client.release(a.url)

            await converse(clients, KILL_MESSAGES_EACH, kill_b)
        for client in on_b:
            killed, resumed = client.sessions[0], client.sessions[-1]
            assert killed.close is not None and killed.close[0] == 1006, killed
            assert resumed.url.startswith(a.server.ws) and resumed.hello["recovered"] is True, resumed
        check_delivery(clients, KILL_MESSAGES_EACH)
        print(
            f"kill -9 of B after {total // 3} of {total} messages ({len(clients)} members, 2 on B): "
            f"{sum(in_flight)} unacknowledged at the kill; (resent, already posted) {resent(clients)}"
        )
    assert b.proc.returncode == -signal.SIGKILL


@dataclass
class Restart:
    """A room's members across a Redis restarted empty: Ann resumed after it, Bob stayed
    connected through it, Cid entered after it; the epoch before."""

    ann: ResumingClient
    bob: ResumingClient
    cid: ResumingClient
    epoch_before: str
    said_after: set[str]


async def chat_through_an_empty_restart() -> Restart:
    """Ann (on A) and Bob (on B) chat; Redis restarts empty; once both instances are ready
    again Ann resumes on B, Cid enters, and all three speak."""
    async with open_redis_server(private=True) as redis, cluster(redis=redis) as c:
        a, b = c.instances
        async with a.server.client() as http:
            room = await create_room(http, owner_name="Olga")
            progress = Progress()
            ann, bob, cid = clients = await members(http, room["room_id"], ["ann", "bob", "cid"], progress)
        ann.instance, bob.instance, cid.instance = a.url, b.url, a.url
        async with trio.open_nursery() as nursery:
            for client in (ann, bob):
                nursery.start_soon(client.keep_connected)
            await progress.until(lambda: ann.connected and bob.connected, within=10)
            for client in (ann, bob):
                await client.say_all([f"{client.name} {i}" for i in range(5)], WINDOW)
            await progress.until(lambda: ann.done(10) and bob.done(10), within=10)
            assert ann.epoch is not None
            restart = Restart(ann, bob, cid, ann.epoch, set())

            # Ann is away through the restart (she hears of it from her hello); Bob stays
            # connected through it (he hears of it from the room).
            ann.hold()
            assert await ann.drop("reset")
            await redis.stop()
            await wait_until(lambda: _all_ready(c.instances, False), 10)
            await redis.start()  # The same port, empty: no room history, no epoch.
            await wait_until(lambda: _all_ready(c.instances, True), 15)
            ann.release(b.url)
            nursery.start_soon(cid.keep_connected)
            await progress.until(lambda: len(ann.sessions) == 2 and ann.connected and cid.connected, within=10)
            for client in clients:
                text = f"{client.name} after the restart"
                restart.said_after.add(text)
                await client.say(text)

            def heard(client: ResumingClient) -> set[str]:
                """Every text the server delivered, kept or dropped as already seen."""
                return {m["text"] for m in client.messages} | {frame["text"] for _, _, frame in client.duplicates}

            try:
                await progress.until(lambda: all(restart.said_after <= heard(c) for c in clients), within=10)
            except trio.TooSlowError:
                raise AssertionError(
                    [(c.name, heard(c), c.pending, c.errors, c.acks, c.sessions[-1]) for c in clients]
                ) from None
            for client in clients:
                await client.stop()
    return restart


async def test_redis_restarted_empty_tells_a_resuming_member_recovered_false() -> None:
    restart = await chat_through_an_empty_restart()
    ann, cid = restart.ann, restart.cid
    hello = ann.sessions[-1].hello
    assert hello["recovered"] is False and ann.unrecovered == 1, hello
    assert hello["epoch"] != restart.epoch_before and hello["offset"] == 0, hello
    # Live chat goes on, in the room's new epoch, for the member who resumed and a newcomer.
    assert cid.epoch == ann.epoch
    for client in (ann, cid):
        assert (client.duplicates, client.gaps, client.errors) == ([], [], []), client.name
        assert set(client.texts()[-3:]) == restart.said_after and client.offsets()[-3:] == [1, 2, 3]


async def test_a_member_connected_through_an_empty_restart_can_tell_new_messages_from_seen_ones() -> None:
    restart = await chat_through_an_empty_restart()
    bob = restart.bob
    assert bob.duplicates == [] and restart.said_after <= set(bob.texts())
    # He was told where the room stands now, and that some messages may be missing.
    assert bob.unrecovered == 1 and bob.epoch == restart.ann.epoch != restart.epoch_before


DRAIN_MESSAGES_EACH = 40


async def test_members_of_a_draining_instance_resume_through_nginx_with_nothing_lost() -> None:
    async with (
        deployment(env={"HISTORY_SIZE": HISTORY}) as (nginx, servers),
        httpx.AsyncClient(base_url=nginx.url, timeout=10) as http,
    ):
        room = await create_room(http, owner_name="Olga", max_users=10)
        progress = Progress()
        clients = await members(http, room["room_id"], ["ann", "bob", "cid", "dee"], progress)
        total = len(clients) * DRAIN_MESSAGES_EACH
        in_flight: list[int] = []

        async def drain_first_instance() -> None:
            await progress.until(lambda: acknowledged(clients) >= total // 3, within=SCHEDULE_SECONDS)
            in_flight.append(sum(len(client.pending) for client in clients))
            servers[0].proc.send_signal(signal.SIGTERM)
            with trio.fail_after(15):
                await servers[0].proc.wait()

        async def spread() -> None:
            # A request between two sockets: least_conn then spreads them over both instances.
            assert (await http.get(f"/rooms/{room['room_id']}")).status_code == 200

        await converse(clients, DRAIN_MESSAGES_EACH, drain_first_instance, between=spread)
    drained = [client for client in clients if any(s.close and s.close[0] == 1001 for s in client.sessions)]
    assert drained and len(drained) < len(clients), [client.sessions for client in clients]
    for client in drained:
        assert protocol.SHUTTING_DOWN in client.notices, client.notices
        assert client.sessions[-1].hello["recovered"] is True, client.sessions
    check_delivery(clients, DRAIN_MESSAGES_EACH)
    print(
        f"SIGTERM drain behind nginx after {total // 3} of {total} messages: {len(drained)} of {len(clients)} "
        f"members drained, {in_flight[0]} unacknowledged at the signal; (resent, already posted) {resent(clients)}; "
        f"sessions ended {closes(clients)}"
    )
    assert servers[0].proc.returncode == 0


async def subscriber_connection(redis: RedisServer, room_id: str, connection_id: str) -> str:
    """The Redis client id of the pub/sub connection of the instance holding this member."""
    instance = await redis.command("HGET", keys.conn(room_id, connection_id), "instance")
    listing: str = await redis.command("CLIENT", "LIST")
    name = f" name={CLIENT_NAME_PREFIX}{instance} "
    [line] = [line for line in listing.splitlines() if name in line and " sub=1 " in line]
    return line.split()[0].removeprefix("id=")


async def test_members_of_an_instance_that_lost_its_subscription_miss_nothing() -> None:
    async with open_redis_server(private=True) as redis, cluster(redis=redis) as c:
        a, b = c.instances
        async with a.server.client() as http:
            room = await create_room(http, owner_name="Olga")
            progress = Progress()
            ann, bob = clients = await members(http, room["room_id"], ["ann", "bob"], progress)
        ann.instance, bob.instance = a.url, b.url
        async with trio.open_nursery() as nursery:
            for client in clients:
                nursery.start_soon(client.keep_connected)
            await progress.until(lambda: ann.connected and bob.connected, within=10)
            await bob.say_all([f"bob {i}" for i in range(5)], WINDOW)
            await progress.until(lambda: ann.last == bob.last == 5, within=10)
            # A's one pub/sub connection goes (a network blip, a proxy, a Redis failover):
            # A reconnects at once while Bob, on B, goes on talking.
            subscriber = await subscriber_connection(redis, room["room_id"], ann.sessions[0].hello["connection_id"])
            await redis.command("CLIENT", "KILL", "ID", subscriber)
            await bob.say_all([f"bob {i}" for i in range(5, 25)], 20)
            await progress.until(lambda: bob.done(25), within=10)
            await wait_until(lambda: _all_ready(c.instances, True), 10)
            await bob.say("last")
            with trio.move_on_after(5):
                await progress.until(lambda: ann.last >= 26, within=5)
            for client in clients:
                await client.stop()
        print(f"after its subscription was cut, A's member got offsets {ann.offsets()[5:]}; gaps {ann.gaps}")
        assert ann.gaps == [] and ann.offsets() == list(range(1, 27))
