-- PROMOTE: moves retries that are due from the delayed set to the outbox.
-- KEYS: the run's keys (prelude.lua)
-- ARGV: now_ms
-- Returns: how many moved.
local due = redis.call('ZRANGEBYSCORE', delayed, '-inf', ARGV[1], 'LIMIT', 0, 1000)
for _, m in ipairs(due) do
  redis.call('ZREM', delayed, m)
  redis.call('RPUSH', outbox, m)
end
return #due
