"""Every Redis key and channel name the backend uses, in one place.

Every key of one room, and its channel, carries the room's id as a hash tag
(``room:{<id>}:...``), its members' records included, so on a Redis Cluster a room's keys
share one slot and a room's script runs on one shard; the channel follows, so sharded
pub/sub carries it without moving anything. The instance keys exist only while an instance
has members: they let the survivors find the members of an instance that died. Each
instance's keys carry its id as their own hash tag (``instance:{<id>}:...``), so instances
spread over the shards; no room script touches them (see ``instances``).
"""

from __future__ import annotations

ROOM = "room:{"
# After the room's id; the hash tag closes with the first "}" that follows ROOM.
META, USERS, CHANNEL = "}:meta", "}:users", "}:channel"
# The room's position (epoch, newest offset, bytes stored), its stored messages (a
# stream), the senders' dedupe keys (a sorted set, scored by offset), and the final
# system message of a room that ended, kept a short while for latecomers.
POS, LOG, DEDUPE, ENDED = "}:pos", "}:log", "}:dedupe", "}:ended"
# Seats whose socket was lost, held for a resume: connection id -> "<sender> <hold id>".
DROPPED = "}:dropped"
# Members' last-read offsets: connection id -> offset.
READ = "}:read"
# Display names taken: the name as compared (chat.room_rules.name_key) -> its sender; and
# the senders the owner removed, refused for the room's life.
NAMES, REVOKED = "}:names", "}:revoked"
# A member's record (a hash), one per connection, under its room's tag.
CONN = "}:conn:"
# Set of the ids of instances that hold members (so a reaper need not SCAN).
INSTANCES = "instances"
INSTANCE = "instance:{"
# The connections one instance serves: a hash, connection id -> room id.
INSTANCE_CONNS = "}:conns"
# Present while the instance heartbeats; its expiry is how the others learn it died.
INSTANCE_ALIVE = "}:alive"
# Fixed-window counters of the per-address limits. Not room state: each dies with its
# window (a minute), so they are left out of PATTERNS, which audits what rooms leave behind.
COUNTER = "limit:"


def _room_key(room_id: str, suffix: str) -> str:
    return ROOM + room_id + suffix


def room_meta(room_id: str) -> str:
    return _room_key(room_id, META)


def room_users(room_id: str) -> str:
    return _room_key(room_id, USERS)


def room_pos(room_id: str) -> str:
    return _room_key(room_id, POS)


def room_log(room_id: str) -> str:
    return _room_key(room_id, LOG)


def room_dedupe(room_id: str) -> str:
    return _room_key(room_id, DEDUPE)


def room_ended(room_id: str) -> str:
    return _room_key(room_id, ENDED)


def room_dropped(room_id: str) -> str:
    return _room_key(room_id, DROPPED)


def room_read(room_id: str) -> str:
    return _room_key(room_id, READ)


def room_names(room_id: str) -> str:
    return _room_key(room_id, NAMES)


def room_revoked(room_id: str) -> str:
    return _room_key(room_id, REVOKED)


def room_history(room_id: str) -> list[str]:
    """The keys a room's messages live in, as POST and HISTORY take them (after meta)."""
    return [room_pos(room_id), room_log(room_id), room_dedupe(room_id)]


def room_channel(room_id: str) -> str:
    return _room_key(room_id, CHANNEL)


def room_of_channel(channel: str) -> str:
    return channel.removeprefix(ROOM).removesuffix(CHANNEL)


def conn_prefix(room_id: str) -> str:
    """What a room's scripts put a connection id after to name its member's record."""
    return _room_key(room_id, CONN)


def conn(room_id: str, connection_id: str) -> str:
    return conn_prefix(room_id) + connection_id


def instance_conns(instance_id: str) -> str:
    return INSTANCE + instance_id + INSTANCE_CONNS


def instance_alive(instance_id: str) -> str:
    return INSTANCE + instance_id + INSTANCE_ALIVE


def counter(key: str) -> str:
    return COUNTER + key


# Patterns that match every key above, for operators and tests that audit leftovers.
PATTERNS = ("room:*", INSTANCES, "instance:*")
