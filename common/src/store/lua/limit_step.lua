-- LIMIT_STEP: everything a worker's batch asks of its limiters, in one call: per limiter,
-- shared slots given back (then the waiters the free slots are for), slots taken, and rate
-- admissions (limiter_lib.lua). Gives come first, so a slot freed in this batch may be taken
-- in it. Each limiter's keys carry its own hash tag: on one Redis server a call serves
-- several limiters; split per limiter, the same script serves a Cluster.
-- KEYS: per limiter: its hash, its reservations, its shared slots (`held`), its waiting list
-- ARGV: now_ms ttl_s worker n_limiters, then per limiter: rpm tpm cap until_ms n_give n_take
-- n_admit n_named spare, then n_named jobs (`RUN|IDX|ATTEMPT`): 0 named means the n_admit
-- jobs are admitted only if every one starts now, with up to `spare` more starts to bank
-- Returns: per limiter {admitted (1, or 0: the jobs were not admitted, ask again naming
-- them), per job named: 0 or ms to wait, slots taken (of n_take), the waiters to bring
-- forward (after gives), whether tasks still wait for a slot (1/0), starts granted to bank}
local now, ttl, worker, n_lim = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3], tonumber(ARGV[4])
local out, a = {}, 5
for g = 1, n_lim do
  local lim, resv, held, waiting = KEYS[4 * g - 3], KEYS[4 * g - 2], KEYS[4 * g - 1], KEYS[4 * g]
  local rpm, tpm, cap, until_ms = tonumber(ARGV[a]), tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2]), tonumber(ARGV[a + 3])
  local n_give, n_take, n_admit, n_named = tonumber(ARGV[a + 4]), tonumber(ARGV[a + 5]), tonumber(ARGV[a + 6]), tonumber(ARGV[a + 7])
  local spare = tonumber(ARGV[a + 8])
  local first = a + 9
  a = first + n_named
  local taken = settle_slots(held, cap, until_ms, worker, n_give, n_take, now)
  -- Tasks waiting for a slot (there are only with a cap): those the slots given back are
  -- for are answered, and whether any still wait is said.
  local waiters, still = {}, 0
  if cap > 0 then
    local queued = redis.call('LLEN', waiting)
    if queued > 0 and n_give > 0 then waiters = waiters_for_free(held, waiting, cap, now, queued) end
    if queued > #waiters then still = 1 end
  end
  local admitted, waits, banked = 1, {}, 0
  if n_named > 0 then
    waits = admit_jobs(lim, resv, now, rpm, tpm, ttl, ARGV, first, nil, a - 1)
  elseif n_admit > 0 then
    local ok, extra = admit_jobs(lim, resv, now, rpm, tpm, ttl, nil, 0, n_admit, nil, spare)
    if ok then banked = extra else admitted = 0 end
  end
  out[g] = {admitted, waits, taken, waiters, still, banked}
end
return out
