-- Prelude of every run script (prepended to mark_running, renew, record_result, release,
-- promote, cancel and revive).
-- KEYS: all keys of one run, in RUN_KEY_SUFFIXES order (common/src/store/keys.rs), named here.
-- Helpers: event, for_each_child, walk_dependents, outcome_of, rule_verdict, settle,
-- reevaluate, run_cascade, settle_dependents, maybe_finish, parse_lease, lease_owner.
local meta, spec, state, attempt, pending, children, result, skip, outbox, events, lease, delayed, history, cancel, deliveries, cascade, rules, stages, slots, parked, slotinfo, archive = unpack(KEYS)
local function event(...)
  redis.call('XADD', events, 'MAXLEN', '~', 10000, '*', ...)
end
-- Calls f(child) for every direct dependent of idx (children are stored comma-separated).
local function for_each_child(idx, f)
  local ch = redis.call('HGET', children, idx)
  if ch then
    for c in string.gmatch(ch, '[^,]+') do f(c) end
  end
end
-- Walks the dependents of root depth-first: visit(child, parent) returns true to descend
-- into that child.
local function walk_dependents(root, visit)
  local stack = {root}
  while #stack > 0 do
    local cur = table.remove(stack)
    for_each_child(cur, function(c)
      if visit(c, cur) then table.insert(stack, c) end
    end)
  end
end
-- How a final task looks to its dependents: 's' succeeded, 'f' failed (failed, timeout,
-- cancelled, or skipped because of a failure), 'k' skipped (its condition did not hold, its
-- stage was rejected); nil while it is not final. The `skip` hash holds `CLASS:CAUSE`
-- (`d:3` a failure of task 3 made its rule unmeetable, `c:3` task 3 broke its condition,
-- `r:` rejected); written by skip_task, read by common/src/store/read.rs.
local function outcome_of(i)
  local st = redis.call('HGET', state, i)
  if st == 'success' then return 's' end
  if st == 'failed' or st == 'timeout' or st == 'cancelled' then return 'f' end
  if st == 'skipped' then
    local why = redis.call('HGET', skip, i) or 'd:'
    if string.sub(why, 1, 1) == 'd' then return 'f' end
    return 'k'
  end
  return nil
end
-- Airflow's trigger rules, the table of common/src/rules.rs: over n dependencies of which s
-- succeeded, f failed and k were skipped, 'go' (it may start), 'd' (unmeetable because of a
-- failure), 'c' (unmeetable otherwise) or nil (wait).
local function rule_verdict(rule, n, s, f, k)
  if n == 0 then return 'go' end
  local all = s + f + k >= n
  if rule == 'all_success' then
    if s >= n then return 'go' elseif f > 0 then return 'd' elseif k > 0 then return 'c' end
  elseif rule == 'all_failed' then
    if f >= n then return 'go' elseif s + k > 0 then return 'c' end
  elseif rule == 'all_done' then
    if all then return 'go' end
  elseif rule == 'all_skipped' then
    if k >= n then return 'go' elseif f > 0 then return 'd' elseif s > 0 then return 'c' end
  elseif rule == 'one_success' then
    if s > 0 then return 'go' elseif all then return (f > 0) and 'd' or 'c' end
  elseif rule == 'one_failed' then
    if f > 0 then return 'go' elseif all then return 'c' end
  elseif rule == 'one_done' then
    if s + f > 0 then return 'go' elseif all then return 'c' end
  elseif rule == 'none_failed' then
    if f > 0 then return 'd' elseif all then return 'go' end
  elseif rule == 'none_failed_min_one_success' then
    if f > 0 then return 'd' elseif all then return (s > 0) and 'go' or 'c' end
  elseif rule == 'none_skipped' then
    if k > 0 then return 'c' elseif all then return 'go' end
  end
  return nil
end
-- A task's rule, from the `rules` hash (common/src/store/create.rs writes it; absent for a
-- task that waits for every dependency to succeed and has no condition):
-- `RULE|DEPS|CONDS|P:w,...`, w = s/f (P must succeed/fail) or S/F (P is a dependency too).
local has_rules = nil -- meta `rules`: whether any task of the run has an entry (read once)
local function any_rules()
  if has_rules == nil then has_rules = (redis.call('HGET', meta, 'rules') or '0') ~= '0' end
  return has_rules
end
local function rule_of(c)
  if not any_rules() then return nil end
  local def = redis.call('HGET', rules, c)
  if not def then return nil end
  local rule, n, m, conds = string.match(def, '^([%w_]+)|(%d+)|(%d+)|(.*)$')
  return rule, tonumber(n), tonumber(m), conds
end
local function cond_on(conds, p)
  return string.match(',' .. conds .. ',', ',' .. p .. ':(%a),')
end
local function cond_holds(w, o)
  w = string.lower(w)
  return (w == 's' and o == 's') or (w == 'f' and o == 'f')
end
-- The verdict of a task with a rule entry: its rule over the tally (s, f, k of n
-- dependencies), then its m conditions, of which ok held and `broken` did not (a broken one
-- skips it with class 'c', unless a failure already decided 'd').
local function decide(rule, n, s, f, k, ok, m, broken)
  local v = rule_verdict(rule, n, s, f, k)
  if broken and v ~= 'd' then return 'c' end
  if v == 'go' and ok < m then return nil end
  return v
end
local function set_tally(c, s, f, k, ok)
  redis.call('HSET', rules, 't:' .. c, s .. ',' .. f .. ',' .. k .. ',' .. ok)
end
-- Tasks skipped by this script call, counted and announced by flush_skips.
local skipped_ids = {}
-- Whether this call added to the cascade list (else the recorder only asks its length).
local cascaded = false
-- Tasks a rule or a success started in this script call (the caller flushes the outbox).
local queued_n = 0
local function queue_task(c, a)
  a = a or 1
  queued_n = queued_n + 1
  redis.call('HSET', state, c, 'queued')
  redis.call('HSET', attempt, c, a)
  redis.call('RPUSH', outbox, c .. ':' .. a)
  event('idx', c, 'state', 'queued')
end
-- Skips a waiting task (class 'd' or 'c', decided by task p) and queues its own dependents
-- for the cascade.
local function skip_task(c, p, class)
  redis.call('HSET', state, c, 'skipped')
  redis.call('HSET', skip, c, class .. ':' .. p)
  skipped_ids[#skipped_ids + 1] = c
  if redis.call('HEXISTS', children, c) == 1 then
    redis.call('RPUSH', cascade, c .. ':0')
    cascaded = true
  end
end
-- The stage whose approval task c waits for (`a:IDX` in `rules`), if any.
local function stage_of(c)
  if not any_rules() then return nil end
  return redis.call('HGET', rules, 'a:' .. c)
end
-- Task c, whose stage st waits for an approval, waits in `awaiting_approval` (the stage is
-- marked `awaiting` in `stages`, announced when `announce` or when it was never reached).
local function await_approval(c, st, s, announce)
  redis.call('HSET', state, c, 'awaiting_approval')
  if s == '' then
    redis.call('HSET', stages, st, 'awaiting')
  end
  if s == '' or announce then
    event('stage', st, 'state', 'awaiting_approval')
  end
  event('idx', c, 'state', 'awaiting_approval')
end
-- A task whose rule holds starts (returns 1) — unless its stage waits for an approval: then
-- it waits (`await_approval`), or is skipped (class rejected) when the stage was rejected.
local function start_task(c)
  local st = stage_of(c)
  if st then
    local s = redis.call('HGET', stages, st) or ''
    if string.sub(s, 1, 8) == 'rejected' then
      skip_task(c, '', 'r')
      return 0
    end
    if string.sub(s, 1, 8) ~= 'approved' then
      await_approval(c, st, s, false)
      return 0
    end
  end
  queue_task(c)
  return 1
end
local function flush_skips()
  local n = #skipped_ids
  if n == 0 then return end
  redis.call('HINCRBY', meta, 'skipped', n)
  redis.call('HINCRBY', meta, 'done', n)
  for k = 1, n, 1000 do
    event('idxs', table.concat(skipped_ids, ',', k, math.min(k + 999, n)), 'state', 'skipped')
  end
  skipped_ids = {}
end
-- Task p just became final with outcome o ('s', 'f' or 'k'): its waiting dependent c takes
-- note and starts (returns 1), is skipped, or goes on waiting. A task with no rule entry keeps
-- the fast path: a count of dependencies not yet succeeded (`pending`).
local function settle(c, p, o)
  if redis.call('HGET', state, c) ~= 'waiting' then return 0 end
  local rule, n, m, conds = rule_of(c)
  local v
  if not rule then
    if o ~= 's' then v = (o == 'f') and 'd' or 'c'
    elseif redis.call('HINCRBY', pending, c, -1) <= 0 then v = 'go' end
  else
    local t = redis.call('HGET', rules, 't:' .. c) or '0,0,0,0'
    local s, f, k, ok = string.match(t, '^(%d+),(%d+),(%d+),(%d+)$')
    s, f, k, ok = tonumber(s), tonumber(f), tonumber(k), tonumber(ok)
    local w, broken = cond_on(conds, p), false
    if w then
      if cond_holds(w, o) then ok = ok + 1 else broken = true end
    end
    if not w or w == 'S' or w == 'F' then
      if o == 's' then s = s + 1 elseif o == 'f' then f = f + 1 else k = k + 1 end
    end
    set_tally(c, s, f, k, ok)
    v = decide(rule, n, s, f, k, ok, m, broken)
  end
  if v == 'go' then return start_task(c) end
  if v then skip_task(c, p, v) end
  return 0
end
-- A task's verdict from scratch over its parents' current outcomes (REVIVE: a parent runs
-- again): resets its `pending` count or tally, returns the verdict and the deciding parent.
local function reevaluate(c)
  local deps = cmsgpack.unpack(redis.call('HGET', spec, c))['deps'] or {}
  local rule, n, m, conds = rule_of(c)
  if not rule then
    local left, v, why = 0, nil, nil
    for _, d in ipairs(deps) do
      local o = outcome_of(tostring(d))
      if o ~= 's' then left = left + 1 end
      if o == 'f' and v ~= 'd' then v, why = 'd', d elseif o == 'k' and not v then v, why = 'c', d end
    end
    redis.call('HSET', pending, c, left)
    if not v and left == 0 then v = 'go' end
    return v, why
  end
  -- The first dependency that ended each way: the cause a skip names.
  local s, f, k, ok, broken, first = 0, 0, 0, 0, nil, {}
  for _, d in ipairs(deps) do
    local o = outcome_of(tostring(d))
    if o then
      first[o] = first[o] or d
      if o == 's' then s = s + 1 elseif o == 'f' then f = f + 1 else k = k + 1 end
    end
  end
  for p, w in string.gmatch(conds, '(%d+):(%a)') do
    local o = outcome_of(p)
    if o then
      if cond_holds(w, o) then ok = ok + 1 else broken = broken or p end
    end
  end
  set_tally(c, s, f, k, ok)
  local v = decide(rule, n, s, f, k, ok, m, broken ~= nil)
  if v == 'd' then return v, first['f'] end
  if v == 'c' then return v, broken or first['k'] or first['s'] end
  return v, nil
end
-- The dependents of final tasks are settled in chunks: one script call visits at most
-- `cascade_budget` entries and dependents (meta field, default 2000), and what is left stays in the run's
-- `cascade` list (`idx:byte offset into its children`, durable), which the next call — the
-- recorder's, or any upkeep's — goes on with. A crash between two chunks leaves the rest in
-- the list, never a task waiting forever; the run is not finished while the list is not empty.
local budget = nil -- shared by every cascade of one script call
local function run_cascade()
  budget = budget or tonumber(redis.call('HGET', meta, 'cascade_budget') or '2000')
  while budget > 0 do
    local top = redis.call('RPOP', cascade)
    if not top then break end
    local cur, off = string.match(top, '^(%d+):(%d+)$')
    off = tonumber(off)
    -- A task revived since (`dead retry`) is not final: its dependents wait for it again.
    local o = outcome_of(cur)
    local ch = o and redis.call('HGET', children, cur)
    -- An entry with nothing to visit costs one unit too (a chunk never pops without end).
    if not ch then budget = budget - 1 end
    -- `off` is a byte offset into the comma-separated children: each chunk reads only its part.
    local pos = off + 1
    while ch and pos <= #ch and budget > 0 do
      local comma = string.find(ch, ',', pos, true)
      local c = string.sub(ch, pos, (comma or (#ch + 1)) - 1)
      pos = comma and comma + 1 or #ch + 1
      budget = budget - 1
      settle(c, cur, o)
    end
    if ch and pos <= #ch then redis.call('RPUSH', cascade, cur .. ':' .. (pos - 1)) end
  end
  flush_skips()
  return redis.call('LLEN', cascade)
end
-- Settles the dependents of a task that just ended (in the cascade, within the budget).
local function settle_dependents(root)
  redis.call('RPUSH', cascade, root .. ':0')
  cascaded = true
end
-- The cascade's next chunk when this call added to it or skipped anything, else only the
-- list's length (the common case of a batch of successes: no extra calls).
local function cascade_if_needed()
  if cascaded or #skipped_ids > 0 then return run_cascade() end
  return redis.call('LLEN', cascade)
end
-- When every task is final: mark the run finished and let its keys expire.
local function maybe_finish(now)
  local done = tonumber(redis.call('HGET', meta, 'done') or '0')
  local total = tonumber(redis.call('HGET', meta, 'total') or '0')
  if done >= total and redis.call('HGET', meta, 'status') ~= 'finished' and redis.call('LLEN', cascade) == 0 then
    redis.call('HSET', meta, 'status', 'finished', 'finished_ms', now)
    event('state', 'finished')
    local ttl = tonumber(redis.call('HGET', meta, 'retention_s') or '0')
    if ttl and ttl > 0 then
      for i = 1, #KEYS do redis.call('EXPIRE', KEYS[i], ttl) end
    end
    return 1
  end
  return 0
end
-- A lease is `WORKER|EXPIRY_MS|STARTED_MS` (worker ids hold no `|`): who runs the task, until
-- when, and since when (what `zo-submit show` and the live view show). `parse_lease` reads
-- one (STARTED is absent in a lease from before protocol 5); `lease_owner` a task's.
local function parse_lease(l)
  local owner, exp, started = string.match(l, '^([^|]*)|(%d+)|?(%d*)$')
  return owner, tonumber(exp or '0'), started
end
local function lease_owner(idx)
  local l = redis.call('HGET', lease, idx)
  if not l then return nil, 0, nil end
  return parse_lease(l)
end
