-- NS_SLOTS: an instance's concurrency slots shared by every run and worker (the catalog's
-- `max_concurrent`), in the limiter's own keys, counted per worker (`held`, limiter_lib.lua):
-- a worker's running tasks hold its slots, renewed with their leases; a task that finds
-- none is handed back to its run, far in the future, and queued here in `waiting`; whenever
-- slots are free (tasks gave theirs back, a worker's lapsed, any worker's upkeep tick) the
-- oldest waiters are answered, and their workers bring them forward in their runs.
-- KEYS: the limiter's shared slots (`held`), its waiting list
-- (Slots are taken and given back in LIMIT_STEP, with the batch's other asks of the limiter.)
-- ARGV: op (renew | wait | tick) now_ms cap until_ms, then
--   renew: worker count — extends the worker's slots → 1; 0 when they had lapsed (swept):
--     then its `count` slots are held again (its tasks still run)
--   wait: the members (`RUN|IDX|ATTEMPT`), each waiting for a slot
--   tick: nothing; lapsed slots are freed
-- Returns: renew: {1} or {0}; wait: {}; tick: the waiters to bring forward (as many as
-- slots are free), oldest first.
local held, waiting = KEYS[1], KEYS[2]
local op, now, cap, until_ms = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
if op == 'renew' then
  local worker, count = ARGV[5], tonumber(ARGV[6])
  local e = tonumber(redis.call('HGET', held, 'e:' .. worker) or '')
  if e and e > now then
    redis.call('HSET', held, 'e:' .. worker, until_ms)
    redis.call('EXPIRE', held, SLOTS_TTL)
    return {1}
  end
  -- Lapsed (its worker stalled past its leases): swept, or about to be; held again.
  sweep_lapsed(held, now)
  if count > 0 then
    redis.call('HSET', held, 'n:' .. worker, count, 'e:' .. worker, until_ms)
    redis.call('HINCRBY', held, 'total', count)
    redis.call('EXPIRE', held, SLOTS_TTL)
  end
  return {0}
elseif op == 'wait' then
  for k = 5, #ARGV do redis.call('RPUSH', waiting, ARGV[k]) end
  redis.call('EXPIRE', waiting, SLOTS_TTL)
  return {}
end
return waiters_for_free(held, waiting, cap, now)
