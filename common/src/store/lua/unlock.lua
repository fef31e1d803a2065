-- UNLOCK: deletes a lock only while it is still ours.
-- KEYS: lock
-- ARGV: token
-- Returns: 1 deleted, 0 not ours (expired or taken by another).
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
