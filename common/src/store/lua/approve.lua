-- APPROVE: an operator's decision on a stage that waits for approval. Approved, its waiting
-- tasks start; rejected, every task of the stage not yet final is skipped (class rejected,
-- `r:` in `skip`) and its dependents are settled (they see it skipped).
-- KEYS: the run's keys (prelude.lua)
-- Errors: NORUN when the run has no `meta` (it expired or Redis lost it): nothing is written.
-- ARGV: stage, approve|reject, who, now_ms, reason
-- Returns: {1, tasks started or skipped, finished(0|1), tasks queued}, or {0, the stage's
-- status ('' when it was never reached)} when it is not awaiting approval (nothing changed).
if redis.call('EXISTS', meta) == 0 then return redis.error_reply('NORUN the run has no state in Redis') end
local st, verdict, who, now, reason = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local s = redis.call('HGET', stages, st) or ''
if s ~= 'awaiting' then return {0, s} end
local approve = verdict == 'approve'
if approve then
  redis.call('HSET', stages, st, 'approved|' .. who .. '|' .. now)
else
  redis.call('HSET', stages, st, 'rejected|' .. who .. '|' .. now .. '|' .. reason)
end
event('stage', st, 'state', approve and 'approved' or 'rejected', 'by', who)
-- The stage's tasks: `a:IDX` fields of `rules` naming it.
local n = 0
local fields = redis.call('HGETALL', rules)
for k = 1, #fields, 2 do
  local f, v = fields[k], fields[k + 1]
  if v == st and string.sub(f, 1, 2) == 'a:' then
    local c = string.sub(f, 3)
    local cs = redis.call('HGET', state, c)
    if approve and cs == 'awaiting_approval' then
      -- A task resumed while its stage waited keeps its new attempt.
      queue_task(c, tonumber(redis.call('HGET', attempt, c) or '1'))
      n = n + 1
    elseif not approve and (cs == 'awaiting_approval' or cs == 'waiting') then
      skip_task(c, '', 'r')
      n = n + 1
    end
  end
end
run_cascade()
return {1, n, maybe_finish(now), queued_n}
