"""The cyclic garbage collector, set for a server that keeps most of what it allocates.

CPython's defaults suit short programs: a young collection every 700 net allocations of
container objects, and a full one whenever the old generation has grown by a quarter. A
server keeps a connection's objects for the connection's whole life, so while sockets arrive
in bulk (a reconnect storm) its heap grows by a quarter again and again, and each full
collection walks every object the process holds, startup's (modules, classes, the app) too:
opening 10,000 members ran 8 full collections of 250-525 ms each, a pause for every socket on
the instance, 2.4-2.9 s of collecting in all (benchmarks/RESULTS.md, 2026-12-04).

Once the server is up, what startup made is frozen out of every collection, and young
collections come less often, so fewer objects are promoted before they die and the old
generation is examined (its quarter rule applied) far less often: opening the same 10,000
ran no full collection and 0.85-0.92 s of collecting.
"""

from __future__ import annotations

import gc

# Net allocations of container objects between two young collections (CPython's: 700).
YOUNG_THRESHOLD = 10_000


def settle() -> None:
    """Call once the server's startup is done, before it serves."""
    gc.collect()  # Startup's garbage goes now; only what is alive is frozen.
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, middle, old)
