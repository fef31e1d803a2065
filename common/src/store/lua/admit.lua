-- ADMIT: may a task start now under a rate limiter (one per instance, `rate_group` or run
-- model; its keys share their own hash tag, beside the run's)? Requests per minute by GCRA
-- with a burst of one (`tat`, the theoretical arrival time: starts are spaced 60000/rpm ms
-- apart, each reserved in order); tokens per minute by a bucket debited after each task with
-- what it used (`level` at `at`; a task starts while the level is above zero); a shared
-- backoff after a rate-limit answer (`backoff_until`).
-- KEYS: the limiter's hash, its reservations (hash: job → reserved start ms)
-- ARGV: now_ms job rpm(0: none) tpm(0: none) ttl_s
-- Returns: 0 to start now, or how many ms to wait (for a reservation: ask again then, and it
-- is ours; for a backoff or an empty token bucket: ask again then).
local lim, resv = KEYS[1], KEYS[2]
local now, job, rpm, tpm, ttl = tonumber(ARGV[1]), ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local mine = tonumber(redis.call('HGET', resv, job) or '')
if mine then
  if mine > now then return mine - now end
  redis.call('HDEL', resv, job)
  return 0
end
local h = redis.call('HMGET', lim, 'backoff_until', 'level', 'at', 'tat')
local backoff = tonumber(h[1] or '0') or 0
if backoff > now then return backoff - now end
if tpm > 0 then
  local level = tonumber(h[2] or '') or tpm
  local at = tonumber(h[3] or '') or now
  level = math.min(tpm, level + (now - at) * tpm / 60000)
  redis.call('HSET', lim, 'level', level, 'at', now)
  if level <= 0 then return math.ceil(-level * 60000 / tpm) + 1 end
end
if rpm > 0 then
  local interval = 60000 / rpm
  local start = math.max(tonumber(h[4] or '0') or 0, now)
  redis.call('HSET', lim, 'tat', start + interval)
  redis.call('EXPIRE', lim, ttl)
  if start > now then
    redis.call('HSET', resv, job, math.ceil(start))
    redis.call('EXPIRE', resv, ttl)
    return math.ceil(start) - now
  end
end
redis.call('EXPIRE', lim, ttl)
return 0
