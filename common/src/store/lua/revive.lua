-- REVIVE: runs a task that ended failed/timeout/cancelled again (a new attempt) and un-skips
-- the dependents it had skipped (reading their dependencies from the spec's `deps` field,
-- pinned by a test in common/src/model/spec.rs). Re-opens a finished run.
-- KEYS: the run's keys (prelude.lua)
-- Errors: NORUN when the run has no `meta` (it expired or Redis lost it): nothing is written.
-- ARGV: idx now_ms
-- Returns: the new attempt, or 0 when the task is not in such a state.
if redis.call('EXISTS', meta) == 0 then return redis.error_reply('NORUN the run has no state in Redis') end
local idx, now = ARGV[1], ARGV[2]
local st = redis.call('HGET', state, idx)
if st ~= 'failed' and st ~= 'timeout' and st ~= 'cancelled' then return 0 end
redis.call('HINCRBY', meta, st, -1)
redis.call('HINCRBY', meta, 'done', -1)
local nxt = tonumber(redis.call('HGET', attempt, idx) or '0') + 1
redis.call('HSET', state, idx, 'queued')
redis.call('HSET', attempt, idx, nxt)
local last = redis.call('HGET', result, idx)
if last then redis.call('HSET', history, idx .. ':' .. (nxt - 1), last) end
redis.call('HDEL', result, idx)
redis.call('HDEL', deliveries, idx)
redis.call('HDEL', cancel, idx)
redis.call('RPUSH', outbox, idx .. ':' .. nxt)
event('idx', idx, 'state', 'queued', 'revived', nxt)
walk_dependents(idx, function(c, cur)
  if redis.call('HGET', state, c) ~= 'skipped' or redis.call('HGET', skip, c) ~= cur then return false end
  local deps = cmsgpack.unpack(redis.call('HGET', spec, c))['deps'] or {}
  local left = 0
  for _, d in ipairs(deps) do
    if redis.call('HGET', state, tostring(d)) ~= 'success' then left = left + 1 end
  end
  redis.call('HSET', state, c, 'waiting')
  redis.call('HSET', pending, c, left)
  redis.call('HDEL', skip, c)
  redis.call('HINCRBY', meta, 'skipped', -1)
  redis.call('HINCRBY', meta, 'done', -1)
  event('idx', c, 'state', 'waiting')
  return true
end)
if redis.call('HGET', meta, 'status') == 'finished' then
  redis.call('HSET', meta, 'status', 'running')
  redis.call('HDEL', meta, 'finished_ms')
  for i = 1, #KEYS do redis.call('PERSIST', KEYS[i]) end
end
return nxt
