-- Slots: a run's concurrency caps (`resource_limits`: `max_concurrent_tasks` over the run,
-- `max_tasks_per_instance` per instance), appended to prelude.lua for every run script. A
-- task holds a slot while it runs (its lease, renewed by its worker, says until when) or
-- while it is granted one: the slots held over the run are meta `running` plus the grants
-- in `slots` (idx scored by the grant's expiry), and `slotinfo` counts them per instance
-- (`n:INSTANCE`; `i:IDX` → the task's instance, written at creation under a per-instance
-- cap). Nothing is written per task beyond what running already writes, so a cap that does
-- not bind costs a few reads per call. A running task whose lease lapsed (its worker died)
-- holds none: when a cap could be full, the lapsed leases are subtracted (read once per
-- call), and its takeover needs a slot again. A task that finds no slot when it is marked
-- leaves its stream and waits in `parked` (`idx:attempt`, oldest first); whoever frees a
-- slot (a result, a hand-back, an upkeep tick that finds a lapsed lease) gives it to the
-- oldest parked task that fits and puts that task in the outbox, its slot granted for
-- GRANT_MS until it is marked. Meta `cap_all` / `cap_inst` hold the caps (absent: no cap,
-- and none of this runs). Meta `slotwait` is set whenever a task is parked (grants exist
-- only for parked tasks), and cleared once `parked` and `slots` are both found empty: while
-- it is unset, neither is looked at. The mark and record calls bring each task's instance
-- (its entry's, the one `i:IDX` says), so counting per instance reads nothing per task.
local GRANT_MS = 60000
local cap_all, cap_inst, slotwait = nil, nil, false
-- Whether the run has a cap (read once per call).
local function capped()
  if cap_all == nil then
    local c = redis.call('HMGET', meta, 'cap_all', 'cap_inst', 'slotwait')
    cap_all, cap_inst, slotwait = tonumber(c[1] or '0') or 0, tonumber(c[2] or '0') or 0, c[3] ~= false
  end
  return cap_all > 0 or cap_inst > 0
end
-- Whether tasks may be parked or granted slots; when neither is, `slotwait` is cleared.
local function any_waiting()
  if not slotwait then return false end
  if redis.call('EXISTS', slots, parked) > 0 then return true end
  redis.call('HDEL', meta, 'slotwait')
  slotwait = false
  return false
end
-- A task's instance, counted only under a per-instance cap ('' otherwise: nothing to read).
local function instance_of(idx)
  if cap_inst <= 0 then return '' end
  return redis.call('HGET', slotinfo, 'i:' .. idx) or ''
end
local function count_instance(idx, d)
  local inst = instance_of(idx)
  if inst ~= '' then redis.call('HINCRBY', slotinfo, 'n:' .. inst, d) end
end
-- Slots held over the run now: running tasks and grants.
local function held_all()
  return (tonumber(redis.call('HGET', meta, 'running') or '0') or 0) + redis.call('ZCARD', slots)
end
-- Grants that lapsed (the task was never marked: cancelled, or its entry lost) are taken back.
local function expire_grants(now)
  if not slotwait then return end
  local gone = redis.call('ZRANGEBYSCORE', slots, '-inf', now)
  if #gone == 0 then return end
  redis.call('ZREM', slots, unpack(gone))
  for _, idx in ipairs(gone) do count_instance(idx, -1) end
end
-- The running tasks whose lease lapsed (a dead worker's), which hold no slot: how many, how
-- many per instance, and which. Read once per call, only when a cap could be full.
local lapsed = nil
local function lapsed_leases(now)
  if lapsed then return lapsed end
  lapsed = { n = 0, inst = {}, idx = {} }
  local l = redis.call('HGETALL', lease)
  local gone = {}
  for k = 1, #l, 2 do
    local _, exp = parse_lease(l[k + 1])
    if exp <= now then
      gone[#gone + 1] = l[k]
      lapsed.idx[l[k]] = true
    end
  end
  lapsed.n = #gone
  if cap_inst > 0 and #gone > 0 then
    local keys = {}
    for k, idx in ipairs(gone) do keys[k] = 'i:' .. idx end
    for _, inst in ipairs(redis.call('HMGET', slotinfo, unpack(keys))) do
      if inst then lapsed.inst[inst] = (lapsed.inst[inst] or 0) + 1 end
    end
  end
  return lapsed
end
-- A batch of takes (a mark call's) reads what it needs once and
-- writes once (`begin_takes` … `end_takes`, state in `pf`). Grants and parked tasks exist
-- only while a cap binds (one call says there are none); lapsed grants and leases are
-- looked at only when the batch could find a cap full.
local pf = nil
-- `insts[k]`: the instance of task `idxs[k]`.
local function begin_takes(idxs, insts, now)
  pf = { inst = {}, n_all = 0, n_inst = {}, d_inst = {}, granted = {}, ungrant = {}, slow = false }
  local want, names = {}, {}
  if cap_inst > 0 then
    for k, idx in ipairs(idxs) do
      local inst = insts[k]
      pf.inst[idx] = inst
      if not want[inst] then names[#names + 1] = inst end
      want[inst] = (want[inst] or 0) + 1
    end
  end
  local grants_or_parked = any_waiting()
  local function counts(fresh)
    if cap_all > 0 then
      if fresh or grants_or_parked then
        pf.n_all = held_all()
      else
        pf.n_all = tonumber(redis.call('HGET', meta, 'running') or '0') or 0
      end
    end
    if #names > 0 then
      local keys = {}
      for k, inst in ipairs(names) do keys[k] = 'n:' .. inst end
      local ns = redis.call('HMGET', slotinfo, unpack(keys))
      for k, inst in ipairs(names) do pf.n_inst[inst] = tonumber(ns[k] or '0') or 0 end
    end
    pf.granted = {}
    if grants_or_parked and redis.call('EXISTS', slots) == 1 then
      local scores = redis.call('ZMSCORE', slots, unpack(idxs))
      for k, idx in ipairs(idxs) do
        if scores[k] then pf.granted[idx] = true end
      end
    end
  end
  counts(false)
  local full = cap_all > 0 and pf.n_all + #idxs > cap_all
  for inst, w in pairs(want) do
    if pf.n_inst[inst] + w > cap_inst then full = true end
  end
  if full then
    pf.slow = true
    expire_grants(now)
    counts(true)
    local lp = lapsed_leases(now)
    pf.n_all = pf.n_all - lp.n
    for inst, n in pairs(pf.n_inst) do pf.n_inst[inst] = n - (lp.inst[inst] or 0) end
  end
  pf.any_parked = grants_or_parked and redis.call('EXISTS', parked) == 1
end
local function end_takes()
  if #pf.ungrant > 0 then redis.call('ZREM', slots, unpack(pf.ungrant)) end
  for inst, d in pairs(pf.d_inst) do
    if d ~= 0 then redis.call('HINCRBY', slotinfo, 'n:' .. inst, d) end
  end
  pf = nil
end
-- Whether task idx (state `st`: queued, or running for a takeover) may run, within a batch:
-- a grant becomes its running slot, a takeover whose lease has not lapsed keeps the slot its
-- running state holds, anything else takes a free one; false when its run or instance is at
-- the cap (a lapsed takeover then no longer counts as running on its instance).
local function take_slot(idx, st)
  if pf.granted[idx] then
    pf.granted[idx] = nil
    pf.ungrant[#pf.ungrant + 1] = idx
    return true
  end
  local lapsed_takeover = st == 'running' and pf.slow and lapsed.idx[idx]
  if st == 'running' and not lapsed_takeover then return true end
  local inst = pf.inst[idx] or ''
  if (cap_all > 0 and pf.n_all >= cap_all) or (inst ~= '' and pf.n_inst[inst] >= cap_inst) then
    if lapsed_takeover and inst ~= '' then pf.d_inst[inst] = (pf.d_inst[inst] or 0) - 1 end
    return false
  end
  pf.n_all = pf.n_all + 1
  if inst ~= '' then
    pf.n_inst[inst] = pf.n_inst[inst] + 1
    -- A lapsed takeover is still counted on its instance: only a new runner adds one.
    if not lapsed_takeover then pf.d_inst[inst] = (pf.d_inst[inst] or 0) + 1 end
  end
  return true
end
-- A running task stops running (its result, or handed back): its instance counts one less
-- (the run's count is meta `running`, which the caller lowers).
local function free_running_slot(idx)
  count_instance(idx, -1)
end
-- Several tasks stop running (a record call's: `insts`, their instances), one call per
-- instance.
local function free_running_slots(insts)
  if cap_inst <= 0 or #insts == 0 then return end
  local by_inst = {}
  for _, inst in ipairs(insts) do by_inst[inst] = (by_inst[inst] or 0) + 1 end
  for inst, n in pairs(by_inst) do redis.call('HINCRBY', slotinfo, 'n:' .. inst, -n) end
end
-- A task that will not be marked after all (cancelled, recorded while queued) gives back
-- the slot it was granted, if any.
local function drop_grant(idx)
  if slotwait and redis.call('ZREM', slots, idx) == 1 then count_instance(idx, -1) end
end
-- Parks a queued task (attempt att) until a slot frees.
local function park(idx, att, now)
  redis.call('ZADD', parked, now, idx .. ':' .. att)
  if not slotwait then
    redis.call('HSET', meta, 'slotwait', 1)
    slotwait = true
  end
  event('idx', idx, 'state', 'queued', 'parked', 'limit')
end
local function is_parked(idx, att)
  if pf and not pf.any_parked then return false end
  return redis.call('ZSCORE', parked, idx .. ':' .. att) ~= false
end
-- Gives free slots to parked tasks, oldest first (looking at most at 200 of them: a parked
-- task of a full instance does not hold up the others); each is granted its slot and goes
-- to the outbox. Parked entries of tasks no longer queued at that attempt (cancelled,
-- revived) are dropped. Callers lower meta `running` first.
local function unpark(now)
  if not slotwait or redis.call('EXISTS', parked) == 0 then return end
  expire_grants(now)
  local lp = lapsed_leases(now)
  local n_all = held_all() - lp.n
  if cap_all > 0 and n_all >= cap_all then return end
  local n_inst = {}
  local function room(inst)
    if inst == '' then return true end
    if not n_inst[inst] then
      n_inst[inst] = (tonumber(redis.call('HGET', slotinfo, 'n:' .. inst) or '0') or 0) - (lp.inst[inst] or 0)
    end
    return n_inst[inst] < cap_inst
  end
  for _, m in ipairs(redis.call('ZRANGE', parked, 0, 199)) do
    local idx, att = string.match(m, '^(%d+):(%d+)$')
    if redis.call('HGET', state, idx) ~= 'queued' or redis.call('HGET', attempt, idx) ~= att then
      redis.call('ZREM', parked, m)
    else
      local inst = instance_of(idx)
      if room(inst) then
        redis.call('ZADD', slots, now + GRANT_MS, idx)
        if inst ~= '' then
          redis.call('HINCRBY', slotinfo, 'n:' .. inst, 1)
          n_inst[inst] = n_inst[inst] + 1
        end
        n_all = n_all + 1
        redis.call('ZREM', parked, m)
        redis.call('RPUSH', outbox, m)
        event('idx', idx, 'state', 'queued', 'slot', 'granted')
        queued_n = queued_n + 1
        if cap_all > 0 and n_all >= cap_all then return end
      end
    end
  end
end
