-- TRIM_HELD: drops the outbox's first n entries while the run's flush lock is still ours.
-- KEYS: lock outbox
-- ARGV: token n
-- Returns: 1 trimmed, 0 the lock lapsed (nothing changed; the caller removes by value).
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('LTRIM', KEYS[2], ARGV[2], -1)
  return 1
end
return 0
