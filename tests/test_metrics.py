"""chat.metrics: what the room code records is what /metrics shows."""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families

from chat.metrics import ERROR_KINDS, REFUSAL_REASONS, Metrics, refusal_reason


def scrape(metrics: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of the exposition text, keyed by name and labels, as Prometheus reads it."""
    body, content_type = metrics.render()
    assert content_type == "text/plain; version=0.0.4; charset=utf-8"
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


@dataclass
class FakeHub:
    rooms: dict[str, object] = field(default_factory=dict)
    sockets: int = 0
    queued: int = 0

    @property
    def socket_count(self) -> int:
        return self.sockets

    @property
    def queued_bytes(self) -> int:
        return self.queued


@dataclass
class FakeBus:
    reconnects: int = 0


def watched() -> tuple[Metrics, FakeHub, FakeBus]:
    metrics, hub, bus = Metrics(), FakeHub(), FakeBus()
    metrics.watch(hub, bus)
    return metrics, hub, bus


def test_every_series_exists_before_any_event() -> None:
    metrics, _, _ = watched()
    samples = scrape(metrics)
    names = {name for name, _ in samples}
    for name in (
        "ephemeralchat_live_rooms",
        "ephemeralchat_connections",
        "ephemeralchat_outbox_bytes",
        "ephemeralchat_messages_received_total",
        "ephemeralchat_frames_delivered_total",
        "ephemeralchat_fanout_seconds_count",
        "ephemeralchat_slow_consumer_disconnects_total",
        "ephemeralchat_bus_reconnects_total",
        "process_resident_memory_bytes",
        "python_gc_collections_total",
    ):
        assert name in names, name
    for reason in REFUSAL_REASONS:
        value(samples, "ephemeralchat_refused_connections_total", reason=reason)
    for kind in ERROR_KINDS:
        value(samples, "ephemeralchat_errors_total", kind=kind)


def test_gauges_follow_the_hub_and_the_bus_at_scrape_time() -> None:
    metrics, hub, bus = watched()
    hub.rooms.update(a=object(), b=object())
    hub.sockets = 5
    hub.queued = 70_000
    bus.reconnects = 3
    samples = scrape(metrics)
    assert value(samples, "ephemeralchat_live_rooms") == 2
    assert value(samples, "ephemeralchat_connections") == 5
    assert value(samples, "ephemeralchat_outbox_bytes") == 70_000
    assert value(samples, "ephemeralchat_bus_reconnects_total") == 3
    hub.rooms.clear()
    hub.sockets = 0
    hub.queued = 0
    samples = scrape(metrics)
    assert value(samples, "ephemeralchat_live_rooms") == 0
    assert value(samples, "ephemeralchat_connections") == 0
    assert value(samples, "ephemeralchat_outbox_bytes") == 0


def test_each_app_counts_on_its_own() -> None:
    first, _, _ = watched()
    second, _, _ = watched()
    first.received()
    assert value(scrape(first), "ephemeralchat_messages_received_total") == 1
    assert value(scrape(second), "ephemeralchat_messages_received_total") == 0


def test_fan_out_counts_every_delivery_and_times_each_fan_out() -> None:
    metrics, _, _ = watched()
    before = scrape(metrics)
    metrics.fanned_out(20, 0.00003)
    metrics.fanned_out(1000, 0.002)
    metrics.received()
    after = scrape(metrics)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("ephemeralchat_frames_delivered_total") == 1020
    assert delta("ephemeralchat_messages_received_total") == 1
    assert delta("ephemeralchat_fanout_seconds_count") == 2
    assert abs(delta("ephemeralchat_fanout_seconds_sum") - 0.00203) < 1e-9
    # Cumulative buckets: the fast frame lands at 50 µs and above, the slow one at 2.5 ms.
    assert delta("ephemeralchat_fanout_seconds_bucket", le="2.5e-05") == 0
    assert delta("ephemeralchat_fanout_seconds_bucket", le="5e-05") == 1
    assert delta("ephemeralchat_fanout_seconds_bucket", le="0.001") == 1
    assert delta("ephemeralchat_fanout_seconds_bucket", le="0.0025") == 2
    assert delta("ephemeralchat_fanout_seconds_bucket", le="+Inf") == 2


def test_labelled_counters_keep_a_fixed_set_of_series() -> None:
    metrics, _, _ = watched()
    before = scrape(metrics)
    metrics.refused("room_full")
    metrics.refused(refusal_reason(404))
    metrics.refused(refusal_reason(403))
    # A value from outside the fixed set must not create a series of its own.
    metrics.refused("<script>")
    metrics.error("bad_frame")
    metrics.error("no such kind")
    metrics.slow_consumer()
    after = scrape(metrics)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    refused = "ephemeralchat_refused_connections_total"
    assert delta(refused, reason="room_full") == 1
    assert delta(refused, reason="room_not_found") == 1
    assert delta(refused, reason="unauthorized") == 1
    assert delta(refused, reason="other") == 1
    assert delta("ephemeralchat_errors_total", kind="bad_frame") == 1
    assert delta("ephemeralchat_errors_total", kind="other") == 1
    assert delta("ephemeralchat_slow_consumer_disconnects_total") == 1
    assert {labels for name, labels in after if name == refused} == {
        (("reason", reason),) for reason in REFUSAL_REASONS
    }


def test_build_info() -> None:
    metrics, _, _ = watched()
    metrics.describe("1.2.3", "MemoryBus")
    assert value(scrape(metrics), "ephemeralchat_build_info", version="1.2.3", backend="MemoryBus") == 1
