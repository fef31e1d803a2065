-- NS_SLOTS: an instance's concurrency slots shared by every run and worker (the catalog's
-- `max_concurrent`), in the limiter's own keys. A running task holds a slot (`RUN|IDX|WORKER`,
-- scored by its lease's expiry, renewed with the lease); a task that finds none is handed
-- back to its run, far in the future, and queued here in `waiting`; whenever slots are free
-- (tasks gave theirs back, a lease lapsed, any worker's upkeep tick) the oldest waiters are
-- answered, and their workers bring them forward in their runs. Several members per call (a
-- worker's batch).
-- KEYS: the limiter's slots (zset), its waiting list
-- (Slots are taken and given back in LIMIT_STEP, with the batch's other asks of the limiter.)
-- ARGV: op (renew | wait | tick) now_ms cap until_ms, then the members
--   renew: extends each member's slot → 1, or 0 when it has none (it lapsed)
--   wait: each member (`RUN|IDX|ATTEMPT`) waits for a slot
--   tick: lapsed slots are freed
-- Returns: renew: one 0/1 per member; wait: {}; tick: the waiters to bring forward (as
-- many as slots are free), oldest first.
local slots, waiting = KEYS[1], KEYS[2]
local op, now, cap, until_ms = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
redis.call('ZREMRANGEBYSCORE', slots, '-inf', now)
if op == 'renew' then
  local out = {}
  for k = 5, #ARGV do
    if redis.call('ZSCORE', slots, ARGV[k]) then
      redis.call('ZADD', slots, until_ms, ARGV[k])
      out[#out + 1] = 1
    else
      out[#out + 1] = 0
    end
  end
  return out
elseif op == 'wait' then
  for k = 5, #ARGV do redis.call('RPUSH', waiting, ARGV[k]) end
  redis.call('EXPIRE', waiting, SLOTS_TTL)
  return {}
end
return waiters_for_free(slots, waiting, cap, now)
