"""Prometheus metrics of one instance, served at ``/metrics``.

Each app has its own ``Metrics`` (its own registry), handed to the code that records: the
room code calls its small methods, none of which blocks or allocates much. The fan-out path
calls :meth:`Metrics.fanned_out` once per fan-out (one frame, or a backlog of them joined)
with the number of deliveries it made, never once per member, so a 1000-member room costs
one counter increment and one histogram observation per fan-out.

What is live (rooms, sockets) and the backend's reconnections are read from the Hub and the
bus when Prometheus scrapes (:meth:`Metrics.watch`), so they cannot drift from the truth when
a code path forgets to count.

Labels come from fixed sets (``REFUSAL_REASONS``, ``ERROR_KINDS``): anything else is
counted as ``other``, so no input of a client can grow the number of series.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Protocol

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily
from prometheus_client.gc_collector import GCCollector
from prometheus_client.metrics_core import Metric
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

NAMESPACE = "ephemeralchat"
# generate_latest() writes the classic text format; newer prometheus-client releases name
# a later version in CONTENT_TYPE_LATEST, which older Prometheus servers refuse to parse.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# Why a connection was refused at the WebSocket (it is accepted, then closed with a code).
REFUSAL_REASONS = (
    "room_not_found",  # 1008: unknown, closed or expired room
    "room_full",  # 1008: max_users reached
    "unauthorized",  # 1008: password room without a valid token, bad or expired token
    "invalid_name",  # 1008: display name too long or with forbidden characters
    "name_taken",  # 1008: another member has the name (or it is the owner's)
    "removed",  # 1008: the owner removed this member's token
    "invalid_resume",  # 1008: a since= that is no offset, or an overlong epoch=
    "draining",  # 1013: the instance is shutting down
    "backend_unavailable",  # 1013: Redis is unreachable
    "origin",  # 1008: a browser page from an origin that is not allowed
    "capacity",  # 1013: the instance holds its most connections or live rooms
    "other",
)

# Faults worth a graph; each is also logged where it happens.
ERROR_KINDS = (
    "bad_frame",  # a client sent a frame the server could not take (error frame back)
    "undeliverable",  # a message could not be published (error frame back to its sender)
    "unhandled",  # a REST request ended in a 500
    "room_failed",  # a room's nursery ended without an orderly close
    "departure_failed",  # presence clean-up after a socket closed failed
    "rate_limited",  # a message over the connection's rate (error frame back)
    "flood",  # a connection far over its rate, closed with 1008
    "other",
)

# Handing one frame to every local outbox is a loop of send_nowait calls: microseconds
# for small rooms, up to a millisecond or so for the largest. The buckets cover that span
# and a few slow outliers (a stalled event loop shows up in the top buckets).
FANOUT_BUCKETS = (0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1)

# The *_created series double the output and no dashboard reads them. Process-wide,
# which suits a server that exports nothing else.
disable_created_metrics()


class LiveSide(Protocol):
    """What :meth:`Metrics.watch` reads: the Hub of ``chat.nursery``, without importing it."""

    rooms: dict[str, object]

    @property
    def socket_count(self) -> int: ...

    @property
    def queued_bytes(self) -> int: ...


class Reconnecting(Protocol):
    """What :meth:`Metrics.watch` reads of the bus."""

    @property
    def reconnects(self) -> int: ...


class _Reconnects:
    """The bus's reconnection count as a counter, read at scrape time."""

    def __init__(self, count: Callable[[], int]) -> None:
        self._count = count

    def collect(self) -> Iterable[Metric]:
        yield CounterMetricFamily(
            f"{NAMESPACE}_bus_reconnects",
            "Times the connection to the shared backend was re-established after a loss",
            value=self._count(),
        )


class Metrics:
    """The metrics of one app, in a registry of its own: what ``/metrics`` shows is exactly
    what is defined here, whatever else the process imports or however many apps it builds."""

    def __init__(self) -> None:
        self.registry = registry = CollectorRegistry()
        ProcessCollector(registry=registry)
        PlatformCollector(registry=registry)
        GCCollector(registry=registry)  # Collections per generation (chat.collector).
        self._info = Info("build", "Version and backend of this instance", namespace=NAMESPACE, registry=registry)
        self._live_rooms = Gauge(
            "live_rooms",
            "Rooms with at least one member connected to this instance",
            namespace=NAMESPACE,
            registry=registry,
        )
        self._connections = Gauge(
            "connections", "Open WebSocket connections on this instance", namespace=NAMESPACE, registry=registry
        )
        self._outbox_bytes = Gauge(
            "outbox_bytes",
            "Bytes queued for this instance's sockets and not yet written (at most OUTBOX_TOTAL_BYTES)",
            namespace=NAMESPACE,
            registry=registry,
        )
        self._received = Counter(
            "messages_received",
            "Chat messages taken from this instance's sockets",
            namespace=NAMESPACE,
            registry=registry,
        ).inc
        # Bound once: the per-fan-out call then costs two method calls and no attribute lookups.
        self._deliver = Counter(
            "frames_delivered",
            "Frames (messages, presence, system) queued to this instance's sockets, one per member reached",
            namespace=NAMESPACE,
            registry=registry,
        ).inc
        self._time_fanout = Histogram(
            "fanout_seconds",
            "Time to hand one room frame (or a backlog of them, joined) to every local member's outbox",
            namespace=NAMESPACE,
            registry=registry,
            buckets=FANOUT_BUCKETS,
        ).observe
        self._slow_consumers = Counter(
            "slow_consumer_disconnects",
            "Connections closed as too slow: their outbox was full (frames or bytes), or the fullest of an instance"
            " past OUTBOX_TOTAL_BYTES",
            namespace=NAMESPACE,
            registry=registry,
        ).inc
        refused = Counter(
            "refused_connections",
            "WebSocket connections refused, by reason",
            ["reason"],
            namespace=NAMESPACE,
            registry=registry,
        )
        errors = Counter("errors", "Errors, by kind", ["kind"], namespace=NAMESPACE, registry=registry)
        self._refused = _children(refused, "reason", REFUSAL_REASONS)
        self._errors = _children(errors, "kind", ERROR_KINDS)

    def watch(self, hub: LiveSide, bus: Reconnecting) -> None:
        """Read the live-rooms, connections and queued-bytes gauges from ``hub``, and the
        reconnections from ``bus``, at scrape time."""
        self._live_rooms.set_function(lambda: len(hub.rooms))
        self._connections.set_function(lambda: hub.socket_count)
        self._outbox_bytes.set_function(lambda: hub.queued_bytes)
        self.registry.register(_Reconnects(lambda: bus.reconnects))

    def describe(self, version: str, backend: str) -> None:
        """Record what this instance runs, e.g. ``describe(__version__, "RedisBus")``."""
        self._info.info({"version": version, "backend": backend})

    def received(self) -> None:
        """One chat message was taken from a local socket and handed to the bus."""
        self._received()

    def fanned_out(self, deliveries: int, seconds: float) -> None:
        """One fan-out made ``deliveries`` (frames x members reached) in ``seconds``."""
        self._deliver(deliveries)
        self._time_fanout(seconds)

    def slow_consumer(self) -> None:
        """A member was closed as too slow (its outbox full, or the instance's)."""
        self._slow_consumers()

    def refused(self, reason: str) -> None:
        """A WebSocket was refused; ``reason`` is one of ``REFUSAL_REASONS``."""
        (self._refused.get(reason) or self._refused["other"]).inc()

    def error(self, kind: str) -> None:
        """An error of ``kind`` (one of ``ERROR_KINDS``) happened."""
        (self._errors.get(kind) or self._errors["other"]).inc()

    def render(self) -> tuple[bytes, str]:
        """The body and content type of a ``/metrics`` answer (Prometheus text format)."""
        return generate_latest(self.registry), CONTENT_TYPE


def _children(metric: Counter, label: str, values: tuple[str, ...]) -> dict[str, Counter]:
    # Created up front: every series exists (at 0) from the first scrape, so rate() and
    # alerts work before the first event, and the calls below skip the label lookup.
    return {value: metric.labels(**{label: value}) for value in values}


def refusal_reason(status: int) -> str:
    """The refusal reason for a room error's HTTP status (``RoomError.status``)."""
    return {404: "room_not_found", 409: "room_full", 401: "unauthorized", 403: "unauthorized"}.get(status, "other")
