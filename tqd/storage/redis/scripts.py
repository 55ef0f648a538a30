"""The Lua scripts of the Redis backend, one named constant per operation.

Every queue script runs in the hash slot of one queue and shares this
calling convention (see keys.py for the layout)::

    KEYS[1]  the queue's counts hash  tqd:{q:Q}:c
    ARGV[1]  the queue's key prefix   tqd:{q:Q}:
    ARGV[2]  the queue's name
    ARGV[3]  the events channel       tqd:events
    ARGV[4]  the origin of the caller (so a process skips its own events)
    ARGV[5…] the operation's own arguments, given in each header below

A script that changes tasks PUBLISHes one message for its whole batch and
returns ``{result, message}`` (message is '' when nothing changed), so the
caller emits exactly what other processes receive. The message is the
origin, a space and JSON: ``{"q": queue, "c": [id, name, state, id, name,
state, …], "e": queue event or ""}``; state "deleted" means the task is gone.
The origin comes first so a process drops its own messages without decoding
them.

Times arrive as decimal strings (Python's repr of the caller's ``now``) and
are stored as given; a time the script computes is written with ``%.17g`` so
it reads back as the same double. Scripts never call TIME.

Errors a caller maps to tqd errors: ``TQD_NOT_FOUND``, ``TQD_CONFLICT
<state>``, ``TQD_DUPLICATE_ID <id>``, ``TQD_LIMITS_CHANGED``.
"""

from __future__ import annotations

from tqd.storage.redis.prelude import PRELUDE


def _queue_script(body: str) -> str:
    return PRELUDE + body


# ENQUEUE: store new tasks of one queue, all or nothing.
# ARGV[5]  number of tasks N, then per task:
#          id, idempotency key or '', state, name, priority, time for the
#          state's index ('' when pending), unique ('' or "<ms to keep the
#          key> <created_at> <unique key>"), group ('' = none), F, then F
#          field/value pairs
# Returns  {results, message}; results has one item per task: 1 = stored,
#          {id} = same idempotency or unique key as an earlier task of this
#          batch (that one), {id, field, value, …} = same key as this stored
#          task.
# Errors   TQD_DUPLICATE_ID <id> (nothing is stored)
ENQUEUE = _queue_script("""
local out, seen, new_ids, todo = {}, {}, {}, {}
local i = 6
for t = 1, tonumber(ARGV[5]) do
  local id, key, st, name, prio, at = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4], ARGV[i + 5]
  local unique, grp = ARGV[i + 6], ARGV[i + 7]
  local nf = tonumber(ARGV[i + 8])
  local first = i + 9
  i = first + 2 * nf
  local res, ukey, ttl = nil, nil, nil
  if key ~= '' then
    if seen[key] then
      res = {seen[key]}
    else
      local prior = redis.call('GET', QP .. 'i:' .. key)
      if prior and redis.call('EXISTS', tkey(prior)) == 1 then
        res = redis.call('HGETALL', tkey(prior))
        table.insert(res, 1, prior)
      end
    end
  end
  if not res and unique ~= '' then
    -- a live task of this name holding the unique key, kept after created_at
    local ms, since, uk = string.match(unique, '^(%d+) (%S+) (.+)$')
    ukey, ttl = QP .. 'u:' .. name .. ':' .. uk, ms
    if seen[ukey] then
      res = {seen[ukey]}
    else
      local twin = redis.call('GET', ukey)
      if twin then
        local f = redis.call('HMGET', tkey(twin), 's', 'uu')
        if (f[1] == 'pending' or f[1] == 'scheduled' or f[1] == 'processing')
            and f[2] and tonumber(f[2]) > tonumber(since) then
          res = redis.call('HGETALL', tkey(twin))
          table.insert(res, 1, twin)
        end
      end
    end
  end
  if res then
    out[t] = res
  else
    if new_ids[id] or redis.call('EXISTS', tkey(id)) == 1 then
      return redis.error_reply('TQD_DUPLICATE_ID ' .. id)
    end
    new_ids[id] = true
    if key ~= '' then seen[key] = id end
    if ukey then seen[ukey] = id end
    out[t] = 1
    if grp == '' then grp = false end
    todo[#todo + 1] = {id, key, st, name, prio, at, first, first + 2 * nf - 1, ukey, ttl, grp}
  end
end
for _, t in ipairs(todo) do
  redis.call('HSET', tkey(t[1]), unpack(ARGV, t[7], t[8]))
  if t[2] ~= '' then redis.call('SET', QP .. 'i:' .. t[2], t[1]) end
  if t[9] then redis.call('SET', t[9], t[1], 'PX', t[10]) end
  enter(t[1], t[3], t[5], t[4], t[6], t[11])
end
return {out, publish()}
""")

# LEASE: hand out up to N pending tasks under the queue's limits: highest
# priority first, then oldest; in turns over the groups when the queue holds
# grouped pending tasks (the contract of Storage.lease tells the order).
# ARGV[5]  limit N
# ARGV[6]  worker id
# ARGV[7]  now
# ARGV[8]  random hex; token i is <hex><i in hex>:<queue>
# ARGV[9]  visibility timeout for this lease ('' = each task's own)
# Returns  {{id, {field, value, ...} as before the lease, token, lease expiry,
#          ...}, message, limited, retry_in}; limited is '' or the limit that
#          held tasks back (concurrency, group, rate), retry_in '' or the
#          seconds until the next rate token. Nothing when paused. The caller
#          applies the lease (s, l, z, g, w) to the fields: one HGETALL fewer
#          per task.
#
# The counts hash also holds the queue's settings, in fields starting with
# '_' (one HGETALL reads them with the counts; see keys.py): _c concurrency,
# _r rate_limit, _i rate_interval, _b rate_burst, _gc group_concurrency, _t
# and _tt the rate bucket's tokens and the time they were counted at, _x the
# group served last (the rotation cursor; '' = the ungrouped tasks), _d the
# config digest, _g the number of grouped pending tasks, _gk set while gp
# (each group's processing tasks) is kept (see the prelude).
LEASE = _queue_script("""
if redis.call('EXISTS', QP .. 'paused') == 1 then return {{}, '', '', ''} end
local limit, worker, now = tonumber(ARGV[5]), ARGV[6], ARGV[7]
local vis = tonumber(ARGV[9] or '')
local tnow = tonumber(now)
local q = {}
local raw = redis.call('HGETALL', COUNTS)
for k = 1, #raw, 2 do q[raw[k]] = raw[k + 1] end

-- the queue limits: at most `allowed` tasks, `binding` the limit setting it
local allowed, binding = limit, nil
local cc = tonumber(q._c)
if cc then
  local room = math.max(0, cc - tonumber(q.processing or '0'))
  if room < allowed then allowed, binding = room, 'concurrency' end
end
local rl, tokens, per_sec, last = tonumber(q._r), nil, nil, nil
if rl then
  local burst = tonumber(q._b or q._r)
  per_sec = rl / tonumber(q._i or '1')
  last = tonumber(q._tt or now)
  tokens = math.min(burst, tonumber(q._t or burst) + math.max(0, tnow - last) * per_sec)
  local whole = math.floor(tokens + 1e-9)
  if whole < allowed then allowed, binding = whole, 'rate' end
end
-- one task more than allowed, if there is one, tells that a limit held it back
local ask = math.min(limit, allowed + 1)
-- gc: the group cap, when this lease could meet it (no group holds more
-- than the queue's processing tasks); gp is read then, and kept from then on
local gc = tonumber(q._gc)
GP_KEPT = q._gk ~= nil
if not gc then
  if GP_KEPT then drop_gp() end
elseif tonumber(q.processing or '0') + ask <= gc then
  gc = nil
elseif not GP_KEPT then
  build_gp()
end

-- the first n ungrouped pending ids in lease order (priority, then id)
local function ungrouped_first(n)
  local streams, prios = {}, {}
  for _, s in ipairs(redis.call('SMEMBERS', QP .. 'xs')) do
    local p = string.match(s, '^pending:(%-?%d+):')
    if p then
      p = tonumber(p)
      if not streams[p] then streams[p] = {}; prios[#prios + 1] = p end
      table.insert(streams[p], s)
    end
  end
  table.sort(prios, function(a, b) return a > b end)
  local picked = {}
  for _, p in ipairs(prios) do
    local need = n - #picked
    if need <= 0 then break end
    local ids = {}
    for _, s in ipairs(streams[p]) do
      for _, id in ipairs(stream_first(s, need)) do ids[#ids + 1] = id end
    end
    if #streams[p] > 1 then table.sort(ids) end
    for j = 1, math.min(need, #ids) do picked[#picked + 1] = ids[j] end
  end
  return picked
end

local picks, served = {}, {}  -- ids, and the group of each ('' = none)
local capped = false          -- a group with tasks was held back by _gc
local ahead = {}              -- group -> its first pending ids, as far as read
local grouped_n = tonumber(q._g or '0')
if ask > 0 and grouped_n == 0 then
  -- the fast path: no grouped task is pending
  for _, id in ipairs(ungrouped_first(ask)) do picks[#picks + 1] = id; served[#served + 1] = '' end
elseif ask > 0 then
  local ungrouped_n = tonumber(q.pending or '0') - grouped_n
  -- the first turn: up to ask groups with room, in rotation order after
  -- the cursor ('' first, then the names in gs); busy: their processing
  local turn, busy = {}, {}
  local function consider(names)
    if #names == 0 then return end
    local running = {}
    if gc then running = redis.call('HMGET', QP .. 'gp', unpack(names)) end
    for j, g in ipairs(names) do
      if #turn >= ask then return end
      local r = tonumber(running[j]) or 0
      if gc and r >= gc then capped = true else turn[#turn + 1] = g; busy[g] = r end
    end
  end
  local function scan(lo, hi)
    local off = 0
    while #turn < ask do
      local names = redis.call('ZRANGEBYLEX', QP .. 'gs', lo, hi, 'LIMIT', off, 256)
      consider(names)
      if #names < 256 then return end
      off = off + 256
    end
  end
  local function ungrouped()
    if ungrouped_n > 0 and #turn < ask then turn[#turn + 1] = ''; busy[''] = 0 end
  end
  local cursor = q._x
  if not cursor then ungrouped(); scan('-', '+')
  elseif cursor == '' then scan('-', '+'); ungrouped()
  else scan('(' .. cursor, '+'); ungrouped(); scan('-', '[' .. cursor) end
  -- A group's first pending ids, read as the turns need them, always one
  -- further than the last id used: after the lease it is known, without a
  -- call, whether the group still holds tasks (flush_groups' hint).
  local ended = {}
  local function at(g, n)  -- the id at 0-based index n in g:<g>, or nil
    local b = ahead[g]
    if not b then b = {}; ahead[g] = b end
    if n + 2 > #b and not ended[g] then  -- index n + 1 not read yet
      for _, id in ipairs(redis.call('ZRANGE', QP .. 'g:' .. g, #b, n + 1)) do b[#b + 1] = id end
      if #b < n + 2 then ended[g] = true end
    end
    return b[n + 1]
  end
  -- Turns: when the first turn holds fewer than ask groups it holds every
  -- group with room, so the next turns go round the same list.
  local taken, done, live, ung = {}, {}, #turn, nil
  while #picks < ask and live > 0 do
    for _, g in ipairs(turn) do
      if #picks >= ask then break end
      if not done[g] then
        local n, id = taken[g] or 0, nil
        if g == '' then
          ung = ung or ungrouped_first(math.min(ask, ungrouped_n))
          id = ung[n + 1]
        else
          id = at(g, n)
          if id and gc and busy[g] + n >= gc then capped = true; id = nil end
        end
        if id then
          picks[#picks + 1] = id; served[#served + 1] = g; taken[g] = n + 1
        else
          done[g] = true; live = live - 1
        end
      end
    end
  end
end

local limited, retry_in = '', ''
local want = math.min(limit, allowed)
if #picks > want then
  for j = #picks, want + 1, -1 do picks[j] = nil end
  limited = binding
elseif capped and #picks < limit then
  limited = 'group'
end
if grouped_n > 0 then
  -- each group leased from held tasks before, and holds some after when an
  -- id beyond those leased was read (at() reads one ahead)
  local kept = {}
  for j = 1, #picks do
    local g = served[j]
    if g ~= '' then kept[g] = (kept[g] or 0) + 1 end
  end
  for g, k in pairs(kept) do GROUP_LEFT[g] = ahead[g][k + 1] ~= nil end
end
local set = {}
if #picks > 0 then
  if served[#picks] ~= q._x then set[#set + 1] = '_x'; set[#set + 1] = served[#picks] end
  if rl then
    set[#set + 1] = '_t'; set[#set + 1] = fmt(tokens - #picks)
    set[#set + 1] = '_tt'; set[#set + 1] = fmt(math.max(last, tnow))
  end
end
if #set > 0 then redis.call('HSET', COUNTS, unpack(set)) end
if limited == 'rate' then
  local left = tokens - #picks
  retry_in = fmt((math.floor(left + 1e-9) + 1 - left) / per_sec)
end

local out = {}
for j, id in ipairs(picks) do
  local h = tkey(id)
  local f = redis.call('HGETALL', h)
  local name, prio, vt, grp = nil, '0', nil, nil
  for k = 1, #f, 2 do
    local key = f[k]
    if key == 'n' then name = f[k + 1] elseif key == 'r' then prio = f[k + 1]
    elseif key == 'v' then vt = f[k + 1] elseif key == 'gr' then grp = f[k + 1] end
  end
  leave(id, 'pending', prio, name, grp)
  local exp = fmt(tnow + (vis or tonumber(vt)))
  local token = ARGV[8] .. string.format('%x', j) .. ':' .. QN
  redis.call('HSET', h, 's', 'processing', 'l', token, 'z', exp, 'g', now, 'w', worker)
  enter(id, 'processing', prio, name, exp, grp)
  out[#out + 1] = id
  out[#out + 1] = f
  out[#out + 1] = token
  out[#out + 1] = exp
end
return {out, publish(), limited, retry_in}
""")

# EXTEND: push lease deadlines to now + visibility timeout.
# ARGV[5]  now
# ARGV[6]  visibility timeout for this extension ('' = each task's own),
#          then pairs: task id, lease token
# Returns  {1 or 0 per pair}: whether the lease was still held
EXTEND = _queue_script("""
local now, vis, out = tonumber(ARGV[5]), tonumber(ARGV[6]), {}
for j = 7, #ARGV, 2 do
  local h = tkey(ARGV[j])
  local f = redis.call('HMGET', h, 's', 'l', 'v')
  if f[1] == 'processing' and f[2] == ARGV[j + 1] then
    local exp = fmt(now + (vis or tonumber(f[3])))
    redis.call('HSET', h, 'z', exp)
    redis.call('ZADD', QP .. 'z:processing', exp, ARGV[j])
    out[#out + 1] = 1
  else
    out[#out + 1] = 0
  end
end
return out
""")

# SETTLE: record how leased tasks ended, each only under its current token.
# ARGV[5]  now, then per outcome 6 items: task id, token, kind (c = complete,
#          f = fail, r = release), data (result or error JSON; '' = none),
#          retry_at ('' = no retry), started_at (when the handler began; ''
#          = keep the lease time; not for a release)
# Returns  {{1 or 0 per outcome}, message}
SETTLE = _queue_script("""
local now, out = ARGV[5], {}
for j = 6, #ARGV, 6 do
  local id, kind, data, rat = ARGV[j], ARGV[j + 2], ARGV[j + 3], ARGV[j + 4]
  local h = tkey(id)
  local f = redis.call('HMGET', h, 's', 'l', 'n', 'r', 'a', 'uk', 'gr')
  if f[1] ~= 'processing' or f[2] ~= ARGV[j + 1] then
    out[#out + 1] = 0
  else
    out[#out + 1] = 1
    local started = ARGV[j + 5]
    local name, prio, grp = f[3], f[4] or '0', f[7]
    leave(id, 'processing', prio, name, grp)
    if kind == 'c' or (kind == 'f' and rat == '') then unlock(id, name, f[6]) end
    if kind == 'c' then
      -- one HSET for the whole completion (this is the hot path)
      local set = {'s', 'completed', 'f', now, 'a', tonumber(f[5] or '0') + 1}
      if data ~= '' then set[#set + 1] = 'o'; set[#set + 1] = data end
      if started ~= '' then set[#set + 1] = 'g'; set[#set + 1] = started end
      redis.call('HSET', h, unpack(set))
      if data ~= '' then redis.call('HDEL', h, 'l', 'z') else redis.call('HDEL', h, 'l', 'z', 'o') end
      enter(id, 'completed', prio, name, now, grp)
    elseif kind == 'r' then
      redis.call('HDEL', h, 'l', 'z', 'w')
      redis.call('HSET', h, 's', 'pending')
      enter(id, 'pending', prio, name, nil, grp)
    else
      redis.call('HDEL', h, 'l', 'z')
      if started ~= '' then redis.call('HSET', h, 'g', started) end
      redis.call('HINCRBY', h, 'a', 1)
      push_error(h, data)
      if rat ~= '' then
        redis.call('HDEL', h, 'w')
        redis.call('HSET', h, 's', 'scheduled', 'u', rat)
        enter(id, 'scheduled', prio, name, rat, grp)
      else
        redis.call('HSET', h, 's', 'failed', 'f', now)
        enter(id, 'failed', prio, name, now, grp)
      end
    end
  end
end
return {out, publish()}
""")

# PROGRESS: store the latest progress of running tasks, each only under
# its current lease token.
# ARGV[5…] per report 3 items: task id, token, progress JSON
# Returns  {1 or 0 per report}
PROGRESS = _queue_script("""
local out = {}
for j = 5, #ARGV, 3 do
  local h = tkey(ARGV[j])
  local f = redis.call('HMGET', h, 's', 'l')
  if f[1] == 'processing' and f[2] == ARGV[j + 1] then
    redis.call('HSET', h, 'pg', ARGV[j + 2])
    out[#out + 1] = 1
  else
    out[#out + 1] = 0
  end
end
return out
""")

# RECLAIM: take back tasks whose lease expired before now (worker = ''), or
# every task leased to one worker; the lost attempt counts.
# ARGV[5]  now
# ARGV[6]  limit (ignored for a worker)
# ARGV[7]  worker id or ''
# ARGV[8]  now as RFC 3339 (the time of the "lost" error)
# Returns  {{id, {field, value, …}, …}, message}
RECLAIM = _queue_script("""
local now, ids = ARGV[5], nil
if ARGV[7] == '' then
  ids = redis.call('ZRANGEBYSCORE', QP .. 'z:processing', '-inf', '(' .. now, 'LIMIT', 0, tonumber(ARGV[6]))
else
  ids = {}
  for _, id in ipairs(redis.call('ZRANGE', QP .. 'z:processing', 0, -1)) do
    if redis.call('HGET', tkey(id), 'w') == ARGV[7] then ids[#ids + 1] = id end
  end
end
local out = {}
for _, id in ipairs(ids) do
  local h = tkey(id)
  local f = redis.call('HMGET', h, 'n', 'r', 'a', 'm', 'w', 'uk', 'gr')
  local name, prio, grp = f[1], f[2] or '0', f[7]
  local attempts = tonumber(f[3] or '0') + 1
  leave(id, 'processing', prio, name, grp)
  push_error(h, cjson.encode({attempt = attempts, kind = 'lost', at = ARGV[8],
    message = 'the lease of worker ' .. (f[5] or 'None') .. ' expired before the task was settled'}))
  redis.call('HDEL', h, 'l', 'z', 'w')
  if attempts >= tonumber(f[4]) then
    redis.call('HSET', h, 's', 'failed', 'a', attempts, 'f', now)
    unlock(id, name, f[6])
    enter(id, 'failed', prio, name, now, grp)
  else
    redis.call('HSET', h, 's', 'pending', 'a', attempts)
    enter(id, 'pending', prio, name, nil, grp)
  end
  out[#out + 1] = id
  out[#out + 1] = redis.call('HGETALL', h)
end
return {out, publish()}
""")

# PROMOTE: make scheduled tasks whose run_at has come pending.
# ARGV[5]  now
# ARGV[6]  limit
# Returns  {number promoted, message}
PROMOTE = _queue_script("""
local ids = redis.call('ZRANGEBYSCORE', QP .. 'z:scheduled', '-inf', ARGV[5], 'LIMIT', 0, tonumber(ARGV[6]))
for _, id in ipairs(ids) do
  local h = tkey(id)
  local f = redis.call('HMGET', h, 'n', 'r', 'gr')
  leave(id, 'scheduled', f[2] or '0', f[1], f[3])
  redis.call('HSET', h, 's', 'pending')
  enter(id, 'pending', f[2] or '0', f[1], nil, f[3])
end
return {#ids, publish()}
""")

# EXPIRE: delete tasks in a finished state that finished before a time.
# ARGV[5]  state
# ARGV[6]  before
# ARGV[7]  limit
# Returns  {number deleted, message}
EXPIRE = _queue_script("""
local st = ARGV[5]
local ids = redis.call('ZRANGEBYSCORE', QP .. 'z:' .. st, '-inf', '(' .. ARGV[6], 'LIMIT', 0, tonumber(ARGV[7]))
for _, id in ipairs(ids) do
  local f = redis.call('HMGET', tkey(id), 'n', 'r')
  destroy(id, st, f[2] or '0', f[1])
end
return {#ids, publish()}
""")

# CANCEL: cancel a pending, scheduled or processing task (revoking its lease).
# ARGV[5]  task id
# ARGV[6]  now
# Returns  {{field, value, …}, message}
# Errors   TQD_NOT_FOUND, TQD_CONFLICT <state>
CANCEL = _queue_script("""
local id, now = ARGV[5], ARGV[6]
local h = tkey(id)
local f = redis.call('HMGET', h, 's', 'n', 'r', 'uk', 'gr')
if not f[1] then return redis.error_reply('TQD_NOT_FOUND') end
if f[1] ~= 'pending' and f[1] ~= 'scheduled' and f[1] ~= 'processing' then
  return redis.error_reply('TQD_CONFLICT ' .. f[1])
end
leave(id, f[1], f[3] or '0', f[2], f[5])
unlock(id, f[2], f[4])
redis.call('HSET', h, 's', 'cancelled', 'f', now)
redis.call('HDEL', h, 'l', 'z')
enter(id, 'cancelled', f[3] or '0', f[2], now, f[5])
return {redis.call('HGETALL', h), publish()}
""")

# RETRY: put a failed or cancelled task back to pending, budget granted again.
# ARGV[5]  task id
# Returns  {{field, value, …}, message}
# Errors   TQD_NOT_FOUND, TQD_CONFLICT <state>
RETRY = _queue_script("""
local id = ARGV[5]
local h = tkey(id)
local f = redis.call('HMGET', h, 's', 'n', 'r')
if not f[1] then return redis.error_reply('TQD_NOT_FOUND') end
if f[1] ~= 'failed' and f[1] ~= 'cancelled' then return redis.error_reply('TQD_CONFLICT ' .. f[1]) end
revive(id, h, f[1], f[3] or '0', f[2])
return {redis.call('HGETALL', h), publish()}
""")

# DELETE: delete a task that is not processing.
# ARGV[5]  task id
# Returns  {1, message}
# Errors   TQD_NOT_FOUND, TQD_CONFLICT processing
DELETE = _queue_script("""
local id = ARGV[5]
local f = redis.call('HMGET', tkey(id), 's', 'n', 'r')
if not f[1] then return redis.error_reply('TQD_NOT_FOUND') end
if f[1] == 'processing' then return redis.error_reply('TQD_CONFLICT processing') end
destroy(id, f[1], f[3] or '0', f[2])
return {1, publish()}
""")

# SET_PAUSED: pause (ARGV[5] = '1') or resume (ARGV[5] = '0') the queue.
# Returns  {1, message}
SET_PAUSED = _queue_script("""
if ARGV[5] == '1' then
  redis.call('SET', QP .. 'paused', '1')
  return {1, publish('paused')}
end
redis.call('DEL', QP .. 'paused')
return {1, publish('resumed')}
""")

# SET_LIMITS: replace the queue's limits (fields of the counts hash, see
# LEASE) and fill its rate bucket.
# ARGV[5…9] concurrency, rate_limit, rate_interval, rate_burst,
#          group_concurrency, each '' when unset (rate_interval: when 1)
# ARGV[10] now
# ARGV[11] config digest, or '' to keep the stored one; '=' + digest
# ARGV[12…16] with ARGV[12] ~= '-': the limits expected to be stored now,
#          encoded as ARGV[5…9]; compared by number, so '2' equals '2.0'
# Returns  {1, message}
# Errors   TQD_LIMITS_CHANGED (the stored limits are not the expected ones)
SET_LIMITS = _queue_script("""
local names = {'_c', '_r', '_i', '_b', '_gc'}
if ARGV[12] ~= '-' then
  local stored = redis.call('HMGET', COUNTS, unpack(names))
  for j = 1, 5 do
    local want = ARGV[11 + j]
    if tonumber(stored[j] or '') ~= tonumber(want) then
      return redis.error_reply('TQD_LIMITS_CHANGED')
    end
  end
end
for j, f in ipairs(names) do
  if ARGV[4 + j] == '' then redis.call('HDEL', COUNTS, f) else redis.call('HSET', COUNTS, f, ARGV[4 + j]) end
end
if ARGV[6] ~= '' then
  redis.call('HSET', COUNTS, '_t', ARGV[8] ~= '' and ARGV[8] or ARGV[6], '_tt', ARGV[10])
else
  redis.call('HDEL', COUNTS, '_t', '_tt')
end
if ARGV[11] ~= '' then redis.call('HSET', COUNTS, '_d', string.sub(ARGV[11], 2)) end
return {1, publish('limits')}
""")

# PURGE: delete up to limit tasks of one state (never processing).
# ARGV[5]  state
# ARGV[6]  limit
# Returns  {number deleted, message}
PURGE = _queue_script("""
local st, limit = ARGV[5], tonumber(ARGV[6])
local ids = {}
if st == 'pending' then
  for _, s in ipairs(redis.call('SMEMBERS', QP .. 'xs')) do
    if #ids >= limit then break end
    if string.match(s, '^pending:') then
      for _, id in ipairs(stream_first(s, limit - #ids)) do ids[#ids + 1] = id end
    end
  end
elseif st ~= 'processing' then
  ids = redis.call('ZRANGE', QP .. 'z:' .. st, 0, limit - 1)
end
for _, id in ipairs(ids) do
  local f = redis.call('HMGET', tkey(id), 'n', 'r')
  destroy(id, st, f[2] or '0', f[1])
end
if #ids > 0 then return {#ids, publish('purged')} end
return {0, ''}
""")

# REDRIVE: put up to limit failed tasks back to pending, as RETRY does.
# ARGV[5]  limit
# Returns  {number revived, message}
REDRIVE = _queue_script("""
local ids = redis.call('ZRANGE', QP .. 'z:failed', 0, tonumber(ARGV[5]) - 1)
for _, id in ipairs(ids) do
  local h = tkey(id)
  local f = redis.call('HMGET', h, 'n', 'r')
  revive(id, h, 'failed', f[2] or '0', f[1])
end
return {#ids, publish()}
""")

# LIST_IDS: newest ids of the queue matching the filters (read only).
# ARGV[5]  state or ''
# ARGV[6]  task name or ''
# ARGV[7]  cursor: only ids below this one, or ''
# ARGV[8]  limit
# Returns  up to limit ids, newest first
LIST_IDS = _queue_script("""
local limit, ids = tonumber(ARGV[8]), {}
if ARGV[5] == '' or ARGV[5] == 'processing' then
  -- processing tasks have no stream; there are few (as many as workers run)
  for _, id in ipairs(redis.call('ZRANGE', QP .. 'z:processing', 0, -1)) do
    if (ARGV[7] == '' or id < ARGV[7])
        and (ARGV[6] == '' or redis.call('HGET', tkey(id), 'n') == ARGV[6]) then
      ids[#ids + 1] = id
    end
  end
end
for _, s in ipairs(redis.call('SMEMBERS', QP .. 'xs')) do
  local st, name = string.match(s, '^(%a+):'), string.match(s, ':([^:]+)$')
  if (ARGV[5] == '' or ARGV[5] == st) and (ARGV[6] == '' or ARGV[6] == name) then
    for _, id in ipairs(stream_below(s, ARGV[7], limit)) do ids[#ids + 1] = id end
  end
end
table.sort(ids, function(a, b) return a > b end)
local out = {}
for j = 1, math.min(limit, #ids) do out[j] = ids[j] end
return out
""")

# WORKER_REGISTER: record a live process and forget the expired ones.
# KEYS[1]  tqd:{w}:exp   KEYS[2]  tqd:{w}:info
# ARGV[1]  worker id   ARGV[2]  its WorkerInfo JSON   ARGV[3]  expiry   ARGV[4]  now
# Returns  1
WORKER_REGISTER = """
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
local gone = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[4])
for _, id in ipairs(gone) do redis.call('HDEL', KEYS[2], id) end
if #gone > 0 then redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[4]) end
return 1
"""

# CLAIM_FIRING: compare-and-set of a cron schedule's last fired instant.
# KEYS[1]  tqd:{cron}:fired
# ARGV[1]  schedule name   ARGV[2]  instant   ARGV[3]  now
# Returns  1 when this call recorded the instant, 0 when an instant at or
#          after it was recorded already
CLAIM_FIRING = """
local old = redis.call('HGET', KEYS[1], ARGV[1])
if old and tonumber(string.match(old, '^%S+')) >= tonumber(ARGV[2]) then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2] .. ' ' .. ARGV[3])
return 1
"""

# STATS_ADD: add counts into one statistics bucket and (re)set its expiry.
# KEYS[1]  tqd:stats:<step>:<queue>:<t>
# ARGV[1]  seconds until the bucket expires
# ARGV[2…] pairs: field (e, c, f or h<i>), increment
# Returns  1
STATS_ADD = """
for j = 2, #ARGV, 2 do redis.call('HINCRBY', KEYS[1], ARGV[j], ARGV[j + 1]) end
redis.call('EXPIRE', KEYS[1], ARGV[1])
return 1
"""

#: Every script, by name (loaded at open, reloaded after a NOSCRIPT).
ALL: dict[str, str] = {
    name: value
    for name, value in dict(globals()).items()
    if name.isupper() and isinstance(value, str) and not name.startswith("_")
}
