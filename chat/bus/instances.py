"""Which instance serves which member: the index that lets survivors reap a dead instance.

Each instance with members keeps a hash of them (connection id -> room id) and a heartbeat
key, both under its own hash tag, and its id in one registry set. None of it is a room's:
room scripts never touch it (on a Redis Cluster those keys live on other shards), so it is
kept by calls of its own, next to the room scripts' calls. The order keeps a member
reapable: an instance enlists a member after its room admitted it and forgets it after
its room let it go; a step lost in between leaves an entry the sweep clears.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from .. import clock
from . import keys
from .batches import Batches, Command, Unbatched
from .link import RedisLink

# KEYS: conns, alive. ARGV[1]: alive_ms.
_ENLIST = """
local function enlist(expires, ...)
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  redis.call('HSET', KEYS[1], ...)
  -- Never shorten its life: it also serves rooms that outlive this one.
  local ttl = redis.call('PTTL', KEYS[1])
  if ttl < 0 or now + ttl < tonumber(expires) then redis.call('PEXPIREAT', KEYS[1], expires) end
  -- Alive from the first member on, so no reaper mistakes it for dead before its heartbeat.
  redis.call('SET', KEYS[2], '1', 'PX', ARGV[1])
end
"""

# ARGV[2..]: expires (ms), then cid, room_id pairs.
ENLIST = _ENLIST + """
enlist(ARGV[2], unpack(ARGV, 3))
return 1
"""

# One Redis only (its keys are an instance's and a room's, two slots of a cluster): ENLIST
# for a member its room's ADMIT, just before in the same pipeline, seated; nothing for one
# it refused. KEYS[3..]: the room's users and meta. ARGV[2..]: cid, room_id. Returns the
# room's expiry (ms) when enlisted, else 0.
ENLIST_SEATED = _ENLIST + """
if redis.call('SISMEMBER', KEYS[3], ARGV[2]) == 0 then return 0 end
local expires = redis.call('HGET', KEYS[4], 'expires_ms')
if not expires then return 0 end
enlist(expires, ARGV[2], ARGV[3])
return tonumber(expires)
"""

# KEYS: conns, alive. ARGV: cids. Returns 1 when the instance has no member left (its
# heartbeat key is gone with them), else 0.
FORGET = """
redis.call('HDEL', KEYS[1], unpack(ARGV))
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('DEL', KEYS[2])
return 1
"""

# KEYS: conns, alive. ARGV[1]: alive_ms. Only instances with members beat.
# Returns the members' index's remaining life (ms), or 0 when it has none.
HEARTBEAT = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('SET', KEYS[2], '1', 'PX', ARGV[1])
return redis.call('PTTL', KEYS[1])
"""

# KEYS: conns, alive. Returns {} while the instance is alive, else its index as a flat list:
# cid, room_id, ...
DEAD_MEMBERS = """
if redis.call('EXISTS', KEYS[2]) == 1 then return {} end
return redis.call('HGETALL', KEYS[1])
"""

# KEYS: registry. ARGV: instance, life (ms). Never shortens the registry's life.
REGISTER = """
redis.call('SADD', KEYS[1], ARGV[1])
local ttl = redis.call('PTTL', KEYS[1])
if ttl < tonumber(ARGV[2]) then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 1
"""


class InstanceIndex:
    def __init__(self, link: RedisLink, batches: Batches | Unbatched, instance_id: str, alive_ms: int) -> None:
        self._link = link
        self._batches = batches
        self.instance_id = instance_id
        self._alive_ms = alive_ms
        # Until when (ms) the registry holds this instance, as far as this instance knows:
        # enlisting members of rooms that end sooner needs no REGISTER of its own. Should the
        # registry lose it anyway (a Redis restarted empty, a reaper's mistake), the next
        # heartbeat registers it again.
        self._registered_until_ms = 0
        client = link.client
        self._enlist = client.register_script(ENLIST)
        self._enlist_seated = client.register_script(ENLIST_SEATED)
        self._forget = client.register_script(FORGET)
        self._heartbeat = client.register_script(HEARTBEAT)
        self._dead_members = client.register_script(DEAD_MEMBERS)
        self._register = client.register_script(REGISTER)

    @staticmethod
    def _keys(instance_id: str) -> list[str]:
        return [keys.instance_conns(instance_id), keys.instance_alive(instance_id)]

    async def enlist(self, members: Iterable[tuple[str, str]], expires_ms: int, *, session: bool = False) -> None:
        """Ours from now on: each (connection id, room id), in rooms that end at ``expires_ms``."""
        flat = [value for pair in members for value in pair]
        if not flat:
            return
        index_keys, args = self._keys(self.instance_id), [self._alive_ms, expires_ms, *flat]
        if session:  # Putting a restarted Redis back: registered again whatever it held.
            await self._link.command(self._enlist, keys=index_keys, args=args)
            await self._link.command(self._register, keys=[keys.INSTANCES], args=[self.instance_id, _life(expires_ms)])
            self._registered_until_ms = max(self._registered_until_ms, expires_ms)
        else:  # A member entering: with other requests' steps.
            await self._batches.script(self._enlist, index_keys, args)
            await self.registered(expires_ms)

    def enlist_seated(self, batches: Batches, room_id: str, connection_id: str) -> Command:
        """ENLIST_SEATED as a command to follow the member's ADMIT in one job (one Redis
        only): its reply is what ``registered`` then needs, 0 when the room refused it."""
        return batches.evalsha(
            self._enlist_seated,
            [*self._keys(self.instance_id), keys.room_users(room_id), keys.room_meta(room_id)],
            [self._alive_ms, connection_id, room_id],
        )

    async def registered(self, expires_ms: int) -> None:
        """In the registry for as long as a member of a room ending at ``expires_ms`` may live."""
        if expires_ms <= self._registered_until_ms:
            return
        await self._batches.script(self._register, [keys.INSTANCES], [self.instance_id, _life(expires_ms)])
        self._registered_until_ms = expires_ms

    async def forget(self, instance_id: str, connection_ids: Iterable[str]) -> None:
        """No longer ``instance_id``'s members; an instance left with none leaves the registry."""
        cids = list(connection_ids)
        if not cids:
            return
        if await self._link.call(self._forget, keys=self._keys(instance_id), args=cids):
            if instance_id == self.instance_id:
                self._registered_until_ms = 0
            await self._link.call(self._link.client.srem, keys.INSTANCES, instance_id)
            # A member enlisted meanwhile (its registry entry may have gone before ours went):
            # registered again, so a reaper still finds it.
            if await self._link.call(self._link.client.exists, keys.instance_conns(instance_id)):
                await self._link.call(self._link.client.sadd, keys.INSTANCES, instance_id)

    async def beat(self) -> None:
        """Say this instance lives (only while it has members), and keep it registered."""
        life_ms = await self._link.command(self._heartbeat, keys=self._keys(self.instance_id), args=[self._alive_ms])
        if int(life_ms) > 0:
            await self._link.command(self._register, keys=[keys.INSTANCES], args=[self.instance_id, int(life_ms)])

    async def alive(self, instances: Iterable[str]) -> list[str]:
        """Those of ``instances`` whose heartbeat has not lapsed."""
        return [i for i in instances if await self._link.call(self._link.client.exists, keys.instance_alive(i))]

    async def dead_members(self) -> dict[str, dict[str, list[str]]]:
        """Instances whose heartbeat lapsed: instance -> room id -> the connection ids it served."""
        found: dict[str, dict[str, list[str]]] = {}
        for instance in sorted(await self._link.call(self._link.client.smembers, keys.INSTANCES)):
            flat: list[Any] = await self._link.call(self._dead_members, keys=self._keys(instance))
            rooms: defaultdict[str, list[str]] = defaultdict(list)
            for cid, room_id in zip(flat[::2], flat[1::2], strict=True):
                rooms[room_id].append(cid)
            if rooms:
                found[instance] = dict(rooms)
            elif await self._link.call(self._link.client.exists, keys.instance_alive(instance)) == 0:
                # Dead with nothing left to reap: its registry entry goes too.
                await self._link.call(self._link.client.srem, keys.INSTANCES, instance)
        return found


def _now_ms() -> int:
    return int(clock.now() * 1000)


def _life(expires_ms: int) -> int:
    """How long the registry must hold an instance whose members' rooms end at ``expires_ms``."""
    return max(1, expires_ms - _now_ms())
