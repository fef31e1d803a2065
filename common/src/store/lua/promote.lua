-- PROMOTE: moves retries that are due from the delayed set to the outbox; in a capped run,
-- gives free slots (lapsed leases' too) to parked tasks (slots.lua).
-- KEYS: the run's keys (prelude.lua)
-- Errors: NORUN when the run has no `meta` (it expired or Redis lost it): nothing is written.
-- ARGV: now_ms
-- Returns: how many moved to the outbox.
if redis.call('EXISTS', meta) == 0 then return redis.error_reply('NORUN the run has no state in Redis') end
local due = redis.call('ZRANGEBYSCORE', delayed, '-inf', ARGV[1], 'LIMIT', 0, 1000)
for _, m in ipairs(due) do
  redis.call('ZREM', delayed, m)
  redis.call('RPUSH', outbox, m)
end
if capped() then unpark(tonumber(ARGV[1])) end
return #due + queued_n
