-- Slots: a run's concurrency caps (`resource_limits`: `max_concurrent_tasks` over the run,
-- `max_tasks_per_instance` per instance), appended to prelude.lua for every run script. A
-- running task holds a slot in `slots` (idx scored by its lease's expiry, renewed with the
-- lease), so a dead worker's slot frees itself when its lease lapses. A task that finds no
-- slot when it is marked leaves its stream and waits in `parked` (`idx:attempt`, oldest
-- first); whoever frees a slot (a result, a hand-back, an upkeep tick that finds a lapsed
-- one) gives it to the oldest parked task that fits and puts that task in the outbox, its
-- slot granted for GRANT_MS until it is marked. `slotinfo` holds `i:IDX` → the task's
-- instance (written at creation, capped runs only) and `n:INSTANCE` → slots held there.
-- Meta `cap_all` / `cap_inst` hold the caps (absent: no cap, and none of this runs).
local GRANT_MS = 60000
local cap_all, cap_inst = nil, nil
-- Whether the run has a cap (read once per call).
local function capped()
  if cap_all == nil then
    local c = redis.call('HMGET', meta, 'cap_all', 'cap_inst')
    cap_all, cap_inst = tonumber(c[1] or '0') or 0, tonumber(c[2] or '0') or 0
  end
  return cap_all > 0 or cap_inst > 0
end
-- A task's instance, counted only under a per-instance cap ('' otherwise: nothing to read).
local function instance_of(idx)
  if cap_inst <= 0 then return '' end
  return redis.call('HGET', slotinfo, 'i:' .. idx) or ''
end
local function drop_slot(idx)
  local inst = instance_of(idx)
  if inst ~= '' then redis.call('HINCRBY', slotinfo, 'n:' .. inst, -1) end
end
-- Slots whose lease lapsed (their worker died) are free again.
local function expire_slots(now)
  local gone = redis.call('ZRANGEBYSCORE', slots, '-inf', now)
  for _, idx in ipairs(gone) do
    redis.call('ZREM', slots, idx)
    drop_slot(idx)
  end
end
-- A batch of takes (a mark call's) reads what it needs once and writes once: `pf` holds
-- the slots held among the batch's tasks, their instances, the counts, and the writes
-- (`begin_takes` … `end_takes`); outside a batch each take reads and writes on its own.
-- Lapsed slots are swept only when the batch could find a cap full (a cap that does not
-- bind costs no sweep); whoever frees slots for parked tasks sweeps too.
local pf = nil
local function begin_takes(idxs, now)
  pf = { held = {}, inst = {}, n_all = 0, n_inst = {}, d_inst = {}, add = {} }
  local want, names = {}, {}
  if cap_inst > 0 then
    local keys = {}
    for k, idx in ipairs(idxs) do keys[k] = 'i:' .. idx end
    local insts = redis.call('HMGET', slotinfo, unpack(keys))
    for k, idx in ipairs(idxs) do
      local inst = insts[k] or ''
      pf.inst[idx] = inst
      if inst ~= '' then
        if not want[inst] then names[#names + 1] = inst end
        want[inst] = (want[inst] or 0) + 1
      end
    end
  end
  local function counts()
    if cap_all > 0 then pf.n_all = redis.call('ZCARD', slots) end
    if #names > 0 then
      local keys = {}
      for k, inst in ipairs(names) do keys[k] = 'n:' .. inst end
      local ns = redis.call('HMGET', slotinfo, unpack(keys))
      for k, inst in ipairs(names) do pf.n_inst[inst] = tonumber(ns[k] or '0') or 0 end
    end
  end
  counts()
  local full = cap_all > 0 and pf.n_all + #idxs > cap_all
  for inst, w in pairs(want) do
    if pf.n_inst[inst] + w > cap_inst then full = true end
  end
  if full then
    expire_slots(now)
    counts()
  end
  pf.any_parked = redis.call('EXISTS', parked) == 1
  local scores = redis.call('ZMSCORE', slots, unpack(idxs))
  for k, idx in ipairs(idxs) do
    if scores[k] then pf.held[idx] = true end
  end
end
local function end_takes()
  if #pf.add > 0 then redis.call('ZADD', slots, unpack(pf.add)) end
  for inst, d in pairs(pf.d_inst) do redis.call('HINCRBY', slotinfo, 'n:' .. inst, d) end
  pf = nil
end
-- Task idx takes (or keeps, extending it) a slot until `until_ms`; false when its run or its
-- instance is at the cap.
local function take_slot(idx, until_ms)
  if pf then
    if not pf.held[idx] then
      if cap_all > 0 and pf.n_all >= cap_all then return false end
      local inst = pf.inst[idx] or ''
      if inst ~= '' then
        local n = pf.n_inst[inst]
        if n >= cap_inst then return false end
        pf.n_inst[inst] = n + 1
        pf.d_inst[inst] = (pf.d_inst[inst] or 0) + 1
      end
      pf.held[idx] = true
      pf.n_all = pf.n_all + 1
    end
    pf.add[#pf.add + 1] = until_ms
    pf.add[#pf.add + 1] = idx
    return true
  end
  if redis.call('ZSCORE', slots, idx) then
    redis.call('ZADD', slots, until_ms, idx)
    return true
  end
  if cap_all > 0 and redis.call('ZCARD', slots) >= cap_all then return false end
  local inst = instance_of(idx)
  if inst ~= '' then
    -- One call counts the slot and tells whether the instance had room.
    if redis.call('HINCRBY', slotinfo, 'n:' .. inst, 1) > cap_inst then
      redis.call('HINCRBY', slotinfo, 'n:' .. inst, -1)
      return false
    end
  end
  redis.call('ZADD', slots, until_ms, idx)
  return true
end
local function free_slot(idx)
  if redis.call('ZREM', slots, idx) == 1 then drop_slot(idx) end
end
-- Frees the slots of several tasks (a record call's) in a few calls.
local function free_slots(idxs)
  local scores = redis.call('ZMSCORE', slots, unpack(idxs))
  local held, keys = {}, {}
  for k, idx in ipairs(idxs) do
    if scores[k] then
      held[#held + 1] = idx
      keys[#keys + 1] = 'i:' .. idx
    end
  end
  if #held == 0 then return end
  redis.call('ZREM', slots, unpack(held))
  if cap_inst <= 0 then return end
  local by_inst = {}
  for _, inst in ipairs(redis.call('HMGET', slotinfo, unpack(keys))) do
    if inst then by_inst[inst] = (by_inst[inst] or 0) + 1 end
  end
  for inst, n in pairs(by_inst) do redis.call('HINCRBY', slotinfo, 'n:' .. inst, -n) end
end
-- Parks a queued task (attempt att) until a slot frees.
local function park(idx, att, now)
  redis.call('ZADD', parked, now, idx .. ':' .. att)
  event('idx', idx, 'state', 'queued', 'parked', 'limit')
end
local function is_parked(idx, att)
  if pf and not pf.any_parked then return false end
  return redis.call('ZSCORE', parked, idx .. ':' .. att) ~= false
end
-- Gives free slots to parked tasks, oldest first (looking at most at 200 of them: a parked
-- task of a full instance does not hold up the others); each goes to the outbox. Parked
-- entries of tasks no longer queued at that attempt (cancelled, revived) are dropped.
local function unpark(now)
  if cap_all > 0 and redis.call('ZCARD', slots) >= cap_all then return end
  local members = redis.call('ZRANGE', parked, 0, 199)
  for _, m in ipairs(members) do
    local idx, att = string.match(m, '^(%d+):(%d+)$')
    if redis.call('HGET', state, idx) ~= 'queued' or redis.call('HGET', attempt, idx) ~= att then
      redis.call('ZREM', parked, m)
    elseif take_slot(idx, now + GRANT_MS) then
      redis.call('ZREM', parked, m)
      redis.call('RPUSH', outbox, m)
      event('idx', idx, 'state', 'queued', 'slot', 'granted')
      queued_n = queued_n + 1
      if cap_all > 0 and redis.call('ZCARD', slots) >= cap_all then return end
    end
  end
end
