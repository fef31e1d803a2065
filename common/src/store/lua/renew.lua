-- RENEW: extends the lease of a running task held by this worker.
-- KEYS: the run's keys (prelude.lua); a run without `meta` changes nothing (0).
-- ARGV: idx attempt worker now_ms lease_ms
-- Returns: 1 renewed, 2 renewed but cancel requested, 0 the lease is no longer ours.
if redis.call('EXISTS', meta) == 0 then return 0 end
local idx, att, worker, now, lease_ms = ARGV[1], tonumber(ARGV[2]), ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[5])
if redis.call('HGET', state, idx) ~= 'running' then return 0 end
if tonumber(redis.call('HGET', attempt, idx) or '0') ~= att then return 0 end
local owner, _, started = lease_owner(idx)
if owner ~= worker then return 0 end
if not started or started == '' then started = now end
redis.call('HSET', lease, idx, worker .. '|' .. (now + lease_ms) .. '|' .. started)
if redis.call('HEXISTS', cancel, idx) == 1 then return 2 end
return 1
