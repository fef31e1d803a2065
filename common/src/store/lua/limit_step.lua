-- LIMIT_STEP: everything a worker's batch asks of one limiter, in one call: shared slots
-- given back (then the waiters the free slots are for), slots taken, and rate admissions
-- (limiter_lib.lua). Gives come first, so a slot freed in this batch may be taken in it.
-- KEYS: the limiter's hash, its reservations, its slots, its waiting list
-- ARGV: now_ms rpm tpm ttl_s cap until_ms n_give n_take, then n_give members given back,
-- n_take members taking a slot (`RUN|IDX|WORKER`), then the jobs to admit (`RUN|IDX|ATTEMPT`)
-- Returns: {per job admitted: 0 or ms to wait, per member taking: 1 or 0 (none free),
-- the waiters to bring forward (after gives only)}
local lim, resv, slots, waiting = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local now, rpm, tpm, ttl = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local cap, until_ms, n_give, n_take = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])
local g0, t0, a0 = 9, 9 + n_give, 9 + n_give + n_take
local taken, waiters = {}, {}
if n_give > 0 then redis.call('ZREM', slots, unpack(ARGV, g0, t0 - 1)) end
if n_take > 0 then taken = take_slots(slots, cap, until_ms, ARGV, t0, a0 - 1, now) end
if n_give > 0 then waiters = waiters_for_free(slots, waiting, cap, now) end
local waits = {}
if a0 <= #ARGV then waits = admit_jobs(lim, resv, now, rpm, tpm, ttl, ARGV, a0) end
return {waits, taken, waiters}
