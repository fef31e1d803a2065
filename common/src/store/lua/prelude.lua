-- Prelude of every run script (prepended to mark_running, renew, record_result, release,
-- promote, cancel and revive).
-- KEYS: all keys of one run, in RUN_KEY_SUFFIXES order (common/src/store/keys.rs), named here.
-- Helpers: event, for_each_child, walk_dependents, release_children, skip_dependents,
-- run_cascade, maybe_finish, lease_owner.
local meta, spec, state, attempt, pending, children, result, skip, outbox, events, lease, delayed, history, cancel, deliveries, cascade = unpack(KEYS)
local function event(...)
  redis.call('XADD', events, 'MAXLEN', '~', 10000, '*', ...)
end
-- Calls f(child) for every direct dependent of idx (children are stored comma-separated).
local function for_each_child(idx, f)
  local ch = redis.call('HGET', children, idx)
  if ch then
    for c in string.gmatch(ch, '[^,]+') do f(c) end
  end
end
-- Walks the dependents of root depth-first: visit(child, parent) returns true to descend
-- into that child.
local function walk_dependents(root, visit)
  local stack = {root}
  while #stack > 0 do
    local cur = table.remove(stack)
    for_each_child(cur, function(c)
      if visit(c, cur) then table.insert(stack, c) end
    end)
  end
end
-- Dependents whose last dependency just succeeded go to the outbox (attempt 1).
local function release_children(idx)
  local n = 0
  for_each_child(idx, function(c)
    local left = redis.call('HINCRBY', pending, c, -1)
    if left <= 0 and redis.call('HGET', state, c) == 'waiting' then
      redis.call('HSET', state, c, 'queued')
      redis.call('HSET', attempt, c, 1)
      redis.call('RPUSH', outbox, c .. ':1')
      event('idx', c, 'state', 'queued')
      n = n + 1
    end
  end)
  return n
end
-- Every waiting descendant of a task that did not succeed is skipped — in chunks: one script
-- call visits at most `cascade_budget` dependents (meta field, default 2000), and what is left
-- stays in the run's `cascade` list (`idx:byte offset into its children`, durable), which the
-- next call — the recorder's, or any upkeep's — goes on with. A crash between two chunks leaves the rest in
-- the list, never a task waiting forever; the run is not finished while the list is not empty.
local budget = nil -- shared by every cascade of one script call
local function run_cascade()
  budget = budget or tonumber(redis.call('HGET', meta, 'cascade_budget') or '2000')
  local skipped_n, ids = 0, {}
  while budget > 0 do
    local top = redis.call('RPOP', cascade)
    if not top then break end
    local cur, off = string.match(top, '^(%d+):(%d+)$')
    off = tonumber(off)
    -- A task revived since (`dead retry`) no longer skips anything.
    local st = redis.call('HGET', state, cur)
    local ch = nil
    if st == 'failed' or st == 'timeout' or st == 'cancelled' or st == 'skipped' then ch = redis.call('HGET', children, cur) end
    -- `off` is a byte offset into the comma-separated children: each chunk reads only its part.
    local pos = off + 1
    local found = {}
    while ch and pos <= #ch and budget > 0 do
      local comma = string.find(ch, ',', pos, true)
      local c = string.sub(ch, pos, (comma or (#ch + 1)) - 1)
      pos = comma and comma + 1 or #ch + 1
      budget = budget - 1
      if redis.call('HGET', state, c) == 'waiting' then
        redis.call('HSET', state, c, 'skipped')
        redis.call('HSET', skip, c, cur)
        skipped_n = skipped_n + 1
        ids[#ids + 1] = c
        found[#found + 1] = c .. ':0'
      end
    end
    if ch and pos <= #ch then redis.call('RPUSH', cascade, cur .. ':' .. (pos - 1)) end
    for k = 1, #found, 1000 do
      redis.call('RPUSH', cascade, unpack(found, k, math.min(k + 999, #found)))
    end
  end
  if skipped_n > 0 then
    redis.call('HINCRBY', meta, 'skipped', skipped_n)
    redis.call('HINCRBY', meta, 'done', skipped_n)
    for k = 1, #ids, 1000 do
      event('idxs', table.concat(ids, ',', k, math.min(k + 999, #ids)), 'state', 'skipped')
    end
  end
  return redis.call('LLEN', cascade)
end
local function skip_dependents(root)
  redis.call('RPUSH', cascade, root .. ':0')
  run_cascade()
end
-- When every task is final: mark the run finished and let its keys expire.
local function maybe_finish(now)
  local done = tonumber(redis.call('HGET', meta, 'done') or '0')
  local total = tonumber(redis.call('HGET', meta, 'total') or '0')
  if done >= total and redis.call('HGET', meta, 'status') ~= 'finished' and redis.call('LLEN', cascade) == 0 then
    redis.call('HSET', meta, 'status', 'finished', 'finished_ms', now)
    event('state', 'finished')
    local ttl = tonumber(redis.call('HGET', meta, 'retention_s') or '0')
    if ttl and ttl > 0 then
      for i = 1, #KEYS do redis.call('EXPIRE', KEYS[i], ttl) end
    end
    return 1
  end
  return 0
end
local function lease_owner(idx)
  local l = redis.call('HGET', lease, idx)
  if not l then return nil, 0 end
  local owner, exp = string.match(l, '^(.*)|(%d+)$')
  return owner, tonumber(exp or '0')
end
