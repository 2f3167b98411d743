"""The Lua scripts that make each multi-key step of the Redis backend atomic.

Every script takes the same four leading ARGV (key prefixes from ``keys``), so key names
stay defined in one place while scripts can reach keys they only learn while running.
"""

from __future__ import annotations

from . import keys

# ARGV[1..4] of every script.
PREFIXES = (keys.CONN, keys.INSTANCE_CONNS, keys.INSTANCE_ALIVE, keys.INSTANCES)

_PRELUDE = """
local CONN, ICONNS, ALIVE, REGISTRY = ARGV[1], ARGV[2], ARGV[3], ARGV[4]

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- Never shorten a shared key's life: it may also serve rooms that outlive this one.
local function extend(key, at)
  local ttl = redis.call('PTTL', key)
  if ttl < 0 or now_ms() + ttl < tonumber(at) then
    redis.call('PEXPIREAT', key, at)
  end
end

-- Drop a connection from its instance's index; an instance left with none keeps no key.
local function forget(instance, cid)
  local conns = ICONNS .. instance
  redis.call('SREM', conns, cid)
  if redis.call('EXISTS', conns) == 0 then
    redis.call('DEL', ALIVE .. instance)
    redis.call('SREM', REGISTRY, instance)
  end
end
"""

# KEYS: meta, users, conn, instance conns, instance alive, names, revoked.
# ARGV[5..]: cid, room_id, display_name, connected_at, is_owner, instance, alive_ms, sender,
# name key ('' for no check).
# Returns {0, 0} no room, {1, count} full, {2, count, meta as a flat list} admitted,
# {3, count} sender removed by the owner, {4, count} name taken.
ADMIT = _PRELUDE + """
local expires = redis.call('HGET', KEYS[1], 'expires_ms')
if not expires then return {0, 0} end
local count = redis.call('SCARD', KEYS[2])
if ARGV[12] ~= '' and redis.call('SISMEMBER', KEYS[7], ARGV[12]) == 1 then return {3, count} end
local name = ARGV[13]
if name ~= '' then
  if ARGV[9] ~= '1' and name == redis.call('HGET', KEYS[1], 'owner_key') then return {4, count} end
  local holder = redis.call('HGET', KEYS[6], name)
  if holder and holder ~= ARGV[12] then return {4, count} end
end
if count >= tonumber(redis.call('HGET', KEYS[1], 'max_users')) then return {1, count} end
-- The owner's name is reserved by the room itself (meta's owner_key), for its whole life.
-- Beside each name, "\0<sender>" counts that sender's seats, so a departure needs no scan.
if name ~= '' and ARGV[9] ~= '1' then
  redis.call('HSET', KEYS[6], name, ARGV[12])
  redis.call('HINCRBY', KEYS[6], '\0' .. ARGV[12], 1)
  redis.call('PEXPIREAT', KEYS[6], expires)
end
redis.call('SADD', KEYS[2], ARGV[5])
redis.call('PEXPIREAT', KEYS[2], expires)
redis.call('HSET', KEYS[3], 'room_id', ARGV[6], 'display_name', ARGV[7], 'connected_at', ARGV[8],
           'is_owner', ARGV[9], 'instance', ARGV[10], 'sender', ARGV[12], 'name_key', name)
redis.call('PEXPIREAT', KEYS[3], expires)
if ARGV[9] == '1' then redis.call('HINCRBY', KEYS[1], 'owners_online', 1) end
redis.call('SADD', KEYS[4], ARGV[5])
extend(KEYS[4], expires)
-- Alive from the first member on, so no reaper mistakes it for dead before its heartbeat.
redis.call('SET', KEYS[5], '1', 'PX', ARGV[11])
redis.call('SADD', REGISTRY, ARGV[10])
extend(REGISTRY, expires)
return {2, count + 1, redis.call('HGETALL', KEYS[1])}
"""

# KEYS: meta, users, conn, dropped, names. ARGV[5..]: cid, the caller's instance (when conn
# has expired). Returns nil when the room or the member is gone, else {online count, owner
# online 0/1}. The member's name is free again once the last seat of its sender is gone.
_DEPART = """
redis.call('HDEL', KEYS[4], ARGV[5])
local conn = redis.call('HMGET', KEYS[3], 'instance', 'is_owner', 'sender', 'name_key')
redis.call('DEL', KEYS[3])
forget(conn[1] or ARGV[6], ARGV[5])
if redis.call('SREM', KEYS[2], ARGV[5]) == 0 then return false end
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
if conn[4] and conn[4] ~= '' and redis.call('HGET', KEYS[5], conn[4]) == conn[3] then
  if redis.call('HINCRBY', KEYS[5], '\0' .. conn[3], -1) <= 0 then
    redis.call('HDEL', KEYS[5], conn[4], '\0' .. conn[3])
  end
end
local owners = tonumber(redis.call('HGET', KEYS[1], 'owners_online') or '0')
if conn[2] == '1' then owners = redis.call('HINCRBY', KEYS[1], 'owners_online', -1) end
return {redis.call('SCARD', KEYS[2]), owners > 0 and 1 or 0}
"""
DEPART = _PRELUDE + _DEPART

# A seat whose socket was lost, held for its sender: dropped is a hash cid -> the hold,
# "<sender> <hold id>" (a sender has no spaces). KEYS: meta, users, dropped.
# ARGV[5..]: cid, the hold. Returns 1 when held, 0 when the seat is gone.
DROP = _PRELUDE + """
local expires = redis.call('HGET', KEYS[1], 'expires_ms')
if not expires or redis.call('SISMEMBER', KEYS[2], ARGV[5]) == 0 then return 0 end
redis.call('HSET', KEYS[3], ARGV[5], ARGV[6])
redis.call('PEXPIREAT', KEYS[3], expires)
return 1
"""

# The sender's newest held seat (dropped, or left behind by an instance that died), moved
# to the claiming instance. KEYS: meta, users, dropped,
# instance conns, instance alive, revoked. ARGV[5..]: sender, instance, alive_ms.
# Returns {} when none is held (or the owner removed the sender), else {cid, display_name,
# connected_at, is_owner, online count, meta as a flat list}.
CLAIM = _PRELUDE + """
local expires = redis.call('HGET', KEYS[1], 'expires_ms')
if not expires or redis.call('SISMEMBER', KEYS[6], ARGV[5]) == 1 then return {} end
local held = redis.call('HGETALL', KEYS[3])
local cid, newest = nil, nil
local function consider(candidate)
  local at = tonumber(redis.call('HGET', CONN .. candidate, 'connected_at') or '0')
  if newest == nil or at > newest then cid, newest = candidate, at end
end
local mine = ARGV[5] .. ' '
for i = 1, #held, 2 do
  if string.sub(held[i + 1], 1, #mine) == mine then consider(held[i]) end
end
-- A seat of an instance that died never got dropped: its socket was lost with it, and the
-- seat is the sender's to take back until the sweep reaps it.
for _, member in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  local c = redis.call('HMGET', CONN .. member, 'sender', 'instance')
  if c[1] == ARGV[5] and c[2] and redis.call('EXISTS', ALIVE .. c[2]) == 0 then consider(member) end
end
if cid == nil then return {} end
redis.call('HDEL', KEYS[3], cid)
local c = redis.call('HMGET', CONN .. cid, 'instance', 'display_name', 'connected_at', 'is_owner')
if not c[2] then return {} end
if c[1] then forget(c[1], cid) end
redis.call('HSET', CONN .. cid, 'instance', ARGV[6])
redis.call('SADD', KEYS[4], cid)
extend(KEYS[4], expires)
redis.call('SET', KEYS[5], '1', 'PX', ARGV[7])
redis.call('SADD', REGISTRY, ARGV[6])
extend(REGISTRY, expires)
return {cid, c[2], c[3], c[4], redis.call('SCARD', KEYS[2]), redis.call('HGETALL', KEYS[1])}
"""

# DEPART, only while the seat is still held by the same hold (not claimed meanwhile).
# KEYS as DEPART; ARGV as DEPART, then the hold.
DEPART_DROPPED = _PRELUDE + """
local held = redis.call('HGET', KEYS[4], ARGV[5])
if not held or string.sub(held, -(#ARGV[7] + 1)) ~= ' ' .. ARGV[7] then return false end
""" + _DEPART

# KEYS: meta, users, the room's history keys (keys.room_history: pos, log, dedupe), ended,
# dropped, read, names, revoked.
# ARGV[5..]: final frame ('' for none), how long to keep it (ms).
# Returns 1 only for the call that removed the room, which alone leaves the final frame.
DELETE_ROOM = _PRELUDE + """
local removed = redis.call('DEL', KEYS[1])
redis.call('DEL', KEYS[3], KEYS[4], KEYS[5], KEYS[8], KEYS[9], KEYS[10])
if removed == 1 and ARGV[5] ~= '' then redis.call('SET', KEYS[6], ARGV[5], 'PX', ARGV[6]) end
for _, cid in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  local instance = redis.call('HGET', CONN .. cid, 'instance')
  redis.call('DEL', CONN .. cid)
  if instance then forget(instance, cid) end
end
redis.call('DEL', KEYS[2], KEYS[7])
return removed
"""

# The owner removes a member: its sender is refused for the room's life (revoked lives and
# dies with meta). KEYS: meta, users, revoked. ARGV[5]: cid.
# Returns the sender ('' when it has none), or false when the room or the member is gone.
REVOKE = _PRELUDE + """
local expires = redis.call('HGET', KEYS[1], 'expires_ms')
if not expires or redis.call('SISMEMBER', KEYS[2], ARGV[5]) == 0 then return false end
local sender = redis.call('HGET', CONN .. ARGV[5], 'sender') or ''
if sender ~= '' then
  redis.call('SADD', KEYS[3], sender)
  redis.call('PEXPIREAT', KEYS[3], expires)
end
return sender
"""

# A member's last-read offset, moved forward only and never past the room's newest message.
# KEYS: meta, pos, read. ARGV: cid, offset. Returns the offset kept, or false when it did not
# move (or the room is gone). read lives and dies with meta, like pos.
MARK_READ = """
local expires = redis.call('HGET', KEYS[1], 'expires_ms')
if not expires then return false end
local offset = math.min(tonumber(ARGV[2]), tonumber(redis.call('HGET', KEYS[2], 'offset') or '0'))
if offset <= tonumber(redis.call('HGET', KEYS[3], ARGV[1]) or '0') then return false end
redis.call('HSET', KEYS[3], ARGV[1], offset)
redis.call('PEXPIREAT', KEYS[3], expires)
return offset
"""

# KEYS: meta, users. Returns a flat list: cid, display_name, connected_at, is_owner, ...
MEMBERS = _PRELUDE + """
local out = {}
if redis.call('EXISTS', KEYS[1]) == 0 then return out end
for _, cid in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  local c = redis.call('HMGET', CONN .. cid, 'display_name', 'connected_at', 'is_owner')
  if c[1] then
    table.insert(out, cid); table.insert(out, c[1]); table.insert(out, c[2]); table.insert(out, c[3])
  end
end
return out
"""

# Members of instances whose heartbeat key expired, then those of the connection ids in
# ARGV[5..] (the caller's own, whose departure failed), as a flat list:
# cid, room_id, display_name, connected_at, is_owner, ... Index entries whose connection
# already expired are dropped here, so a dead instance's keys do not outlive its rooms.
REAP = _PRELUDE + """
local out = {}
for _, instance in ipairs(redis.call('SMEMBERS', REGISTRY)) do
  if redis.call('EXISTS', ALIVE .. instance) == 0 then
    local conns = ICONNS .. instance
    for _, cid in ipairs(redis.call('SMEMBERS', conns)) do
      local c = redis.call('HMGET', CONN .. cid, 'room_id', 'display_name', 'connected_at', 'is_owner')
      if c[1] then
        for _, v in ipairs({cid, c[1], c[2], c[3], c[4]}) do table.insert(out, v) end
      else
        redis.call('SREM', conns, cid)
      end
    end
    if redis.call('EXISTS', conns) == 0 then redis.call('SREM', REGISTRY, instance) end
  end
end
for i = 5, #ARGV do
  local c = redis.call('HMGET', CONN .. ARGV[i], 'room_id', 'display_name', 'connected_at', 'is_owner')
  if c[1] then
    for _, v in ipairs({ARGV[i], c[1], c[2], c[3], c[4]}) do table.insert(out, v) end
  end
end
return out
"""

# KEYS: instance conns, instance alive. ARGV[5]: alive_ms. Only instances with members beat.
HEARTBEAT = _PRELUDE + """
if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('SET', KEYS[2], '1', 'PX', ARGV[5]) end
return 0
"""

# After Redis came back empty (a restart without persistence), one instance puts back a
# room it serves and its own members there; what Redis kept, or another instance already
# restored, is left alone. KEYS: meta, users, instance conns, instance alive.
# ARGV[5..]: instance, alive_ms, room_id, number of meta fields N, N field/value pairs, then
# cid, display_name, connected_at, is_owner for each member.
RESTORE = _PRELUDE + """
local instance, alive_ms, room_id, n = ARGV[5], ARGV[6], ARGV[7], tonumber(ARGV[8])
local at = 9 + 2 * n
if redis.call('EXISTS', KEYS[1]) == 0 then
  local meta = {}
  for i = 9, at - 1 do table.insert(meta, ARGV[i]) end
  redis.call('HSET', KEYS[1], unpack(meta))
  redis.call('HSET', KEYS[1], 'owners_online', 0)
end
local expires = redis.call('HGET', KEYS[1], 'expires_ms')
if tonumber(expires) <= now_ms() then redis.call('DEL', KEYS[1]) return 0 end
redis.call('PEXPIREAT', KEYS[1], expires)
for i = at, #ARGV, 4 do
  local cid = ARGV[i]
  if redis.call('SADD', KEYS[2], cid) == 1 then
    redis.call('HSET', CONN .. cid, 'room_id', room_id, 'display_name', ARGV[i + 1],
               'connected_at', ARGV[i + 2], 'is_owner', ARGV[i + 3], 'instance', instance)
    redis.call('PEXPIREAT', CONN .. cid, expires)
    if ARGV[i + 3] == '1' then redis.call('HINCRBY', KEYS[1], 'owners_online', 1) end
    redis.call('SADD', KEYS[3], cid)
    extend(KEYS[3], expires)
    redis.call('SET', KEYS[4], '1', 'PX', alive_ms)
    redis.call('SADD', REGISTRY, instance)
    extend(REGISTRY, expires)
  end
end
redis.call('PEXPIREAT', KEYS[2], expires)
return 1
"""

# KEYS[1] counter; ARGV[1] window in ms. No prelude: it touches only its own key.
COUNT = """
local hits = redis.call('INCR', KEYS[1])
if hits == 1 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
end
return {hits, redis.call('PTTL', KEYS[1])}
"""

# POST and HISTORY touch only the keys of one room (no prelude): they stay on one shard.
# KEYS of both: meta, pos, log, dedupe.
# pos is a hash: epoch; offset (the newest); bytes (of every frame stored in this epoch);
# floor (a lower bound of the bytes stored before the oldest frame kept); expires (the
# room's, copied from meta). log is a stream of the frames kept, each in one field, f,
# under the id "<offset>-<bytes stored before it>": the bytes kept are pos's bytes less the
# oldest entry's sequence number, so while bytes - floor is within the limit nothing needs
# reading. dedupe is a sorted set of the senders' dedupe keys scored by their offsets.
# Each Redis call from Lua costs about a microsecond, most of a script's time: hence these
# shapes, and one POST for a run of messages to one room.

# A room's position, made on first need for a room that exists (the epoch from a random
# candidate the caller passes: Lua has no good random), so a Redis that lost the room's
# history gives it a new epoch. pos lives and dies with meta (same expiry, same
# DELETE_ROOM): while pos is there, the room is. The dedupe set is made with it, holding a
# placeholder ('' scored 0) so that it never empties and never loses its expiry.
_POSITION = """
local function position(candidate)
  local pos = redis.call('HMGET', KEYS[2], 'epoch', 'offset', 'bytes', 'floor', 'expires')
  if pos[1] then return pos end
  local expires = redis.call('HGET', KEYS[1], 'expires_ms')
  if not expires then return nil end
  redis.call('HSET', KEYS[2], 'epoch', candidate, 'expires', expires)
  redis.call('PEXPIREAT', KEYS[2], expires)
  redis.call('ZADD', KEYS[4], 0, '')
  redis.call('PEXPIREAT', KEYS[4], expires)
  return {candidate, false, false, false, expires}
end
"""

# A run of chat messages to one room, each numbered, stored, trimmed and published, as one
# step, so offsets are in delivery order on every instance. ARGV: channel, epoch candidate,
# history size, history bytes, dedupe window, then for each message: the message (a JSON
# object without offset) and its dedupe key ('' for none).
# Returns each message's offset (a duplicate's: the first one's); {} when the room is gone.
# A message costs XADD and PUBLISH (with a dedupe key ZSCORE and ZADD too); the run, two
# more. Dedupe keys are dropped once max(history size, 100) offsets old, every 32 offsets.
POST = _POSITION + """
local pos = position(ARGV[2])
if not pos then return {} end
local size, most, window = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local was = tonumber(pos[2] or '0')
local stored = tonumber(pos[3] or '0')
local offset, total, out, untrimmed = was, stored, {}, false
for i = 6, #ARGV, 2 do
  local dedupe = ARGV[i + 1]
  local seen = dedupe ~= '' and redis.call('ZSCORE', KEYS[4], dedupe)
  if seen then
    table.insert(out, tonumber(seen))
  else
    offset = offset + 1
    local rest = string.sub(ARGV[i], 2)
    local frame = '{"offset":' .. offset .. (rest == '}' and '' or ',') .. rest
    if size > 0 then
      -- Trimmed once a run, by its last message: exact trimming costs an XADD double.
      untrimmed = i + 1 < #ARGV
      if untrimmed then
        redis.call('XADD', KEYS[3], offset .. '-' .. total, 'f', frame)
      else
        redis.call('XADD', KEYS[3], 'MAXLEN', size, offset .. '-' .. total, 'f', frame)
      end
      total = total + #frame
    end
    if dedupe ~= '' then redis.call('ZADD', KEYS[4], offset, dedupe) end
    redis.call('PUBLISH', ARGV[1], frame)
    table.insert(out, offset)
  end
end
if offset == was then return out end
if size == 0 then
  redis.call('HSET', KEYS[2], 'offset', offset)
else
  redis.call('HSET', KEYS[2], 'offset', offset, 'bytes', total)
  if untrimmed then redis.call('XTRIM', KEYS[3], 'MAXLEN', size) end  -- The run ended on a resend.
  if stored == 0 then redis.call('PEXPIREAT', KEYS[3], pos[5]) end
  if total - tonumber(pos[4] or '0') > most then
    local oldest = redis.call('XRANGE', KEYS[3], '-', '+', 'COUNT', 1)[1]
    while oldest and total - tonumber(string.match(oldest[1], '%d+$')) > most do
      redis.call('XDEL', KEYS[3], oldest[1])
      oldest = redis.call('XRANGE', KEYS[3], '-', '+', 'COUNT', 1)[1]
    end
    redis.call('HSET', KEYS[2], 'floor', oldest and string.match(oldest[1], '%d+$') or total)
  end
end
if math.floor(offset / 32) > math.floor(was / 32) then
  redis.call('ZREMRANGEBYSCORE', KEYS[4], '(0', offset - window)
end
return out
"""

# The room's position and stored messages, read together.
# ARGV: epoch candidate, since ('' for the newest), the client's epoch, limit.
# Returns {} when the room is gone, else {epoch, offset, complete 1/0, frames...}:
# see Bus.history for which frames and when complete.
HISTORY = _POSITION + """
local pos = position(ARGV[1])
if not pos then return {} end
local offset, limit = tonumber(pos[2] or '0'), tonumber(ARGV[4])
local out = {pos[1], offset, 0}
if ARGV[2] == '' then
  if limit > 0 then
    local newest = redis.call('XREVRANGE', KEYS[3], '+', '-', 'COUNT', limit)
    for i = #newest, 1, -1 do table.insert(out, newest[i][2][2]) end
  end
  if #out - 3 == offset then out[3] = 1 end
  return out
end
local since = tonumber(ARGV[2])
if ARGV[3] ~= pos[1] or since < 0 or since > offset then return out end
local oldest = redis.call('XRANGE', KEYS[3], '-', '+', 'COUNT', 1)[1]
local kept_from = oldest and tonumber(string.match(oldest[1], '^%d+')) or offset + 1
if kept_from > since + 1 then return out end
out[3] = 1
if limit > 0 and since < offset then
  for _, entry in ipairs(redis.call('XRANGE', KEYS[3], (since + 1) .. '-0', '+', 'COUNT', limit)) do
    table.insert(out, entry[2][2])
  end
end
return out
"""
