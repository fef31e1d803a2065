//! The Lua scripts that move tasks between states. Each takes all keys of one run, in
//! [`crate::keys::RUN_KEY_SUFFIXES`] order, so each is one atomic step on one run (one
//! Cluster slot). A shared prelude names the keys and holds the helpers (release dependents,
//! skip dependents, finish the run).

use std::sync::LazyLock;

use redis::Script;

const PRELUDE: &str = r#"
local meta, spec, state, attempt, pending, children, result, skip, outbox, events, lease, delayed, history, cancel, deliveries = unpack(KEYS)
local function event(...)
  redis.call('XADD', events, 'MAXLEN', '~', 10000, '*', ...)
end
-- Dependents whose last dependency just succeeded go to the outbox (attempt 1).
local function release_children(idx)
  local n = 0
  local ch = redis.call('HGET', children, idx)
  if ch then
    for c in string.gmatch(ch, '[^,]+') do
      local left = redis.call('HINCRBY', pending, c, -1)
      if left <= 0 and redis.call('HGET', state, c) == 'waiting' then
        redis.call('HSET', state, c, 'queued')
        redis.call('HSET', attempt, c, 1)
        redis.call('RPUSH', outbox, c .. ':1')
        event('idx', c, 'state', 'queued')
        n = n + 1
      end
    end
  end
  return n
end
-- Every waiting descendant of a task that did not succeed is skipped.
local function skip_dependents(root)
  local stack = {root}
  while #stack > 0 do
    local cur = table.remove(stack)
    local ch = redis.call('HGET', children, cur)
    if ch then
      for c in string.gmatch(ch, '[^,]+') do
        if redis.call('HGET', state, c) == 'waiting' then
          redis.call('HSET', state, c, 'skipped')
          redis.call('HSET', skip, c, cur)
          redis.call('HINCRBY', meta, 'skipped', 1)
          redis.call('HINCRBY', meta, 'done', 1)
          event('idx', c, 'state', 'skipped')
          table.insert(stack, c)
        end
      end
    end
  end
end
-- When every task is final: mark the run finished and let its keys expire.
local function maybe_finish(now)
  local done = tonumber(redis.call('HGET', meta, 'done') or '0')
  local total = tonumber(redis.call('HGET', meta, 'total') or '0')
  if done >= total and redis.call('HGET', meta, 'status') ~= 'finished' then
    redis.call('HSET', meta, 'status', 'finished', 'finished_ms', now)
    event('state', 'finished')
    local ttl = tonumber(redis.call('HGET', meta, 'retention_s') or '0')
    if ttl and ttl > 0 then
      for i = 1, #KEYS do redis.call('EXPIRE', KEYS[i], ttl) end
    end
    return 1
  end
  return 0
end
local function lease_owner(idx)
  local l = redis.call('HGET', lease, idx)
  if not l then return nil, 0 end
  local owner, exp = string.match(l, '^(.*)|(%d+)$')
  return owner, tonumber(exp or '0')
end
"#;

/// Marks a batch of tasks of one run running. ARGV: worker now_ms lease_ms max_deliveries,
/// then per task: idx attempt takeover(0|1). Returns one tag per task: ok | poison | running |
/// final | stale | unknown. One `running` event names every task it started.
const MARK_RUNNING: &str = r#"
local worker, now, lease_ms, maxd = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local idxs = {}
for i = 5, #ARGV, 3 do idxs[#idxs + 1] = ARGV[i] end
-- Read what the batch needs in three calls, decide, then write in three.
local sts = redis.call('HMGET', state, unpack(idxs))
local atts = redis.call('HMGET', attempt, unpack(idxs))
local dels = redis.call('HMGET', deliveries, unpack(idxs))
local until_ms = worker .. '|' .. (now + lease_ms)
local out, started, marked, st_set, lease_set, del_set, delta = {}, {}, {}, {}, {}, {}, 0
for k = 1, #idxs do
  local idx, att, takeover = idxs[k], tonumber(ARGV[3 + 3 * k]), ARGV[4 + 3 * k]
  local st = sts[k]
  local tag
  if marked[idx] then tag = 'running' -- the same task twice in one batch
  elseif not st then tag = 'unknown'
  elseif st == 'waiting' then tag = 'stale'
  elseif st ~= 'queued' and st ~= 'running' then tag = 'final'
  elseif tonumber(atts[k] or '0') ~= att then tag = 'stale'
  elseif st == 'running' and (takeover ~= '1' or select(2, lease_owner(idx)) > now) then tag = 'running'
  else
    if st == 'running' then delta = delta - 1 end
    local d = (tonumber(dels[k]) or 0) + 1
    marked[idx] = true
    st_set[#st_set + 1] = idx; st_set[#st_set + 1] = 'running'
    lease_set[#lease_set + 1] = idx; lease_set[#lease_set + 1] = until_ms
    del_set[#del_set + 1] = idx; del_set[#del_set + 1] = d
    delta = delta + 1
    started[#started + 1] = idx
    if d > maxd then tag = 'poison' else tag = 'ok' end
  end
  out[k] = tag
end
if #started > 0 then
  redis.call('HSET', state, unpack(st_set))
  redis.call('HSET', lease, unpack(lease_set))
  redis.call('HSET', deliveries, unpack(del_set))
  redis.call('HSETNX', meta, 'started_ms', now)
  event('idxs', table.concat(started, ','), 'state', 'running', 'worker', worker)
end
if delta ~= 0 then redis.call('HINCRBY', meta, 'running', delta) end
return out
"#;

/// ARGV: idx attempt worker now_ms lease_ms. Returns 1 renewed, 2 renewed but cancel
/// requested, 0 the lease is no longer ours.
const RENEW: &str = r#"
local idx, att, worker, now, lease_ms = ARGV[1], tonumber(ARGV[2]), ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[5])
if redis.call('HGET', state, idx) ~= 'running' then return 0 end
if tonumber(redis.call('HGET', attempt, idx) or '0') ~= att then return 0 end
local owner = lease_owner(idx)
if owner ~= worker then return 0 end
redis.call('HSET', lease, idx, worker .. '|' .. (now + lease_ms))
if redis.call('HEXISTS', cancel, idx) == 1 then return 2 end
return 1
"#;

/// Records a batch of results of one run. ARGV: now_ms, then per task: idx attempt status
/// result_blob retry_delay_ms (-1: final). Returns {{tag, released} per task, finished}; tag
/// ok | retry | dup | stale. A final result goes to `result`; only attempts that are retried
/// go to `history` (the snapshot joins both), and one event per status names the tasks.
const RECORD_RESULT: &str = r#"
local now = ARGV[1]
local idxs = {}
for i = 2, #ARGV, 5 do idxs[#idxs + 1] = ARGV[i] end
local sts = redis.call('HMGET', state, unpack(idxs))
local atts = redis.call('HMGET', attempt, unpack(idxs))
-- `now_st`/`now_att`: state and attempt after earlier items of this batch (same task twice).
local out, now_st, now_att, by_status, counts = {}, {}, {}, {}, {}
local finals, st_set, res_set, lease_del = {}, {}, {}, {}
local ran, done = 0, 0
for k = 1, #idxs do
  local i = 5 * k - 3
  local idx, att, status, blob, delay = idxs[k], tonumber(ARGV[i + 1]), ARGV[i + 2], ARGV[i + 3], tonumber(ARGV[i + 4])
  local st = now_st[idx] or sts[k]
  if st ~= 'running' and st ~= 'queued' then out[k] = {'dup', 0}
  elseif (now_att[idx] or tonumber(atts[k] or '0')) ~= att then out[k] = {'stale', 0}
  else
    if st == 'running' then ran = ran + 1 end
    lease_del[#lease_del + 1] = idx
    if delay >= 0 and status ~= 'success' and status ~= 'cancelled' and redis.call('HEXISTS', cancel, idx) == 0 then
      local nxt = att + 1
      redis.call('HSET', history, idx .. ':' .. att, blob)
      redis.call('HSET', state, idx, 'queued')
      redis.call('HSET', attempt, idx, nxt)
      redis.call('HDEL', deliveries, idx)
      redis.call('ZADD', delayed, tonumber(now) + delay, idx .. ':' .. nxt)
      redis.call('HINCRBY', meta, 'retries', 1)
      event('idx', idx, 'state', 'retry', 'attempt', nxt, 'after', status)
      now_st[idx], now_att[idx] = 'queued', nxt
      out[k] = {'retry', 0}
    else
      now_st[idx] = status
      st_set[#st_set + 1] = idx; st_set[#st_set + 1] = status
      res_set[#res_set + 1] = idx; res_set[#res_set + 1] = blob
      counts[status] = (counts[status] or 0) + 1
      done = done + 1
      local l = by_status[status]
      if not l then l = {}; by_status[status] = l end
      l[#l + 1] = idx
      finals[#finals + 1] = k
      out[k] = {'ok', 0}
    end
  end
end
if #lease_del > 0 then redis.call('HDEL', lease, unpack(lease_del)) end
if #st_set > 0 then
  redis.call('HSET', state, unpack(st_set))
  redis.call('HSET', result, unpack(res_set))
end
-- Dependents only ever look at tasks that are `waiting`, never at this batch's own tasks.
for _, k in ipairs(finals) do
  local idx = idxs[k]
  if ARGV[5 * k - 1] == 'success' then out[k][2] = release_children(idx) else skip_dependents(idx) end
end
if ran > 0 then redis.call('HINCRBY', meta, 'running', -ran) end
for st, n in pairs(counts) do redis.call('HINCRBY', meta, st, n) end
if done > 0 then redis.call('HINCRBY', meta, 'done', done) end
for st, l in pairs(by_status) do event('idxs', table.concat(l, ','), 'state', st) end
return {out, maybe_finish(now)}
"#;

/// ARGV: idx attempt worker. Hands a running task back (queued, same attempt, outbox).
/// Returns 1 when handed back, 0 when it was not ours to hand back.
const RELEASE: &str = r#"
local idx, att, worker = ARGV[1], tonumber(ARGV[2]), ARGV[3]
if redis.call('HGET', state, idx) ~= 'running' then return 0 end
if tonumber(redis.call('HGET', attempt, idx) or '0') ~= att then return 0 end
if lease_owner(idx) ~= worker then return 0 end
redis.call('HSET', state, idx, 'queued')
redis.call('HINCRBY', meta, 'running', -1)
redis.call('HDEL', lease, idx)
redis.call('HINCRBY', deliveries, idx, -1)
redis.call('RPUSH', outbox, idx .. ':' .. att)
event('idx', idx, 'state', 'queued', 'released_by', worker)
return 1
"#;

/// ARGV: now_ms. Moves retries that are due from the delayed set to the outbox.
const PROMOTE: &str = r#"
local due = redis.call('ZRANGEBYSCORE', delayed, '-inf', ARGV[1], 'LIMIT', 0, 1000)
for _, m in ipairs(due) do
  redis.call('ZREM', delayed, m)
  redis.call('RPUSH', outbox, m)
end
return #due
"#;

/// ARGV: idx ('' = the whole run) now_ms. Tasks not started become cancelled at once (a
/// single cancelled task skips its dependents); running ones are flagged for their worker.
/// Returns {cancelled, flagged, finished}.
const CANCEL: &str = r#"
local now = ARGV[2]
local cancelled, flagged = 0, 0
local function cancel_one(i, cascade)
  local s = redis.call('HGET', state, i)
  if s == 'waiting' or s == 'queued' then
    redis.call('ZREM', delayed, i .. ':' .. (redis.call('HGET', attempt, i) or '0'))
    redis.call('HSET', state, i, 'cancelled')
    redis.call('HINCRBY', meta, 'cancelled', 1)
    redis.call('HINCRBY', meta, 'done', 1)
    event('idx', i, 'state', 'cancelled')
    cancelled = cancelled + 1
    if cascade then skip_dependents(i) end
  elseif s == 'running' then
    redis.call('HSET', cancel, i, now)
    flagged = flagged + 1
  end
end
if ARGV[1] == '' then
  redis.call('HSET', meta, 'cancel_requested_ms', now)
  for _, i in ipairs(redis.call('HKEYS', state)) do cancel_one(i, false) end
else
  if not redis.call('HGET', state, ARGV[1]) then return {-1, 0, 0} end
  cancel_one(ARGV[1], true)
end
return {cancelled, flagged, maybe_finish(now)}
"#;

/// ARGV: idx now_ms. Runs a task that ended failed/timeout/cancelled again (a new attempt)
/// and un-skips the dependents it had skipped. Returns the new attempt, or 0 when the task
/// is not in such a state.
const REVIVE: &str = r#"
local idx, now = ARGV[1], ARGV[2]
local st = redis.call('HGET', state, idx)
if st ~= 'failed' and st ~= 'timeout' and st ~= 'cancelled' then return 0 end
redis.call('HINCRBY', meta, st, -1)
redis.call('HINCRBY', meta, 'done', -1)
local nxt = tonumber(redis.call('HGET', attempt, idx) or '0') + 1
redis.call('HSET', state, idx, 'queued')
redis.call('HSET', attempt, idx, nxt)
local last = redis.call('HGET', result, idx)
if last then redis.call('HSET', history, idx .. ':' .. (nxt - 1), last) end
redis.call('HDEL', result, idx)
redis.call('HDEL', deliveries, idx)
redis.call('HDEL', cancel, idx)
redis.call('RPUSH', outbox, idx .. ':' .. nxt)
event('idx', idx, 'state', 'queued', 'revived', nxt)
local stack = {idx}
while #stack > 0 do
  local cur = table.remove(stack)
  local ch = redis.call('HGET', children, cur)
  if ch then
    for c in string.gmatch(ch, '[^,]+') do
      if redis.call('HGET', state, c) == 'skipped' and redis.call('HGET', skip, c) == cur then
        local deps = cmsgpack.unpack(redis.call('HGET', spec, c))['deps'] or {}
        local left = 0
        for _, d in ipairs(deps) do
          if redis.call('HGET', state, tostring(d)) ~= 'success' then left = left + 1 end
        end
        redis.call('HSET', state, c, 'waiting')
        redis.call('HSET', pending, c, left)
        redis.call('HDEL', skip, c)
        redis.call('HINCRBY', meta, 'skipped', -1)
        redis.call('HINCRBY', meta, 'done', -1)
        event('idx', c, 'state', 'waiting')
        table.insert(stack, c)
      end
    end
  end
end
if redis.call('HGET', meta, 'status') == 'finished' then
  redis.call('HSET', meta, 'status', 'running')
  redis.call('HDEL', meta, 'finished_ms')
  for i = 1, #KEYS do redis.call('PERSIST', KEYS[i]) end
end
return nxt
"#;

fn script(body: &str) -> Script {
    Script::new(&format!("{PRELUDE}\n{body}"))
}

pub static MARK_RUNNING_SCRIPT: LazyLock<Script> = LazyLock::new(|| script(MARK_RUNNING));
pub static RENEW_SCRIPT: LazyLock<Script> = LazyLock::new(|| script(RENEW));
pub static RECORD_RESULT_SCRIPT: LazyLock<Script> = LazyLock::new(|| script(RECORD_RESULT));
pub static RELEASE_SCRIPT: LazyLock<Script> = LazyLock::new(|| script(RELEASE));
pub static PROMOTE_SCRIPT: LazyLock<Script> = LazyLock::new(|| script(PROMOTE));
pub static REVIVE_SCRIPT: LazyLock<Script> = LazyLock::new(|| script(REVIVE));
pub static CANCEL_SCRIPT: LazyLock<Script> = LazyLock::new(|| script(CANCEL));

/// KEYS[1] lock, ARGV[1] token: deletes the lock only while it is still ours.
pub static UNLOCK_SCRIPT: LazyLock<Script> =
    LazyLock::new(|| Script::new("if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0"));

/// KEYS[1] lock, KEYS[2] outbox; ARGV[1] token, ARGV[2] n: drops the outbox's first n entries
/// while the flush lock is still ours (1), else leaves it alone (0).
pub static TRIM_HELD_SCRIPT: LazyLock<Script> = LazyLock::new(|| {
    Script::new("if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('LTRIM', KEYS[2], ARGV[2], -1) return 1 end return 0")
});

/// Commits a run staged by `create_run`: KEYS[1] is `meta`, then the N staging keys, then the N
/// final keys; ARGV the fields and values of `meta`. Renames every staging key into place
/// (clearing its expiry) and writes `meta`, or — when the run already exists or a staging key
/// is gone — changes nothing and returns 0 (a missing staging key is an error).
pub static COMMIT_RUN_SCRIPT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
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
"#,
    )
});
