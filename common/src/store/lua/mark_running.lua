-- MARK_RUNNING: marks a batch of one run's tasks running under a lease.
-- KEYS: the run's keys (prelude.lua); every task of a run without `meta` is `unknown`.
-- ARGV: worker now_ms lease_ms max_deliveries, then per task: idx attempt takeover(0|1)
-- instance (its entry's: counted under a per-instance cap, slots.lua)
-- Returns: one tag per task: ok | poison | running | final | stale | unknown | parked
-- (its run is at a concurrency cap: the task waits in `parked` for a slot, slots.lua, and
-- the entry is done with). One `running` event names every task it started.
local worker, now, lease_ms, maxd = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local idxs, insts = {}, {}
for i = 5, #ARGV, 4 do
  idxs[#idxs + 1] = ARGV[i]
  insts[#insts + 1] = ARGV[i + 3]
end
-- A run without `meta` (expired, or lost by Redis) runs nothing and creates nothing.
if redis.call('EXISTS', meta) == 0 then
  local out = {}
  for k = 1, #idxs do out[k] = 'unknown' end
  return out
end
-- Read what the batch needs in three calls, decide, then write in three.
local sts = redis.call('HMGET', state, unpack(idxs))
local atts = redis.call('HMGET', attempt, unpack(idxs))
local dels = redis.call('HMGET', deliveries, unpack(idxs))
local until_ms = worker .. '|' .. (now + lease_ms) .. '|' .. now
local caps = capped()
if caps then begin_takes(idxs, insts, now) end
local out, started, marked, st_set, lease_set, del_set, delta = {}, {}, {}, {}, {}, {}, 0
for k = 1, #idxs do
  local idx, att, takeover = idxs[k], tonumber(ARGV[2 + 4 * k]), ARGV[3 + 4 * k]
  local st = sts[k]
  local tag
  if marked[idx] then tag = 'running' -- the same task twice in one batch
  elseif not st then tag = 'unknown'
  elseif st == 'waiting' then tag = 'stale'
  elseif st ~= 'queued' and st ~= 'running' then tag = 'final'
  elseif tonumber(atts[k] or '0') ~= att then tag = 'stale'
  elseif st == 'running' and (takeover ~= '1' or select(2, lease_owner(idx)) > now) then tag = 'running'
  elseif caps and is_parked(idx, att) then tag = 'parked' -- an older entry of a parked task
  elseif caps and not take_slot(idx, st) then
    -- No slot: the task waits in `parked` (a lapsed takeover goes back to queued first).
    if st == 'running' then
      redis.call('HSET', state, idx, 'queued')
      redis.call('HDEL', lease, idx)
      delta = delta - 1
    end
    park(idx, att, now)
    tag = 'parked'
  else
    if st == 'running' then delta = delta - 1 end
    local d = (tonumber(dels[k]) or 0) + 1
    marked[idx] = true
    st_set[#st_set + 1] = idx; st_set[#st_set + 1] = 'running'
    lease_set[#lease_set + 1] = idx; lease_set[#lease_set + 1] = until_ms
    del_set[#del_set + 1] = idx; del_set[#del_set + 1] = d
    delta = delta + 1
    started[#started + 1] = idx
    if d > maxd then tag = 'poison' else tag = 'ok' end
  end
  out[k] = tag
end
if caps then end_takes() end
if #started > 0 then
  redis.call('HSET', state, unpack(st_set))
  redis.call('HSET', lease, unpack(lease_set))
  redis.call('HSET', deliveries, unpack(del_set))
  redis.call('HSETNX', meta, 'started_ms', now)
  event('idxs', table.concat(started, ','), 'state', 'running', 'worker', worker)
end
if delta ~= 0 then redis.call('HINCRBY', meta, 'running', delta) end
return out
