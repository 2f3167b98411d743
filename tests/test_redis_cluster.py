"""The cluster fixture itself: it forms, fails over and moves slots as a real cluster does."""

from __future__ import annotations

import pytest

from .redis_cluster import MASTERS, open_redis_cluster


@pytest.mark.deadline(60)
async def test_cluster_forms_fails_over_and_moves_a_slot() -> None:
    async with open_redis_cluster() as cluster:
        masters = await cluster.masters()
        assert len(masters) == MASTERS
        owner = await cluster.master_of("room:{abc}:meta")
        await owner.command("SET", "room:{abc}:meta", "kept")
        slot = int(await owner.command("CLUSTER", "KEYSLOT", "room:{abc}:meta"))

        target = next(m for m in masters if m is not owner)
        await cluster.move_slot(slot, target)
        assert await cluster.master_of("room:{abc}:meta") is target
        assert await target.command("GET", "room:{abc}:meta") == "kept"

        cluster.kill(target)
        await cluster.until_promoted(target)
        promoted = await cluster.master_of("room:{abc}:meta")
        assert promoted is not target and promoted.alive
        assert len(await cluster.masters()) == MASTERS
