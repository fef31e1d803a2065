-- DEFER: hands a running task back to wait for a rate limit: `queued` again at the same
-- attempt, due at `due_ms` in the delayed set (PROMOTE moves it on), its slot freed. Time
-- waited after rate-limit answers is counted per task (`w:IDX` in `deliveries`) against
-- `max_ms`: past it, the answer is recorded as a failure instead (class rate_limit). `r:IDX`
-- sums every wait handed back (read by the results).
-- KEYS: the run's keys (prelude.lua); a run without `meta` changes nothing (-1).
-- ARGV: idx attempt worker now_ms due_ms counted_ms max_ms reason
-- Returns: ms waited after rate-limit answers so far, -1 when the task is not ours to hand
-- back, -2 when counting this wait would pass max_ms (nothing changed).
if redis.call('EXISTS', meta) == 0 then return -1 end
local idx, att, worker, now, due = ARGV[1], tonumber(ARGV[2]), ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[5])
local counted, max_ms, reason = tonumber(ARGV[6]), tonumber(ARGV[7]), ARGV[8]
if redis.call('HGET', state, idx) ~= 'running' then return -1 end
if tonumber(redis.call('HGET', attempt, idx) or '0') ~= att then return -1 end
if lease_owner(idx) ~= worker then return -1 end
local waited = tonumber(redis.call('HGET', deliveries, 'w:' .. idx) or '0')
if counted > 0 and waited + counted > max_ms then return -2 end
if counted > 0 then waited = redis.call('HINCRBY', deliveries, 'w:' .. idx, counted) end
-- Every wait for a rate limit handed back, for the results (`r:IDX`, ms; a wait for a
-- shared slot ends when one frees, not at `due_ms`).
if reason == 'rate_limit' then redis.call('HINCRBY', deliveries, 'r:' .. idx, math.max(due - now, 0)) end
redis.call('HSET', state, idx, 'queued')
redis.call('HINCRBY', meta, 'running', -1)
redis.call('HDEL', lease, idx)
redis.call('HINCRBY', deliveries, idx, -1)
redis.call('ZADD', delayed, due, idx .. ':' .. att)
if capped() then
  free_running_slot(idx)
  unpark(now)
end
event('idx', idx, 'state', 'queued', 'wait', reason, 'until', due)
return waited
