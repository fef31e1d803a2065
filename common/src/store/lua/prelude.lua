-- Prelude of every run script (prepended to mark_running, renew, record_result, release,
-- promote, cancel and revive).
-- KEYS: all keys of one run, in RUN_KEY_SUFFIXES order (common/src/store/keys.rs), named here.
-- Helpers: event, for_each_child, release_children, skip_dependents, maybe_finish, lease_owner.
local meta, spec, state, attempt, pending, children, result, skip, outbox, events, lease, delayed, history, cancel, deliveries = unpack(KEYS)
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
-- Every waiting descendant of a task that did not succeed is skipped.
local function skip_dependents(root)
  walk_dependents(root, function(c, cur)
    if redis.call('HGET', state, c) ~= 'waiting' then return false end
    redis.call('HSET', state, c, 'skipped')
    redis.call('HSET', skip, c, cur)
    redis.call('HINCRBY', meta, 'skipped', 1)
    redis.call('HINCRBY', meta, 'done', 1)
    event('idx', c, 'state', 'skipped')
    return true
  end)
end
-- When every task is final: mark the run finished and let its keys expire.
local function maybe_finish(now)
  local done = tonumber(redis.call('HGET', meta, 'done') or '0')
  local total = tonumber(redis.call('HGET', meta, 'total') or '0')
  if done >= total and redis.call('HGET', meta, 'status') ~= 'finished' then
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
