-- Limiter helpers, at the head of NS_SLOTS and LIMIT_STEP: a limiter's rate (GCRA
-- start spacing, token bucket, backoff) and its shared concurrency slots. Every key of one
-- limiter carries the limiter's own hash tag, so each script is one Cluster slot.

-- Whether jobs (`RUN|IDX|ATTEMPT`, `jobs[first..last]`) may start now under the limiter whose
-- hash is `lim` and reservations `resv`: per job 0 to start now, or how many ms to wait
-- (for a reservation: ask again then, and it is ours; for a backoff or an empty token
-- bucket: ask again then). Requests per minute by GCRA with a burst of one (`tat`, the
-- theoretical arrival time: starts are spaced 60000/rpm ms apart, each reserved in order);
-- tokens per minute by a bucket debited after each task with what it used (`level` at
-- `at`; a task starts while the level is above zero); a shared backoff after a rate-limit
-- answer (`backoff_until`).
-- `jobs` nil: only `n` jobs are counted, and they are admitted only when every one of them
-- starts now (nothing reserved, no backoff, tokens left, the last start less than a
-- millisecond ahead) → true; otherwise nothing changes → false, and the caller asks again
-- naming the jobs. A limit that does not bind so costs the same for 1 job as for 1,000.
local function admit_jobs(lim, resv, now, rpm, tpm, ttl, jobs, first, n, last)
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
  if not jobs then
    if any_resv or backoff > now or (level and level <= 0) then return false end
    if rpm > 0 then
      local start = math.max(tat, now)
      if start + (n - 1) * 60000 / rpm >= now + 1 then return false end
      tat = start + n * 60000 / rpm
      tat_moved = true
    end
  else
    for k = first, last or #jobs do
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
  end
  if level then redis.call('HSET', lim, 'level', level, 'at', now) end
  if tat_moved then redis.call('HSET', lim, 'tat', tat) end
  if level or tat_moved then redis.call('EXPIRE', lim, ttl) end
  if reserved then redis.call('EXPIRE', resv, ttl) end
  if not jobs then return true end
  return out
end

-- How long slots and waiting lists live idle.
local SLOTS_TTL = 86400

-- Shared slots, counted per worker in the hash `held`: `n:WORKER` slots that worker's tasks
-- hold, `e:WORKER` until when (Unix ms: its leases' expiry, renewed with them), `total` the
-- sum. A worker that stops renewing (killed) has its slots swept once `e:` lapses. Takes and
-- gives cost the same for one task as for a batch of them.
local function held_total(held)
  return tonumber(redis.call('HGET', held, 'total') or '0') or 0
end

-- Frees the slots of every worker whose `e:` lapsed, and counts `total` afresh from the
-- workers left; returns it.
local function sweep_lapsed(held, now)
  local all = redis.call('HGETALL', held)
  local n, live, drop = {}, {}, {}
  for k = 1, #all, 2 do
    local f, v = all[k], all[k + 1]
    local kind, w = string.sub(f, 1, 2), string.sub(f, 3)
    if kind == 'n:' then
      n[w] = tonumber(v) or 0
    elseif kind == 'e:' then
      if (tonumber(v) or 0) <= now then
        drop[#drop + 1] = f
        drop[#drop + 1] = 'n:' .. w
      else
        live[w] = true
      end
    end
  end
  if #drop > 0 then redis.call('HDEL', held, unpack(drop)) end
  local total = 0
  for w, c in pairs(n) do
    if live[w] then total = total + c end
  end
  redis.call('HSET', held, 'total', total)
  return total
end

-- `worker` takes `k` slots until `until_ms`, as many as are free of `cap` (lapsed ones swept
-- first only when the take would not fit otherwise: a cap that does not bind costs no sweep).
-- Returns how many it got.
local function take_slots(held, cap, until_ms, worker, k, now)
  if k <= 0 then return 0 end
  local total = held_total(held)
  if total + k > cap then total = sweep_lapsed(held, now) end
  local got = math.max(0, math.min(k, cap - total))
  if got > 0 then
    redis.call('HINCRBY', held, 'n:' .. worker, got)
    redis.call('HSET', held, 'total', total + got, 'e:' .. worker, until_ms)
    redis.call('EXPIRE', held, SLOTS_TTL)
  end
  return got
end

-- `worker` gives `k` slots back (no more than it holds: after its slots lapsed, nothing).
local function give_slots(held, worker, k)
  local n = tonumber(redis.call('HGET', held, 'n:' .. worker) or '0') or 0
  local d = math.min(k, n)
  if d <= 0 then return end
  if d == n then
    redis.call('HDEL', held, 'n:' .. worker, 'e:' .. worker)
  else
    redis.call('HINCRBY', held, 'n:' .. worker, -d)
  end
  redis.call('HINCRBY', held, 'total', -d)
end

-- The waiters (`RUN|IDX|ATTEMPT`, oldest first) that the free slots are for, taken off the
-- waiting list (lapsed slots swept first, when anyone waits).
local function waiters_for_free(held, waiting, cap, now)
  if redis.call('LLEN', waiting) == 0 then return {} end
  local free = cap - sweep_lapsed(held, now)
  if free <= 0 then return {} end
  return redis.call('LPOP', waiting, free) or {}
end
