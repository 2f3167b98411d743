"""Fixtures every test module may use, and the suite's one deadline (see tests/README.md)."""

from __future__ import annotations

import functools
import inspect
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest
import trio

from .redis_cluster import Backing, ClusterKeys, SharedCluster
from .redis_server import open_redis_server
from .support import Server, running_app

# Real seconds an async test may run before it is cancelled and failed, whatever its clock
# says: a hung I/O test fails on its own, with its name, long before pytest-timeout
# (300 s) stops the whole run. ``@pytest.mark.deadline(seconds)`` gives one test more.
TEST_DEADLINE_SECONDS = 120.0


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "deadline(seconds): real seconds this test may take (default 120)")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        test = getattr(item, "obj", None)
        # Hypothesis tests are left to Hypothesis's own deadline and the steps' fail_after.
        if isinstance(item, pytest.Function) and inspect.iscoroutinefunction(test) and not hasattr(test, "hypothesis"):
            marker = item.get_closest_marker("deadline")
            seconds = float(marker.args[0]) if marker else TEST_DEADLINE_SECONDS
            item.obj = within_real_seconds(test, seconds)


def within_real_seconds(test: Callable[..., Awaitable[None]], seconds: float) -> Callable[..., Awaitable[None]]:
    """``test``, cancelled and failed after ``seconds`` of wall-clock time.

    Wall-clock, not ``trio.fail_after``: under ``MockClock(autojump_threshold=0)`` a test may
    rightly spend hours of virtual time in milliseconds, while a hang still takes real time.
    """

    @functools.wraps(test)
    async def run(**kwargs: Any) -> None:
        token = trio.lowlevel.current_trio_token()
        with trio.CancelScope() as scope:
            timer = threading.Timer(seconds, _cancel_soon, (token, scope))
            timer.daemon = True
            timer.start()
            try:
                await test(**kwargs)
            except BaseException as error:
                if scope.cancel_called:
                    error.add_note(f"{test.__name__} was cancelled after its deadline of {seconds:g} s")
                raise
            finally:
                timer.cancel()
        if scope.cancelled_caught:
            pytest.fail(
                f"{test.__name__} did not finish within {seconds:g} s: a wait has no deadline of its own "
                "(trio.fail_after), or the test needs @pytest.mark.deadline(seconds)"
            )

    return run


def _cancel_soon(token: trio.lowlevel.TrioToken, scope: trio.CancelScope) -> None:
    try:
        token.run_sync_soon(scope.cancel)
    except trio.RunFinishedError:
        pass  # The test finished as the timer fired.


@pytest.fixture(scope="session")
def shared_cluster() -> Iterator[SharedCluster]:
    """A Redis Cluster for the tests that do not break it, started by the first that asks."""
    cluster = SharedCluster()
    yield cluster
    cluster.close()


@pytest.fixture(params=["redis", "cluster"])
async def backing(request: pytest.FixtureRequest, shared_cluster: SharedCluster) -> AsyncIterator[Backing]:
    """What several instances share, one of each kind: one Redis, and a Redis Cluster."""
    if request.param == "cluster":
        shared = await shared_cluster.get()
        # REDIS_URL emptied: a cluster, not the one Redis the environment may name.
        yield Backing(ClusterKeys(shared), {"REDIS_CLUSTER_NODES": shared.seeds, "REDIS_URL": ""})
        return
    async with open_redis_server() as server:
        yield Backing(server, {"REDIS_URL": server.url})


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    """The app on a real Hypercorn on a loopback port, MemoryBus backend."""
    async with running_app() as running:
        yield running
