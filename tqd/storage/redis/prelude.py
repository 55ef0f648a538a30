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

-- the stream (listing index; lease order when pending) of a task; nil for
-- processing tasks, which are few (bounded by the workers' concurrency) and
-- listed from their time index instead
-- A grouped pending task (grp set) is listed from pending:g:<name>, which
-- the lease of ungrouped tasks does not read: it leases from its group's
-- index instead (see enter).
local function stream(state, prio, name, grp)
  if state == 'pending' then
    if grp then return 'pending:g:' .. name end
    return 'pending:' .. prio .. ':' .. name
  end
  if state == 'processing' then return nil end
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
local function bucket_after(s, b)
  return redis.call('ZRANGEBYLEX', xdir(s), '(' .. b, '+', 'LIMIT', 0, 1)[1]
end

-- ZADD/ZREM of many members, in pieces Lua's unpack can take
local function zmany(cmd, key, args)
  for j = 1, #args, 4000 do
    redis.call(cmd, key, unpack(args, j, math.min(j + 3999, #args)))
  end
end

-- put sorted ids into fresh buckets of at most size ids each; the first one
-- is bucket b (already in the directory), the others get bounds of their own
local function fill_buckets(s, b, ids, size)
  for j = 1, #ids, size do
    local args = {}
    for m = j, math.min(j + size - 1, #ids) do args[#args + 1] = 0; args[#args + 1] = ids[m] end
    local bound = b
    if j > 1 then
      bound = ids[j]
      redis.call('ZADD', xdir(s), 0, bound)
    end
    redis.call('ZADD', xbucket(s, bound), unpack(args))
  end
end

-- Add sorted ids to a stream, one ZADD per bucket they fall in. A bucket
-- never receives more than it can hold as a listpack (a sorted set that once
-- grew past zset-max-listpack-entries stays a skiplist): the last bucket is
-- filled up to BUCKET - 1 and the rest start new full buckets, so ids
-- arriving in order fill every bucket; any other bucket that would overflow
-- is rewritten, with the new ids, as buckets half full (full when last).
local function stream_add_sorted(s, ids)
  local i = 1
  while i <= #ids do
    local b = bucket_of(s, ids[i])
    if not b then
      b = ids[i]
      redis.call('ZADD', xdir(s), 0, b)
      redis.call('SADD', QP .. 'xs', s)
    end
    local nb = bucket_after(s, b)
    local new = {}
    while i <= #ids and (not nb or ids[i] < nb) do new[#new + 1] = ids[i]; i = i + 1 end
    local k = xbucket(s, b)
    local card = redis.call('ZCARD', k)
    if card + #new < BUCKET then
      local args = {}
      for _, id in ipairs(new) do args[#args + 1] = 0; args[#args + 1] = id end
      redis.call('ZADD', k, unpack(args))
    elseif not nb and (card == 0 or new[1] > redis.call('ZRANGE', k, -1, -1)[1]) then
      local room = BUCKET - 1 - card
      local args = {}
      for m = 1, room do args[#args + 1] = 0; args[#args + 1] = new[m] end
      if room > 0 then redis.call('ZADD', k, unpack(args)) end
      local rest = {}
      for m = room + 1, #new do rest[#rest + 1] = new[m] end
      if #rest > 0 then
        redis.call('ZADD', xdir(s), 0, rest[1])
        fill_buckets(s, rest[1], rest, BUCKET - 1)
      end
    else
      local all = redis.call('ZRANGE', k, 0, -1)
      for _, id in ipairs(new) do all[#all + 1] = id end
      table.sort(all)
      redis.call('DEL', k)
      fill_buckets(s, b, all, nb and BUCKET / 2 or BUCKET - 1)
    end
  end
end

-- remove sorted ids from a stream, one ZREM per bucket they are in
local function stream_rem_sorted(s, ids)
  local i = 1
  while i <= #ids do
    local b = bucket_of(s, ids[i])
    if not b then i = i + 1 else
      local nb = bucket_after(s, b)
      local gone = {}
      while i <= #ids and (not nb or ids[i] < nb) do gone[#gone + 1] = ids[i]; i = i + 1 end
      local k = xbucket(s, b)
      zmany('ZREM', k, gone)
      if redis.call('EXISTS', k) == 0 then
        redis.call('ZREM', xdir(s), b)
        if redis.call('EXISTS', xdir(s)) == 0 then redis.call('SREM', QP .. 'xs', s) end
      end
    end
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

-- Index and count changes are collected while a script runs and written
-- once at its end by flush() (publish() calls it): one ZADD/ZREM per index
-- and bucket and one HINCRBY per state, instead of several calls per task.
-- No script reads an index or a count after changing it.
local function fresh()
  return {sadd = {}, srem = {}, zadd = {}, zrem = {}, count = {}, gadd = {}, grem = {}, gproc = {}}
end
local pend = fresh()

local function defer(tbl, key, v)
  local list = tbl[key]
  if not list then list = {}; tbl[key] = list end
  list[#list + 1] = v
end

local function defer2(tbl, key, a, b)
  local list = tbl[key]
  if not list then list = {}; tbl[key] = list end
  local n = #list
  list[n + 1] = a
  list[n + 2] = b
end

-- Fair groups. A task of group grp (nil: none) that is pending is in the
-- group's index g:<grp> (score -priority, so priority then id order) and
-- counted in the count field _g (grouped pending tasks: the lease takes its
-- fast path while it is 0); gs holds the names of the groups with pending
-- tasks (all scores 0: name order); gp counts each group's processing tasks
-- while the count field _gk is set.
--
-- gp is kept only while group_concurrency could bind: two HINCRBYs per
-- grouped task (lease and settle) were a large part of what groups cost,
-- and without a cap, or with one no group can reach, nobody reads gp. The
-- lease that first needs it builds it from z:processing and sets _gk
-- (build_gp); a lease of a queue without a cap drops it again.
local GP_KEPT = nil  -- whether gp is kept (read once per script, when needed)
local function gp_kept()
  if GP_KEPT == nil then GP_KEPT = redis.call('HEXISTS', COUNTS, '_gk') == 1 end
  return GP_KEPT
end

local function grouped(id, st, prio, grp, delta)
  if st == 'pending' then
    if delta > 0 then defer2(pend.gadd, grp, -tonumber(prio), id) else defer(pend.grem, grp, id) end
    pend.count['_g'] = (pend.count['_g'] or 0) + delta
  elseif st == 'processing' and gp_kept() then
    pend.gproc[grp] = (pend.gproc[grp] or 0) + delta
  end
end

-- start keeping gp: count the processing tasks of each group
local function build_gp()
  local n = {}
  for _, id in ipairs(redis.call('ZRANGE', QP .. 'z:processing', 0, -1)) do
    local grp = redis.call('HGET', tkey(id), 'gr')
    if grp then n[grp] = (n[grp] or 0) + 1 end
  end
  redis.call('DEL', QP .. 'gp')
  local args = {}
  for grp, c in pairs(n) do args[#args + 1] = grp; args[#args + 1] = c end
  for j = 1, #args, 4000 do
    redis.call('HSET', QP .. 'gp', unpack(args, j, math.min(j + 3999, #args)))
  end
  redis.call('HSET', COUNTS, '_gk', '1')
  GP_KEPT = true
end

-- stop keeping gp
local function drop_gp()
  redis.call('DEL', QP .. 'gp')
  redis.call('HDEL', COUNTS, '_gk')
  GP_KEPT = false
end

-- the task leaves state st: out of its stream, time index and count
local function leave(id, st, prio, name, grp)
  local s = stream(st, prio, name, grp)
  if s then defer(pend.srem, s, id) end
  if st ~= 'pending' then defer(pend.zrem, st, id) end
  pend.count[st] = (pend.count[st] or 0) - 1
  if grp then grouped(id, st, prio, grp, -1) end
end

-- the task enters state st (at: its time for the state's time index)
local function enter(id, st, prio, name, at, grp)
  local s = stream(st, prio, name, grp)
  if s then defer(pend.sadd, s, id) end
  if st ~= 'pending' then defer2(pend.zadd, st, at, id) end
  pend.count[st] = (pend.count[st] or 0) + 1
  if grp then grouped(id, st, prio, grp, 1) end
  note(id, name, st)
end

-- write the group indexes: a group is in gs exactly while g:<grp> exists,
-- so gs changes only for a group that gains its first task or loses its
-- last (an EXISTS before and after; a ZADD to gs, a listpack of up to 128
-- names, costs many times one, and a lease touched every group it served).
-- A LEASE knows without asking, of each group it took tasks from, that the
-- group held tasks and whether it holds more (it read one id ahead): it
-- tells in GROUP_LEFT, which spares those groups both EXISTS calls.
local GROUP_LEFT = {}  -- group -> whether g:<group> holds ids after the script's removals
local function flush_groups()
  local before = {}
  for grp in pairs(pend.grem) do
    if GROUP_LEFT[grp] == nil or pend.gadd[grp] then
      before[grp] = redis.call('EXISTS', QP .. 'g:' .. grp)
    elseif not GROUP_LEFT[grp] then
      redis.call('ZREM', QP .. 'gs', grp)
    end
  end
  for grp in pairs(pend.gadd) do
    if not before[grp] then before[grp] = redis.call('EXISTS', QP .. 'g:' .. grp) end
  end
  for grp, ids in pairs(pend.grem) do zmany('ZREM', QP .. 'g:' .. grp, ids) end
  for grp, args in pairs(pend.gadd) do zmany('ZADD', QP .. 'g:' .. grp, args) end
  for grp, was in pairs(before) do
    local is = redis.call('EXISTS', QP .. 'g:' .. grp)
    if is == 1 and was == 0 then redis.call('ZADD', QP .. 'gs', 0, grp)
    elseif is == 0 and was == 1 then redis.call('ZREM', QP .. 'gs', grp) end
  end
  GROUP_LEFT = {}
  for grp, n in pairs(pend.gproc) do
    if n ~= 0 and redis.call('HINCRBY', QP .. 'gp', grp, n) <= 0 then redis.call('HDEL', QP .. 'gp', grp) end
  end
end

local function flush()
  for s, ids in pairs(pend.srem) do table.sort(ids); stream_rem_sorted(s, ids) end
  for st, ids in pairs(pend.zrem) do zmany('ZREM', QP .. 'z:' .. st, ids) end
  for s, ids in pairs(pend.sadd) do table.sort(ids); stream_add_sorted(s, ids) end
  for st, args in pairs(pend.zadd) do zmany('ZADD', QP .. 'z:' .. st, args) end
  flush_groups()
  for st, n in pairs(pend.count) do
    if n ~= 0 then redis.call('HINCRBY', COUNTS, st, n) end
  end
  pend = fresh()
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

-- a unique task (unique key uk, or nil) finished or is gone: let go of its
-- key if it still holds it
local function unlock(id, name, uk)
  if uk then
    local k = QP .. 'u:' .. name .. ':' .. uk
    if redis.call('GET', k) == id then redis.call('DEL', k) end
  end
end

-- delete a task that is in state st with fields name and prio
local function destroy(id, st, prio, name)
  local h = tkey(id)
  local f = redis.call('HMGET', h, 'k', 'uk', 'gr')
  leave(id, st, prio, name, f[3])
  if f[1] and redis.call('GET', QP .. 'i:' .. f[1]) == id then redis.call('DEL', QP .. 'i:' .. f[1]) end
  unlock(id, name, f[2])
  redis.call('DEL', h)
  note(id, name, 'deleted')
end

-- back to pending with its attempt budget granted again (retry, redrive)
local function revive(id, h, st, prio, name)
  local f = redis.call('HMGET', h, 'a', 'b', 'gr')
  leave(id, st, prio, name, f[3])
  redis.call('HSET', h, 's', 'pending', 'm', (tonumber(f[1] or '0') + tonumber(f[2])))
  -- uu: a revived task no longer holds its unique key
  redis.call('HDEL', h, 'f', 'u', 'o', 'w', 'l', 'z', 'uu')
  enter(id, 'pending', prio, name, nil, f[3])
end

-- write the deferred changes, then announce them (every script that
-- changes tasks ends with this)
local function publish(event)
  flush()
  if #changes == 0 and not event then return '' end
  local msg = ORIGIN .. ' ' .. cjson.encode({q = QN, c = changes, e = event or ''})
  redis.call('PUBLISH', CHAN, msg)
  return msg
end
""".replace("@HISTORY@", str(ERROR_HISTORY))
