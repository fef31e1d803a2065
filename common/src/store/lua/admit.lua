-- ADMIT: may tasks start now under a rate limiter (one per instance, `rate_group` or run
-- model; its keys share their own hash tag, beside the run's)? Requests per minute by GCRA
-- with a burst of one (`tat`, the theoretical arrival time: starts are spaced 60000/rpm ms
-- apart, each reserved in order); tokens per minute by a bucket debited after each task with
-- what it used (`level` at `at`; a task starts while the level is above zero); a shared
-- backoff after a rate-limit answer (`backoff_until`). Several tasks in one call (a worker's
-- batch), each decided in turn.
-- KEYS: the limiter's hash, its reservations (hash: job → reserved start ms)
-- ARGV: now_ms rpm(0: none) tpm(0: none) ttl_s, then one job (`RUN|IDX|ATTEMPT`) each
-- Returns: per job 0 to start now, or how many ms to wait (for a reservation: ask again then,
-- and it is ours; for a backoff or an empty token bucket: ask again then).
local lim, resv = KEYS[1], KEYS[2]
local now, rpm, tpm, ttl = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local h = redis.call('HMGET', lim, 'backoff_until', 'level', 'at', 'tat')
local backoff = tonumber(h[1] or '0') or 0
local level, tat = nil, tonumber(h[4] or '0') or 0
if tpm > 0 then
  level = tonumber(h[2] or '') or tpm
  local at = tonumber(h[3] or '') or now
  level = math.min(tpm, level + (now - at) * tpm / 60000)
end
local out, reserved, tat_moved = {}, false, false
for k = 5, #ARGV do
  local job = ARGV[k]
  local mine = tonumber(redis.call('HGET', resv, job) or '')
  local wait = 0
  if mine then
    if mine > now then wait = mine - now else redis.call('HDEL', resv, job) end
  elseif backoff > now then
    wait = backoff - now
  elseif level and level <= 0 then
    wait = math.ceil(-level * 60000 / tpm) + 1
  elseif rpm > 0 then
    local start = math.max(tat, now)
    tat = start + 60000 / rpm
    tat_moved = true
    -- A start less than a millisecond ahead is now (the clock's resolution): a limit too
    -- high to bind costs no wait, and the spacing still accumulates in `tat`.
    if start >= now + 1 then
      wait = math.ceil(start) - now
      redis.call('HSET', resv, job, math.ceil(start))
      reserved = true
    end
  end
  out[#out + 1] = wait
end
if level then redis.call('HSET', lim, 'level', level, 'at', now) end
if tat_moved then redis.call('HSET', lim, 'tat', tat) end
if level or tat_moved then redis.call('EXPIRE', lim, ttl) end
if reserved then redis.call('EXPIRE', resv, ttl) end
return out
