-- REVIVE: runs a task that ended failed/timeout/cancelled again (a new attempt; it waits for
-- its stage's approval again when the stage was never approved, and is not run when the
-- stage was rejected) and
-- evaluates the dependents it had skipped again (reading their dependencies from the spec's
-- `deps` field, pinned by a test in common/src/model/spec.rs). Re-opens a finished run (and
-- drops its archive mark).
-- KEYS: the run's keys (prelude.lua)
-- Errors: NORUN when the run has no `meta` (it expired or Redis lost it): nothing is written.
-- ARGV: idx now_ms
-- Returns: the new attempt, or 0 when the task is not in such a state (or its stage was
-- rejected).
if redis.call('EXISTS', meta) == 0 then return redis.error_reply('NORUN the run has no state in Redis') end
local idx, now = ARGV[1], ARGV[2]
local st = redis.call('HGET', state, idx)
if st ~= 'failed' and st ~= 'timeout' and st ~= 'cancelled' then return 0 end
-- Approval belongs to the stage, not an attempt: a task of a stage never approved waits for
-- it again; one of a rejected stage is not run.
local stage = stage_of(idx)
local gate = stage and (redis.call('HGET', stages, stage) or '') or 'approved'
if string.sub(gate, 1, 8) == 'rejected' then return 0 end
redis.call('HINCRBY', meta, st, -1)
redis.call('HINCRBY', meta, 'done', -1)
local nxt = tonumber(redis.call('HGET', attempt, idx) or '0') + 1
redis.call('HSET', attempt, idx, nxt)
local last = redis.call('HGET', result, idx)
if last then redis.call('HSET', history, idx .. ':' .. (nxt - 1), last) end
redis.call('HDEL', result, idx)
redis.call('HDEL', deliveries, idx)
redis.call('HDEL', cancel, idx)
redis.call('HDEL', skip, idx)
if string.sub(gate, 1, 8) == 'approved' then
  redis.call('HSET', state, idx, 'queued')
  redis.call('RPUSH', outbox, idx .. ':' .. nxt)
  event('idx', idx, 'state', 'queued', 'revived', nxt)
else
  await_approval(idx, stage, gate, true)
end
-- Its skipped dependents (by a failure or a condition; a rejected stage stays rejected) are
-- evaluated again from their parents' states: waiting again, started, or still skipped (by
-- another parent).
walk_dependents(idx, function(c, cur)
  if redis.call('HGET', state, c) ~= 'skipped' then return false end
  local why = redis.call('HGET', skip, c) or 'd:'
  if string.sub(why, 1, 1) == 'r' then return false end
  local v, by = reevaluate(c)
  if v == 'd' or v == 'c' then
    redis.call('HSET', skip, c, v .. ':' .. by)
    return false
  end
  redis.call('HSET', state, c, 'waiting')
  redis.call('HDEL', skip, c)
  redis.call('HINCRBY', meta, 'skipped', -1)
  redis.call('HINCRBY', meta, 'done', -1)
  event('idx', c, 'state', 'waiting')
  if v == 'go' then start_task(c) end
  return true
end)
run_cascade()
if redis.call('HGET', meta, 'status') == 'finished' then
  redis.call('HSET', meta, 'status', 'running')
  redis.call('HDEL', meta, 'finished_ms')
  -- Its archive mark (or a claim being written) goes: the run is archived again, with its
  -- new outcome, when it finishes again (ARCHIVE_CLAIM, ARCHIVE_DONE).
  redis.call('DEL', archive)
  for i = 1, #KEYS do redis.call('PERSIST', KEYS[i]) end
end
return nxt
