-- NS_SLOTS: an instance's concurrency slots shared by every run and worker (the catalog's
-- `max_concurrent`), in the limiter's own keys. A running task holds a slot (`RUN|IDX`,
-- scored by its lease's expiry, renewed with the lease); a task that finds none is handed
-- back to its run, far in the future, and queued here in `waiting`; whenever slots are free
-- (a task gave one back, a lease lapsed, any worker's upkeep tick) the oldest waiters are
-- answered, and their workers bring them forward in their runs.
-- KEYS: the limiter's slots (zset), its waiting list
-- ARGV: op (take | renew | give | wait | tick) now_ms cap member until_ms
--   take: member takes a slot until until_ms (or keeps its own) → 1, or 0 when none is free
--   renew: extends member's slot → 1, or 0 when it has none (it lapsed)
--   give: member's slot is free again; then as tick
--   wait: member (`RUN|IDX|ATTEMPT`) waits for a slot → 1
--   tick: lapsed slots are freed
-- Returns: take/renew/wait as above; give/tick: the waiters to bring forward (as many as
-- slots are free), oldest first.
local slots, waiting = KEYS[1], KEYS[2]
local op, now, cap, member, until_ms = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4], tonumber(ARGV[5])
local ttl = 86400
redis.call('ZREMRANGEBYSCORE', slots, '-inf', now)
if op == 'take' then
  if redis.call('ZSCORE', slots, member) or redis.call('ZCARD', slots) < cap then
    redis.call('ZADD', slots, until_ms, member)
    redis.call('EXPIRE', slots, ttl)
    return 1
  end
  return 0
elseif op == 'renew' then
  if redis.call('ZSCORE', slots, member) then
    redis.call('ZADD', slots, until_ms, member)
    return 1
  end
  return 0
elseif op == 'wait' then
  redis.call('RPUSH', waiting, member)
  redis.call('EXPIRE', waiting, ttl)
  return 1
end
if op == 'give' then redis.call('ZREM', slots, member) end
local free = cap - redis.call('ZCARD', slots)
if free <= 0 then return {} end
return redis.call('LPOP', waiting, free) or {}
