-- Limiter helpers, at the head of NS_SLOTS and LIMIT_STEP: a limiter's rate (GCRA
-- start spacing, token bucket, backoff) and its shared concurrency slots. Every key of one
-- limiter carries the limiter's own hash tag, so each script is one Cluster slot.

-- A limiter's hashes live `ttl` seconds idle; their field `x` says when that was last set
-- (ms), so a call renews it only once half of it has passed.
local function refresh_ttl(key, x, now, ttl)
  if (tonumber(x or '0') or 0) + ttl * 500 < now then
    redis.call('HSET', key, 'x', now)
    redis.call('EXPIRE', key, ttl)
  end
end

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
-- Counted, up to `spare` more starts are granted besides when they too start within that
-- millisecond (a start limit without a token limit: tokens are debited after each task) →
-- true and how many: the worker banks them for its next jobs (a bank lives 50 ms, so starts
-- over any minute pass the limit by at most 50 ms of it).
local function admit_jobs(lim, resv, now, rpm, tpm, ttl, jobs, first, n, last, spare)
  local h = redis.call('HMGET', lim, 'backoff_until', 'level', 'at', 'tat', 'x')
  local backoff = tonumber(h[1] or '0') or 0
  local level, tat = nil, tonumber(h[4] or '0') or 0
  if tpm > 0 then
    level = tonumber(h[2] or '') or tpm
    local at = tonumber(h[3] or '') or now
    level = math.min(tpm, level + (now - at) * tpm / 60000)
  end
  local out, reserved, tat_moved, extra = {}, false, false, 0
  -- Reservations are rare (a limit that binds): none, no lookup per job.
  local any_resv = redis.call('EXISTS', resv) == 1
  if not jobs then
    if any_resv or backoff > now or (level and level <= 0) then return false end
    if rpm > 0 then
      local start, spacing = math.max(tat, now), 60000 / rpm
      if start + (n - 1) * spacing >= now + 1 then return false end
      if tpm <= 0 and spare and spare > 0 then
        extra = math.max(0, math.min(spare, math.ceil((now + 1 - start) / spacing) - n))
      end
      tat = start + (n + extra) * spacing
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
  if level and tat_moved then
    redis.call('HSET', lim, 'level', level, 'at', now, 'tat', tat)
  elseif level then
    redis.call('HSET', lim, 'level', level, 'at', now)
  elseif tat_moved then
    redis.call('HSET', lim, 'tat', tat)
  end
  if level or tat_moved then refresh_ttl(lim, h[5], now, ttl) end
  if reserved then redis.call('EXPIRE', resv, ttl) end
  if not jobs then return true, extra end
  return out
end

-- How long slots and waiting lists live idle.
local SLOTS_TTL = 86400

-- Shared slots, counted per worker in the hash `held`: `n:WORKER` slots that worker's tasks
-- hold, `e:WORKER` until when (Unix ms: its leases' expiry, renewed with them), `total` the
-- sum. A worker that stops renewing (killed) has its slots swept once `e:` lapses. Takes and
-- gives cost the same for one task as for a batch of them.

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

-- `worker` gives `gives` slots back (no more than it holds: after its slots lapsed, nothing)
-- and takes `takes` until `until_ms`, as many as are free of `cap` (lapsed ones swept first
-- only when the take would not fit otherwise: a cap that does not bind costs no sweep), in
-- one read and one write. Returns how many it got.
local function settle_slots(held, cap, until_ms, worker, gives, takes, now)
  if gives <= 0 and takes <= 0 then return 0 end
  local nf, ef = 'n:' .. worker, 'e:' .. worker
  local h = redis.call('HMGET', held, 'total', nf, 'x')
  local total, n = tonumber(h[1] or '0') or 0, tonumber(h[2] or '0') or 0
  local d = math.min(gives, n)
  n, total = n - d, math.max(0, total - d)
  local got = 0
  if takes > 0 then
    if total + takes > cap then
      -- The give is written first: the sweep counts the total afresh from every worker's.
      if n > 0 then redis.call('HSET', held, nf, n) else redis.call('HDEL', held, nf, ef) end
      total = sweep_lapsed(held, now)
      n = tonumber(redis.call('HGET', held, nf) or '0') or 0
    end
    got = math.max(0, math.min(takes, cap - total))
    n, total = n + got, total + got
  end
  if n > 0 and got > 0 then
    redis.call('HSET', held, 'total', total, nf, n, ef, until_ms)
  elseif n > 0 then
    redis.call('HSET', held, 'total', total, nf, n)
  else
    redis.call('HDEL', held, nf, ef)
    redis.call('HSET', held, 'total', total)
  end
  refresh_ttl(held, h[3], now, SLOTS_TTL)
  return got
end

-- The waiters (`RUN|IDX|ATTEMPT`, oldest first) that the free slots are for, taken off the
-- waiting list (lapsed slots swept first, when anyone waits). `queued`: the list's length,
-- when the caller knows it.
local function waiters_for_free(held, waiting, cap, now, queued)
  if (queued or redis.call('LLEN', waiting)) == 0 then return {} end
  local free = cap - sweep_lapsed(held, now)
  if free <= 0 then return {} end
  return redis.call('LPOP', waiting, free) or {}
end
