-- RELEASE: hands a running task back (queued, same attempt, outbox); worker shutdown.
-- KEYS: the run's keys (prelude.lua); a run without `meta` changes nothing (0).
-- ARGV: idx attempt worker now_ms
-- Returns: 1 when handed back, 0 when it was not ours to hand back.
if redis.call('EXISTS', meta) == 0 then return 0 end
local idx, att, worker = ARGV[1], tonumber(ARGV[2]), ARGV[3]
if redis.call('HGET', state, idx) ~= 'running' then return 0 end
if tonumber(redis.call('HGET', attempt, idx) or '0') ~= att then return 0 end
if lease_owner(idx) ~= worker then return 0 end
redis.call('HSET', state, idx, 'queued')
redis.call('HINCRBY', meta, 'running', -1)
redis.call('HDEL', lease, idx)
redis.call('HINCRBY', deliveries, idx, -1)
redis.call('RPUSH', outbox, idx .. ':' .. att)
if capped() then
  free_running_slot(idx)
  unpark(tonumber(ARGV[4]))
end
event('idx', idx, 'state', 'queued', 'released_by', worker)
return 1
