"""Every Redis key and channel name the backend uses, in one place.

Room keys follow the original document. The instance keys exist only while an instance
has members: they let the survivors find the members of an instance that died.
"""

from __future__ import annotations

ROOM_META = "room:meta:"
ROOM_USERS = "room:users:"
ROOM_CHANNEL = "room:channel:"
CONN = "conn:"
# Set of the ids of instances that hold members (so a reaper need not SCAN).
INSTANCES = "instances"
# Set of the connection ids one instance serves.
INSTANCE_CONNS = "instance:conns:"
# Present while the instance heartbeats; its expiry is how the others learn it died.
INSTANCE_ALIVE = "instance:alive:"
# Fixed-window counters of the per-address limits. Not room state: each dies with its
# window (a minute), so they are left out of PATTERNS, which audits what rooms leave behind.
COUNTER = "limit:"


def room_meta(room_id: str) -> str:
    return ROOM_META + room_id


def room_users(room_id: str) -> str:
    return ROOM_USERS + room_id


def room_channel(room_id: str) -> str:
    return ROOM_CHANNEL + room_id


def room_of_channel(channel: str) -> str:
    return channel.removeprefix(ROOM_CHANNEL)


def conn(connection_id: str) -> str:
    return CONN + connection_id


def instance_conns(instance_id: str) -> str:
    return INSTANCE_CONNS + instance_id


def instance_alive(instance_id: str) -> str:
    return INSTANCE_ALIVE + instance_id


def counter(key: str) -> str:
    return COUNTER + key


# Patterns that match every key above, for operators and tests that audit leftovers.
PATTERNS = ("room:*", CONN + "*", INSTANCES, "instance:*")
