-- Limiter helpers, at the head of NS_SLOTS and LIMIT_STEP: a limiter's rate (GCRA
-- start spacing, token bucket, backoff) and its shared concurrency slots. Every key of one
-- limiter carries the limiter's own hash tag, so each script is one Cluster slot.

-- Whether jobs (`RUN|IDX|ATTEMPT`, `jobs[first..]`) may start now under the limiter whose
-- hash is `lim` and reservations `resv`: per job 0 to start now, or how many ms to wait
-- (for a reservation: ask again then, and it is ours; for a backoff or an empty token
-- bucket: ask again then). Requests per minute by GCRA with a burst of one (`tat`, the
-- theoretical arrival time: starts are spaced 60000/rpm ms apart, each reserved in order);
-- tokens per minute by a bucket debited after each task with what it used (`level` at
-- `at`; a task starts while the level is above zero); a shared backoff after a rate-limit
-- answer (`backoff_until`).
local function admit_jobs(lim, resv, now, rpm, tpm, ttl, jobs, first)
  local h = redis.call('HMGET', lim, 'backoff_until', 'level', 'at', 'tat')
  local backoff = tonumber(h[1] or '0') or 0
  local level, tat = nil, tonumber(h[4] or '0') or 0
  if tpm > 0 then
    level = tonumber(h[2] or '') or tpm
    local at = tonumber(h[3] or '') or now
    level = math.min(tpm, level + (now - at) * tpm / 60000)
  end
  local out, reserved, tat_moved = {}, false, false
  -- Reservations are rare (a limit that binds): none, no lookup per job.
  local any_resv = redis.call('EXISTS', resv) == 1
  for k = first, #jobs do
    local job = jobs[k]
    local mine = any_resv and tonumber(redis.call('HGET', resv, job) or '')
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
end

-- How long slots and waiting lists live idle.
local SLOTS_TTL = 86400

-- Shared slots (zset `slots`: member `RUN|IDX|WORKER` scored by its lease's expiry): each of
-- `members[first..last]` takes a slot until `until_ms` (or keeps its own) → 1, or 0 when all
-- `cap` are held. Lapsed slots (a dead worker's) are swept first only when the takes could
-- find every slot held: a cap that does not bind costs no sweep.
local function take_slots(slots, cap, until_ms, members, first, last, now)
  local out = {}
  if last < first then return out end
  local held = redis.call('ZCARD', slots)
  if held + (last - first + 1) > cap then
    redis.call('ZREMRANGEBYSCORE', slots, '-inf', now)
    held = redis.call('ZCARD', slots)
  end
  local scores = redis.call('ZMSCORE', slots, unpack(members, first, last))
  local add, seen = {}, {}
  for k = first, last do
    local m, t = members[k], 0
    if scores[k - first + 1] or seen[m] then
      t = 1
    elseif held < cap then
      held = held + 1
      seen[m] = true
      t = 1
    end
    if t == 1 then
      add[#add + 1] = until_ms
      add[#add + 1] = m
    end
    out[#out + 1] = t
  end
  if #add > 0 then redis.call('ZADD', slots, unpack(add)) end
  redis.call('EXPIRE', slots, SLOTS_TTL)
  return out
end

-- The waiters (`RUN|IDX|ATTEMPT`, oldest first) that the free slots are for, taken off the
-- waiting list (lapsed slots swept first, when anyone waits).
local function waiters_for_free(slots, waiting, cap, now)
  if redis.call('LLEN', waiting) == 0 then return {} end
  redis.call('ZREMRANGEBYSCORE', slots, '-inf', now)
  local free = cap - redis.call('ZCARD', slots)
  if free <= 0 then return {} end
  return redis.call('LPOP', waiting, free) or {}
end
