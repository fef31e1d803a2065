-- CANCEL: cancels tasks not started and flags running ones for their worker. A whole run
-- starts nothing new; a single cancelled task counts as failed for its dependents' rules
-- (an `all_done` or `one_failed` dependent starts).
-- KEYS: the run's keys (prelude.lua)
-- Errors: NORUN when the run has no `meta` (it expired or Redis lost it): nothing is written.
-- ARGV: idx ('' = the whole run) now_ms
-- Returns: {cancelled, flagged, finished(0|1), tasks queued}; {-1, 0, 0, 0} when the task
-- does not exist.
if redis.call('EXISTS', meta) == 0 then return redis.error_reply('NORUN the run has no state in Redis') end
local now = ARGV[2]
local cancelled, flagged = 0, 0
local function cancel_one(i, one)
  local r = cancel_task(i, one, now, true)
  if r == 1 then cancelled = cancelled + 1 elseif r == 2 then flagged = flagged + 1 end
end
if ARGV[1] == '' then
  redis.call('HSET', meta, 'cancel_requested_ms', now)
  for _, i in ipairs(redis.call('HKEYS', state)) do cancel_one(i, false) end
else
  if not redis.call('HGET', state, ARGV[1]) then return {-1, 0, 0, 0} end
  cancel_one(ARGV[1], true)
end
if capped() then unpark(tonumber(now)) end
run_cascade()
return {cancelled, flagged, maybe_finish(now), queued_n}
