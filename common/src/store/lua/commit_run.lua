-- COMMIT_RUN: makes a run staged by create_run visible, all at once.
-- KEYS: meta, then the N staging keys, then the N final keys (same order)
-- ARGV: the fields and values of `meta`
-- Returns: 1 committed; 0 the run already exists (nothing changed); an error when a staging
-- key is gone (expired or deleted; nothing changed). Renaming clears each key's expiry.
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local n = (#KEYS - 1) / 2
for i = 1, n do
  if redis.call('EXISTS', KEYS[1 + i]) == 0 then
    return redis.error_reply('ERR staging key ' .. KEYS[1 + i] .. ' is gone (expired or deleted); nothing was created')
  end
end
for i = 1, n do
  redis.call('RENAME', KEYS[1 + i], KEYS[1 + n + i])
  redis.call('PERSIST', KEYS[1 + n + i])
end
redis.call('HSET', KEYS[1], unpack(ARGV))
return 1
