-- ARCHIVE_CLAIM: claims the archiving of a finished run for WHO, for a minute. Whoever sees
-- the run finish first archives it; a claimer that dies lets the claim lapse. A run that is
-- not finished (REVIVE reopened it, and deleted the claim or the `done` mark) is not claimed.
-- KEYS: the run's `archive` key, its `meta` key
-- ARGV: who
-- Returns: 1 claimed, 0 not finished or claimed or archived already.
if redis.call('HGET', KEYS[2], 'status') ~= 'finished' then return 0 end
if redis.call('SET', KEYS[1], 'claim|' .. ARGV[1], 'NX', 'PX', 60000) then return 1 end
return 0
