"""The Lua scripts that make each multi-key step of the Redis backend atomic.

A room's scripts touch only that room's keys (one hash tag, so one slot of a Redis
Cluster); each takes the room's member-record prefix (``keys.conn_prefix``) as ARGV[1], so
it can reach the records of members it only learns while running. What spans rooms, the
index of which instance serves which member, is kept by separate calls (``instances``).
"""

from __future__ import annotations

_PRELUDE = """
local CONN = ARGV[1]
"""

# KEYS: meta, users, conn, names, revoked. ARGV[2..]: cid, room_id, display_name, connected_at,
# is_owner, instance, sender, name key ('' for no check).
# Returns {0, 0} no room, {1, count} full, {2, count, meta as a flat list, removed senders} admitted,
# {3, count} sender removed by the owner, {4, count} name taken.
ADMIT = _PRELUDE + """
local expires = redis.call('HGET', KEYS[1], 'expires_ms')
if not expires then return {0, 0} end
local count = redis.call('SCARD', KEYS[2])
if ARGV[8] ~= '' and redis.call('SISMEMBER', KEYS[5], ARGV[8]) == 1 then return {3, count} end
local name = ARGV[9]
if name ~= '' then
  if ARGV[6] ~= '1' and name == redis.call('HGET', KEYS[1], 'owner_key') then return {4, count} end
  local holder = redis.call('HGET', KEYS[4], name)
  if holder and holder ~= ARGV[8] then return {4, count} end
end
if count >= tonumber(redis.call('HGET', KEYS[1], 'max_users')) then return {1, count} end
-- The owner's name is reserved by the room itself (meta's owner_key), for its whole life.
-- Beside each name, "\0<sender>" counts that sender's seats, so a departure needs no scan.
if name ~= '' and ARGV[6] ~= '1' then
  redis.call('HSET', KEYS[4], name, ARGV[8])
  redis.call('HINCRBY', KEYS[4], '\0' .. ARGV[8], 1)
  redis.call('PEXPIREAT', KEYS[4], expires)
end
redis.call('SADD', KEYS[2], ARGV[2])
redis.call('PEXPIREAT', KEYS[2], expires)
redis.call('HSET', KEYS[3], 'room_id', ARGV[3], 'display_name', ARGV[4], 'connected_at', ARGV[5],
           'is_owner', ARGV[6], 'instance', ARGV[7], 'sender', ARGV[8], 'name_key', name)
redis.call('PEXPIREAT', KEYS[3], expires)
if ARGV[6] == '1' then redis.call('HINCRBY', KEYS[1], 'owners_online', 1) end
return {2, count + 1, redis.call('HGETALL', KEYS[1]), redis.call('SMEMBERS', KEYS[5])}
"""

# KEYS: meta, users, conn, dropped, names. ARGV[2..]: cid.
# Returns {instance} (the member's, '' when its record expired) when the room or the member
# is gone, else {instance, online count, owner online 0/1}. The member's name is free again
# once the last seat of its sender is gone.
_DEPART = """
redis.call('HDEL', KEYS[4], ARGV[2])
local conn = redis.call('HMGET', KEYS[3], 'instance', 'is_owner', 'sender', 'name_key')
local instance = conn[1] or ''
redis.call('DEL', KEYS[3])
if redis.call('SREM', KEYS[2], ARGV[2]) == 0 then return {instance} end
if redis.call('EXISTS', KEYS[1]) == 0 then return {instance} end
if conn[4] and conn[4] ~= '' and redis.call('HGET', KEYS[5], conn[4]) == conn[3] then
  if redis.call('HINCRBY', KEYS[5], '\0' .. conn[3], -1) <= 0 then
    redis.call('HDEL', KEYS[5], conn[4], '\0' .. conn[3])
  end
end
local owners = tonumber(redis.call('HGET', KEYS[1], 'owners_online') or '0')
if conn[2] == '1' then owners = redis.call('HINCRBY', KEYS[1], 'owners_online', -1) end
return {instance, redis.call('SCARD', KEYS[2]), owners > 0 and 1 or 0}
"""
DEPART = _PRELUDE + _DEPART

# A seat whose socket was lost, held for its sender: dropped is a hash cid -> the hold,
# "<sender> <hold id>" (a sender has no spaces). KEYS: meta, users, dropped.
# ARGV[2..]: cid, the hold. Returns 1 when held, 0 when the seat is gone.
DROP = _PRELUDE + """
local expires = redis.call('HGET', KEYS[1], 'expires_ms')
if not expires or redis.call('SISMEMBER', KEYS[2], ARGV[2]) == 0 then return 0 end
redis.call('HSET', KEYS[3], ARGV[2], ARGV[3])
redis.call('PEXPIREAT', KEYS[3], expires)
return 1
"""

# The sender's newest held seat (dropped, or left behind by an instance that died), moved
# to the claiming instance. KEYS: meta, users, dropped, revoked. ARGV[2..]: sender, instance,
# then the ids of the instances alive now (the caller reads them: their keys live in other
# slots). Returns {} when none is held (or the owner removed the sender), else {cid,
# display_name, connected_at, is_owner, online count, meta as a flat list, the instance that
# held it ('' when none)}.
CLAIM = _PRELUDE + """
local expires = redis.call('HGET', KEYS[1], 'expires_ms')
if not expires or redis.call('SISMEMBER', KEYS[4], ARGV[2]) == 1 then return {} end
local alive = {}
for i = 4, #ARGV do alive[ARGV[i]] = true end
local held = redis.call('HGETALL', KEYS[3])
local cid, newest = nil, nil
local function consider(candidate)
  local at = tonumber(redis.call('HGET', CONN .. candidate, 'connected_at') or '0')
  if newest == nil or at > newest then cid, newest = candidate, at end
end
local mine = ARGV[2] .. ' '
for i = 1, #held, 2 do
  if string.sub(held[i + 1], 1, #mine) == mine then consider(held[i]) end
end
-- A seat of an instance that died never got dropped: its socket was lost with it, and the
-- seat is the sender's to take back until the sweep reaps it.
for _, member in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  local c = redis.call('HMGET', CONN .. member, 'sender', 'instance')
  if c[1] == ARGV[2] and c[2] and not alive[c[2]] then consider(member) end
end
if cid == nil then return {} end
redis.call('HDEL', KEYS[3], cid)
local c = redis.call('HMGET', CONN .. cid, 'instance', 'display_name', 'connected_at', 'is_owner', 'name_key')
if not c[2] then return {} end
redis.call('HSET', CONN .. cid, 'instance', ARGV[3])
return {cid, c[2], c[3], c[4], redis.call('SCARD', KEYS[2]), redis.call('HGETALL', KEYS[1]), c[1] or '', c[5] or ''}
"""

# The instances that hold the seats of sender ARGV[2] in this room (CLAIM's caller asks which
# of them are alive: their heartbeat keys live in other slots). KEYS: meta, users.
SENDER_INSTANCES = _PRELUDE + """
local out, seen = {}, {}
for _, member in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  local c = redis.call('HMGET', CONN .. member, 'sender', 'instance')
  if c[1] == ARGV[2] and c[2] and not seen[c[2]] then seen[c[2]] = true; table.insert(out, c[2]) end
end
return out
"""

# DEPART, only while the seat is still held by the same hold (not claimed meanwhile).
# KEYS as DEPART; ARGV as DEPART, then the hold. Returns false when not held.
DEPART_DROPPED = _PRELUDE + """
local held = redis.call('HGET', KEYS[4], ARGV[2])
if not held or string.sub(held, -(#ARGV[3] + 1)) ~= ' ' .. ARGV[3] then return false end
""" + _DEPART

# KEYS: meta, users, the room's history keys (keys.room_history: pos, log, dedupe), ended,
# dropped, read, names, revoked.
# ARGV[2..]: final frame ('' for none), how long to keep it (ms).
# Returns {1 only for the call that removed the room (which alone leaves the final frame),
# then cid, instance of each member removed}.
DELETE_ROOM = _PRELUDE + """
local removed = redis.call('DEL', KEYS[1])
redis.call('DEL', KEYS[3], KEYS[4], KEYS[5], KEYS[8], KEYS[9], KEYS[10])
if removed == 1 and ARGV[2] ~= '' then redis.call('SET', KEYS[6], ARGV[2], 'PX', ARGV[3]) end
local out = {removed}
for _, cid in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  local instance = redis.call('HGET', CONN .. cid, 'instance')
  redis.call('DEL', CONN .. cid)
  table.insert(out, cid); table.insert(out, instance or '')
end
redis.call('DEL', KEYS[2], KEYS[7])
return out
"""

# The owner removes a member: its sender is refused for the room's life (revoked lives and
# dies with meta). KEYS: meta, users, revoked. ARGV[2]: cid.
# Returns the sender ('' when it has none), or false when the room or the member is gone.
REVOKE = _PRELUDE + """
local expires = redis.call('HGET', KEYS[1], 'expires_ms')
if not expires or redis.call('SISMEMBER', KEYS[2], ARGV[2]) == 0 then return false end
local sender = redis.call('HGET', CONN .. ARGV[2], 'sender') or ''
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

# The records of the members ARGV[2..] (connection ids) that the room still has, as a flat
# list: cid, display_name, connected_at, is_owner, ... (a reaper's question about one room).
# KEYS: meta, only to name the room's slot.
RECORDS = _PRELUDE + """
local out = {}
for i = 2, #ARGV do
  local c = redis.call('HMGET', CONN .. ARGV[i], 'display_name', 'connected_at', 'is_owner')
  if c[1] then
    for _, v in ipairs({ARGV[i], c[1], c[2], c[3]}) do table.insert(out, v) end
  end
end
return out
"""

# After Redis came back empty (a restart without persistence), one instance puts back a
# room it serves, its own members there with the names they hold, and the senders the owner
# removed; what Redis kept, or another instance already restored, is left alone.
# KEYS: meta, users, names, revoked.
# ARGV[2..]: instance, room_id, number of meta fields N, N field/value pairs, number of removed
# senders R, R senders, then cid, display_name, connected_at, is_owner, sender, name_key for
# each member. Returns the room's expiry (ms), or 0 when it has ended.
RESTORE = _PRELUDE + """
local instance, room_id, n = ARGV[2], ARGV[3], tonumber(ARGV[4])
local at = 5 + 2 * n
if redis.call('EXISTS', KEYS[1]) == 0 then
  local meta = {}
  for i = 5, at - 1 do table.insert(meta, ARGV[i]) end
  redis.call('HSET', KEYS[1], unpack(meta))
  redis.call('HSET', KEYS[1], 'owners_online', 0)
end
local expires = redis.call('HGET', KEYS[1], 'expires_ms')
local t = redis.call('TIME')
if tonumber(expires) <= tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) then
  redis.call('DEL', KEYS[1])
  return 0
end
redis.call('PEXPIREAT', KEYS[1], expires)
local removed = tonumber(ARGV[at])
for i = at + 1, at + removed do redis.call('SADD', KEYS[4], ARGV[i]) end
if removed > 0 then redis.call('PEXPIREAT', KEYS[4], expires) end
for i = at + 1 + removed, #ARGV, 6 do
  local cid, owner, sender, name = ARGV[i], ARGV[i + 3], ARGV[i + 4], ARGV[i + 5]
  if redis.call('SADD', KEYS[2], cid) == 1 then
    redis.call('HSET', CONN .. cid, 'room_id', room_id, 'display_name', ARGV[i + 1],
               'connected_at', ARGV[i + 2], 'is_owner', owner, 'instance', instance,
               'sender', sender, 'name_key', name)
    redis.call('PEXPIREAT', CONN .. cid, expires)
    if owner == '1' then redis.call('HINCRBY', KEYS[1], 'owners_online', 1) end
    -- As ADMIT takes it: the owner's name is reserved by meta itself.
    if name ~= '' and owner ~= '1' then
      local holder = redis.call('HGET', KEYS[3], name)
      if not holder or holder == sender then
        redis.call('HSET', KEYS[3], name, sender)
        redis.call('HINCRBY', KEYS[3], '\0' .. sender, 1)
        redis.call('PEXPIREAT', KEYS[3], expires)
      end
    end
  end
end
redis.call('PEXPIREAT', KEYS[2], expires)
return tonumber(expires)
"""

# KEYS[1] counter; ARGV[1] window in ms. No prelude: it touches only its own key.
COUNT = """
local hits = redis.call('INCR', KEYS[1])
if hits == 1 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
end
return {hits, redis.call('PTTL', KEYS[1])}
"""

# KEYS[1] counter, KEYS[2] a new room's meta; ARGV[1] window in ms, ARGV[2] the most hits
# allowed, ARGV[3] the room's expiry (ms since the epoch), ARGV[4..] its fields and values.
# COUNT, then the room as create_room makes it, only within the limit. Its two keys are in
# different slots: one Redis only (a cluster counts and creates in two steps).
COUNT_AND_CREATE = """
local hits = redis.call('INCR', KEYS[1])
if hits == 1 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
end
local ttl = redis.call('PTTL', KEYS[1])
if hits <= tonumber(ARGV[2]) then
  redis.call('HSET', KEYS[2], unpack(ARGV, 4))
  redis.call('PEXPIREAT', KEYS[2], ARGV[3])
end
return {hits, ttl}
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

# POST for a Redis Cluster: the channel shares the room's hash tag, so the script may
# SPUBLISH it, to the subscribers of the room's shard alone.
POST_SHARDED = POST.replace("redis.call('PUBLISH', ARGV[1], frame)", "redis.call('SPUBLISH', ARGV[1], frame)")

# A presence frame, stamped with the room's online count as it is published, so counts
# follow the channel's order (see Bus.announce). KEYS: users. ARGV: channel, the frame
# without its count (a JSON object), stamped as chat.bus.with_count stamps it.
PRESENCE = """
local frame = string.sub(ARGV[2], 1, -2) .. ',"online_count":' .. redis.call('SCARD', KEYS[1]) .. '}'
return redis.call('PUBLISH', ARGV[1], frame)
"""
PRESENCE_SHARDED = PRESENCE.replace("redis.call('PUBLISH'", "redis.call('SPUBLISH'")

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
