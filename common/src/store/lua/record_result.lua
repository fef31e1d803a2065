-- RECORD_RESULT: records a batch of one run's results, settles their dependents by their
-- trigger rules (start, skip or keep waiting), finishes the run when every task is final.
-- KEYS: the run's keys (prelude.lua)
-- Errors: NORUN when the run has no `meta` (it expired or Redis lost it): nothing is written.
-- ARGV: now_ms, then per task: idx attempt status result_blob retry_delay_ms (-1: final)
-- cost_nanos (what the attempt's tokens cost; counted once per stored attempt, budget.lua)
-- instance (its entry's: counted under a per-instance cap, slots.lua)
-- Returns: {tag per task, finished(0|1), cascade entries left, tasks queued (started
-- dependents, in the outbox), what its spending did (`budget_alert`, `budget_reached`,
-- comma-separated, or '')}; tag ok | retry | dup | stale. A final
-- result goes to `result`; only attempts that are retried go to `history` (the snapshot joins
-- both), and one event per status names the tasks.
if redis.call('EXISTS', meta) == 0 then return redis.error_reply('NORUN the run has no state in Redis') end
local now = ARGV[1]
local idxs = {}
for i = 2, #ARGV, 7 do idxs[#idxs + 1] = ARGV[i] end
local sts = redis.call('HMGET', state, unpack(idxs))
local atts = redis.call('HMGET', attempt, unpack(idxs))
-- `now_st`/`now_att`: state and attempt after earlier items of this batch (same task twice).
local out, now_st, now_att, by_status, counts = {}, {}, {}, {}, {}
local finals, st_set, res_set, lease_del, ran_insts, queued_idxs = {}, {}, {}, {}, {}, {}
local ran, done, cost = 0, 0, 0
-- A run stopped by its budget retries nothing.
local halted = stopped()
local caps = capped()
for k = 1, #idxs do
  local i = 7 * k - 5
  local idx, att, status, blob, delay = idxs[k], tonumber(ARGV[i + 1]), ARGV[i + 2], ARGV[i + 3], tonumber(ARGV[i + 4])
  local st = now_st[idx] or sts[k]
  if st ~= 'running' and st ~= 'queued' then out[k] = 'dup'
  elseif (now_att[idx] or tonumber(atts[k] or '0')) ~= att then out[k] = 'stale'
  else
    if st == 'running' then ran = ran + 1 end
    if caps then
      if st == 'running' then ran_insts[#ran_insts + 1] = ARGV[i + 6] else queued_idxs[#queued_idxs + 1] = idx end
    end
    lease_del[#lease_del + 1] = idx
    cost = cost + (tonumber(ARGV[i + 5]) or 0)
    if delay >= 0 and not halted and status ~= 'success' and status ~= 'cancelled' and redis.call('HEXISTS', cancel, idx) == 0 then
      local nxt = att + 1
      redis.call('HSET', history, idx .. ':' .. att, blob)
      redis.call('HSET', state, idx, 'queued')
      redis.call('HSET', attempt, idx, nxt)
      redis.call('HDEL', deliveries, idx)
      redis.call('ZADD', delayed, tonumber(now) + delay, idx .. ':' .. nxt)
      redis.call('HINCRBY', meta, 'retries', 1)
      event('idx', idx, 'state', 'retry', 'attempt', nxt, 'after', status)
      now_st[idx], now_att[idx] = 'queued', nxt
      out[k] = 'retry'
    else
      now_st[idx] = status
      st_set[#st_set + 1] = idx; st_set[#st_set + 1] = status
      res_set[#res_set + 1] = idx; res_set[#res_set + 1] = blob
      counts[status] = (counts[status] or 0) + 1
      done = done + 1
      local l = by_status[status]
      if not l then l = {}; by_status[status] = l end
      l[#l + 1] = idx
      finals[#finals + 1] = k
      out[k] = 'ok'
    end
  end
end
if #lease_del > 0 then
  redis.call('HDEL', lease, unpack(lease_del))
  if ran > 0 then redis.call('HINCRBY', meta, 'running', -ran) end
  -- A finished or retried attempt gives its slot to the oldest parked task (slots.lua).
  if caps then
    free_running_slots(ran_insts)
    for _, idx in ipairs(queued_idxs) do drop_grant(idx) end
    unpark(tonumber(now))
  end
end
if #st_set > 0 then
  redis.call('HSET', state, unpack(st_set))
  redis.call('HSET', result, unpack(res_set))
end
for st, n in pairs(counts) do redis.call('HINCRBY', meta, st, n) end
if done > 0 then redis.call('HINCRBY', meta, 'done', done) end
for st, l in pairs(by_status) do event('idxs', table.concat(l, ','), 'state', st) end
spend(cost, tonumber(now))
-- Dependents only ever look at tasks that are `waiting`, never at this batch's own tasks. A
-- success settles its direct dependents now; other outcomes go through the cascade (chunked:
-- a failure may skip a whole subtree).
for _, k in ipairs(finals) do
  local idx = idxs[k]
  if ARGV[7 * k - 3] == 'success' then
    for_each_child(idx, function(c) settle(c, idx, 's') end)
  else
    settle_dependents(idx)
  end
end
local left = cascade_if_needed()
return {out, maybe_finish(now), left, queued_n, table.concat(budget_news, ',')}
