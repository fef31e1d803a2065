-- CASCADE: goes on settling the dependents of final tasks that an earlier call left in the
-- run's `cascade` list (one chunk), and finishes the run when that was the last of it.
-- KEYS: the run's keys (prelude.lua); a run without `meta` changes nothing.
-- ARGV: now_ms
-- Returns: {entries left in the list, finished(0|1), tasks queued}.
if redis.call('EXISTS', meta) == 0 then return {0, 0, 0} end
if redis.call('LLEN', cascade) == 0 then return {0, 0, 0} end
local left = run_cascade()
return {left, maybe_finish(ARGV[1]), queued_n}
