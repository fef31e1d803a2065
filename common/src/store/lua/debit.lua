-- DEBIT: after a task, what it did to its rate limiter: the tokens it used leave the bucket
-- (which may go below zero: the next tasks wait until it refills), and a rate-limit answer
-- backs every worker off (`retry_after_ms` when the agent said, else 10 s doubling with each
-- rate-limit answer in a row, at most 2 min); any other answer ends the row.
-- KEYS: the limiter's hash
-- ARGV: now_ms tokens tpm(0: none) rate_limited(0|1) retry_after_ms(0: unknown) ttl_s
-- Returns: the backoff's end in ms (0: none).
local lim = KEYS[1]
local now, tokens, tpm, limited, after, ttl = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4] == '1', tonumber(ARGV[5]), tonumber(ARGV[6])
if tpm > 0 and tokens > 0 then
  local h = redis.call('HMGET', lim, 'level', 'at')
  local level = tonumber(h[1] or '') or tpm
  local at = tonumber(h[2] or '') or now
  level = math.min(tpm, level + (now - at) * tpm / 60000) - tokens
  redis.call('HSET', lim, 'level', level, 'at', now)
end
local until_ms = 0
if limited then
  local strikes = redis.call('HINCRBY', lim, 'strikes', 1)
  local wait = after
  if wait <= 0 then wait = math.min(10000 * 2 ^ (strikes - 1), 120000) end
  until_ms = now + wait
  local cur = tonumber(redis.call('HGET', lim, 'backoff_until') or '0') or 0
  if until_ms > cur then redis.call('HSET', lim, 'backoff_until', until_ms) else until_ms = cur end
else
  redis.call('HDEL', lim, 'strikes')
end
redis.call('EXPIRE', lim, ttl)
return until_ms
