"""Lua helpers shared by the queue scripts of scripts.py.

Prepended to each queue script (a script cannot import another). They keep
the per-task bookkeeping in one place: a task that leaves a state is taken
out of its stream, its time index and its count; one that enters a state is
put in all three and noted for the change message. Streams are id-ordered
sorted sets cut into listpack-sized buckets (see keys.py).
"""

from __future__ import annotations

from tqd.models import ERROR_HISTORY

#: Defines QP, QN, CHAN, ORIGIN, COUNTS from KEYS/ARGV and the helpers.
PRELUDE = """
local QP, QN, CHAN, ORIGIN = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local COUNTS = KEYS[1]
local changes = {}
local HISTORY = @HISTORY@

local function tkey(id) return QP .. 't:' .. id end
local function fmt(x) return string.format('%.17g', x) end

local function note(id, name, state)
  changes[#changes + 1] = id
  changes[#changes + 1] = name
  changes[#changes + 1] = state
end

-- the stream (listing index; lease order when pending) of a task
local function stream(state, prio, name)
  if state == 'pending' then return 'pending:' .. prio .. ':' .. name end
  return state .. ':' .. name
end

-- A stream is a sorted list of ids (all scores 0: lex order = id order) cut
-- into buckets of at most BUCKET ids, so each bucket stays a compact
-- listpack (zset-max-listpack-entries is 128 by default). x:<s> is the
-- directory: the lower bound of each bucket; bucket x:<s>/<bound> holds the
-- ids from its bound up to the next bound.
local BUCKET = 128

local function xdir(s) return QP .. 'x:' .. s end
local function xbucket(s, b) return QP .. 'x:' .. s .. '/' .. b end
local function bucket_of(s, id)
  return redis.call('ZREVRANGEBYLEX', xdir(s), '[' .. id, '-', 'LIMIT', 0, 1)[1]
end

local function stream_add(s, id)
  local dir = xdir(s)
  local b = bucket_of(s, id)
  if not b then
    b = id
    redis.call('ZADD', dir, 0, b)
    redis.call('SADD', QP .. 'xs', s)
  end
  local k = xbucket(s, b)
  redis.call('ZADD', k, 0, id)
  if redis.call('ZCARD', k) >= BUCKET then
    -- a middle bucket splits in half; the last one hands on only its newest
    -- id, so ids arriving in order fill every bucket
    local moved
    if redis.call('ZRANGEBYLEX', dir, '(' .. b, '+', 'LIMIT', 0, 1)[1] then
      moved = redis.call('ZRANGE', k, BUCKET / 2, -1)
    else
      moved = redis.call('ZRANGE', k, -1, -1)
    end
    local args = {}
    for _, m in ipairs(moved) do args[#args + 1] = 0; args[#args + 1] = m end
    redis.call('ZADD', xbucket(s, moved[1]), unpack(args))
    redis.call('ZREMRANGEBYRANK', k, -#moved, -1)
    redis.call('ZADD', dir, 0, moved[1])
  end
end

local function stream_rem(s, id)
  local b = bucket_of(s, id)
  if not b then return end
  local k = xbucket(s, b)
  redis.call('ZREM', k, id)
  if redis.call('EXISTS', k) == 0 then
    redis.call('ZREM', xdir(s), b)
    if redis.call('EXISTS', xdir(s)) == 0 then redis.call('SREM', QP .. 'xs', s) end
  end
end

-- the n oldest ids of a stream
local function stream_first(s, n)
  local out, from = {}, '-'
  while #out < n do
    local b = redis.call('ZRANGEBYLEX', xdir(s), from, '+', 'LIMIT', 0, 1)[1]
    if not b then break end
    for _, id in ipairs(redis.call('ZRANGE', xbucket(s, b), 0, n - #out - 1)) do out[#out + 1] = id end
    from = '(' .. b
  end
  return out
end

-- the n newest ids of a stream below cursor (or from the newest when '')
local function stream_below(s, cursor, n)
  local out, hi = {}, '+'
  if cursor ~= '' then hi = '(' .. cursor end
  local bhi = hi
  while #out < n do
    local b = redis.call('ZREVRANGEBYLEX', xdir(s), bhi, '-', 'LIMIT', 0, 1)[1]
    if not b then break end
    for _, id in ipairs(redis.call('ZREVRANGEBYLEX', xbucket(s, b), hi, '-', 'LIMIT', 0, n - #out)) do
      out[#out + 1] = id
    end
    bhi = '(' .. b
  end
  return out
end

-- the task leaves state st: out of its stream, time index and count
local function leave(id, st, prio, name)
  stream_rem(stream(st, prio, name), id)
  if st ~= 'pending' then redis.call('ZREM', QP .. 'z:' .. st, id) end
  redis.call('HINCRBY', COUNTS, st, -1)
end

-- the task enters state st (at: its time for the state's time index)
local function enter(id, st, prio, name, at)
  stream_add(stream(st, prio, name), id)
  if st ~= 'pending' then redis.call('ZADD', QP .. 'z:' .. st, at, id) end
  redis.call('HINCRBY', COUNTS, st, 1)
  note(id, name, st)
end

-- append one error (JSON text) to the history, keeping the newest HISTORY
local function push_error(h, err)
  local old = redis.call('HGET', h, 'e')
  local n = tonumber(redis.call('HGET', h, 'en') or '0') + 1
  local text
  if not old then text = '[' .. err .. ']'
  else text = string.sub(old, 1, -2) .. ',' .. err .. ']' end
  if n > HISTORY then
    local list = cjson.decode(text)
    local kept = {}
    for j = #list - HISTORY + 1, #list do kept[#kept + 1] = list[j] end
    text = cjson.encode(kept)
    n = HISTORY
  end
  redis.call('HSET', h, 'e', text, 'en', n)
end

-- delete a task that is in state st with fields name and prio
local function destroy(id, st, prio, name)
  local h = tkey(id)
  leave(id, st, prio, name)
  local key = redis.call('HGET', h, 'k')
  if key and redis.call('GET', QP .. 'i:' .. key) == id then redis.call('DEL', QP .. 'i:' .. key) end
  redis.call('DEL', h)
  note(id, name, 'deleted')
end

-- back to pending with its attempt budget granted again (retry, redrive)
local function revive(id, h, st, prio, name)
  leave(id, st, prio, name)
  local f = redis.call('HMGET', h, 'a', 'b')
  redis.call('HSET', h, 's', 'pending', 'm', (tonumber(f[1] or '0') + tonumber(f[2])))
  redis.call('HDEL', h, 'f', 'u', 'o', 'w', 'l', 'z')
  enter(id, 'pending', prio, name)
end

local function publish(event)
  if #changes == 0 and not event then return '' end
  local msg = cjson.encode({o = ORIGIN, q = QN, c = changes, e = event or ''})
  redis.call('PUBLISH', CHAN, msg)
  return msg
end
""".replace("@HISTORY@", str(ERROR_HISTORY))
