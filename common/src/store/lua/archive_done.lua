-- ARCHIVE_DONE: records that a finished run is archived at PATH, for as long as its keys live,
-- only while the claim is still WHO's: a run reopened meanwhile (REVIVE deletes the claim) is
-- archived again, with its new outcome, when it finishes again.
-- KEYS: the run's `archive` key, its `meta` key
-- ARGV: who path fallback_ttl_ms
-- Returns: 1 recorded, 0 the claim is no longer WHO's (nothing changed).
if redis.call('GET', KEYS[1]) ~= 'claim|' .. ARGV[1] then return 0 end
local ttl = redis.call('PTTL', KEYS[2])
if ttl <= 0 then ttl = tonumber(ARGV[3]) end
redis.call('SET', KEYS[1], 'done|' .. ARGV[2], 'PX', ttl)
return 1
