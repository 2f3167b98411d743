"""chat.collector: once the server is up, what startup made is out of every collection."""

from __future__ import annotations

import gc

from chat import collector


def test_settling_takes_what_is_alive_out_of_collections_and_spaces_young_ones() -> None:
    threshold = gc.get_threshold()
    alive = ["made at startup"]  # A list: always tracked by the collector, as a dict may not be.
    try:
        collector.settle()
        # A collection walks the objects of its generations; the frozen ones are in none.
        assert not any(candidate is alive for candidate in gc.get_objects())
        assert gc.get_freeze_count() > 0
        assert gc.get_threshold() == (collector.YOUNG_THRESHOLD, *threshold[1:])
        made_later = ["made while serving"]
        assert any(candidate is made_later for candidate in gc.get_objects())
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)
    assert any(candidate is alive for candidate in gc.get_objects())
