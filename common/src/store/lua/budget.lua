-- Cancelling and the budget, appended after prelude.lua and slots.lua for every run script.
-- Meta `budget` / `budget_alert` hold the run's budget and the spending that raises the alert
-- (nano-dollars; absent or 0: no budget), `cost` what its recorded attempts cost so far,
-- `budget_alerted_ms` when the alert fired (once), `stopped` = `budget` and `stopped_ms` once
-- the budget was reached: from then on no task starts, retries included.
-- What this call's spending did (`budget_alert`, `budget_reached`), for the recorder's log.
local budget_news = {}
local function stopped()
  return redis.call('HEXISTS', meta, 'stopped') == 1
end
-- Cancels task i if it has not started (1), flags it for its worker if `flag_running` and it
-- runs (2), else 0. `one`: a single task, which counts as failed for its dependents' rules.
local function cancel_task(i, one, now, flag_running)
  local s = redis.call('HGET', state, i)
  if s == 'waiting' or s == 'queued' or s == 'awaiting_approval' then
    local att = redis.call('HGET', attempt, i) or '0'
    redis.call('ZREM', delayed, i .. ':' .. att)
    if capped() then
      redis.call('ZREM', parked, i .. ':' .. att)
      drop_grant(i)
    end
    redis.call('HSET', state, i, 'cancelled')
    redis.call('HINCRBY', meta, 'cancelled', 1)
    redis.call('HINCRBY', meta, 'done', 1)
    event('idx', i, 'state', 'cancelled')
    if one then settle_dependents(i) end
    return 1
  elseif s == 'running' and flag_running then
    redis.call('HSET', cancel, i, now)
    return 2
  end
  return 0
end
-- Adds what this call's attempts cost; at the alert share of the budget the alert fires
-- (once), at the budget the run stops: every task not started is cancelled, running ones
-- finish.
local function spend(n, now)
  if n <= 0 then return end
  local spent = redis.call('HINCRBY', meta, 'cost', n)
  local b = redis.call('HMGET', meta, 'budget', 'budget_alert', 'budget_alerted_ms')
  local budget = tonumber(b[1] or '0') or 0
  if budget <= 0 then return end
  if not b[3] and spent >= (tonumber(b[2] or '0') or 0) then
    redis.call('HSET', meta, 'budget_alerted_ms', now)
    event('event', 'budget_alert', 'spent', spent, 'of', budget)
    budget_news[#budget_news + 1] = 'budget_alert'
  end
  if spent >= budget and not stopped() then
    redis.call('HSET', meta, 'stopped', 'budget', 'stopped_ms', now)
    event('event', 'budget_reached', 'spent', spent, 'of', budget)
    budget_news[#budget_news + 1] = 'budget_reached'
    -- `b:` in `skip` says why each was cancelled (common/src/store/read.rs).
    for _, i in ipairs(redis.call('HKEYS', state)) do
      if cancel_task(i, false, now, false) == 1 then redis.call('HSET', skip, i, 'b:') end
    end
  end
end
