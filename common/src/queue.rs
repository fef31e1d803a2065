//! The queue's Redis operations. Every state change of a task is one atomic operation here:
//! creating a run is one MULTI, marking a task running and recording a result are one Lua
//! script each (touching only the run's own keys), and releasing dependents goes through the
//! run's outbox so that no job is lost between the script and the stream (see
//! ARCHITECTURE.md, "Task lifecycle").

use std::collections::HashMap;
use std::time::Duration;

use deadpool_redis::{Manager, Pool, Runtime};

use crate::keys::Keys;
use crate::model::{now_ms, JobSpec, TaskResult};

/// Lowest Redis version with everything we use (XAUTOCLAIM).
pub const MIN_REDIS: (u32, u32) = (6, 2);

/// How long finished runs stay in Redis by default.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("cannot reach Redis at {url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("Redis at {url} is version {version}; Zo Worker Swarm needs Redis 6.2 or newer")]
    TooOld { url: String, version: String },
    #[error("Redis error: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("Redis pool error: {0}")]
    Pool(String),
    #[error("run `{0}` does not exist (finished runs expire after their retention time)")]
    NoSuchRun(String),
    #[error("corrupt data in Redis: {0}")]
    Corrupt(String),
}

impl QueueError {
    /// True when the failure is about reaching Redis at all (exit code 3 at the edges).
    pub fn is_infrastructure(&self) -> bool {
        match self {
            QueueError::Unreachable { .. } | QueueError::TooOld { .. } | QueueError::Pool(_) => true,
            QueueError::Redis(e) => e.is_io_error() || e.is_connection_dropped() || e.is_connection_refusal() || e.is_timeout(),
            _ => false,
        }
    }
}

impl From<deadpool_redis::PoolError> for QueueError {
    fn from(e: deadpool_redis::PoolError) -> Self {
        match e {
            deadpool_redis::PoolError::Backend(r) => QueueError::Redis(r),
            other => QueueError::Pool(other.to_string()),
        }
    }
}

/// Hides a password in a Redis URL for messages.
pub fn redact_url(url: &str) -> String {
    if let Some((scheme, rest)) = url.split_once("://") {
        if let Some((cred, host)) = rest.rsplit_once('@') {
            let user = cred.split(':').next().unwrap_or("");
            let shown = if cred.contains(':') { format!("{user}:***") } else { "***".to_string() };
            return format!("{scheme}://{shown}@{host}");
        }
    }
    url.to_string()
}

/// Opens a pool, checks that the server answers and is new enough.
pub async fn connect(url: &str, max_size: usize) -> Result<Pool, QueueError> {
    let shown = redact_url(url);
    let unreachable = |reason: String| QueueError::Unreachable { url: shown.clone(), reason };
    // Blocking reads (XREADGROUP/XREAD BLOCK ≤ 2 s) need more than redis-rs's 500 ms default.
    let conn_cfg = redis::AsyncConnectionConfig::new()
        .set_response_timeout(Some(Duration::from_secs(10)))
        .set_connection_timeout(Some(Duration::from_secs(5)));
    let manager = Manager::new_with_config(url, conn_cfg).map_err(|e| unreachable(first_line(&e.to_string())))?;
    let pool = Pool::builder(manager)
        .max_size(max_size)
        .wait_timeout(Some(Duration::from_secs(30)))
        .create_timeout(Some(Duration::from_secs(6)))
        .recycle_timeout(Some(Duration::from_secs(5)))
        .runtime(Runtime::Tokio1)
        .build()
        .map_err(|e| unreachable(e.to_string()))?;
    let mut conn = tokio::time::timeout(Duration::from_secs(6), pool.get())
        .await
        .map_err(|_| unreachable("timed out after 6s".into()))?
        .map_err(|e| unreachable(first_line(&e.to_string())))?;
    let info: String =
        redis::cmd("INFO").arg("server").query_async(&mut *conn).await.map_err(|e| unreachable(first_line(&e.to_string())))?;
    let version = info.lines().find_map(|l| l.strip_prefix("redis_version:")).unwrap_or("0").trim().to_string();
    if !version_at_least(&version, MIN_REDIS) {
        return Err(QueueError::TooOld { url: shown, version });
    }
    Ok(pool)
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or(s).to_string()
}

fn version_at_least(v: &str, min: (u32, u32)) -> bool {
    let mut it = v.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    let major = it.next().unwrap_or(0);
    let minor = it.next().unwrap_or(0);
    (major, minor) >= min
}

/// Creates the consumer group of an instance stream (and the stream) if missing.
pub async fn ensure_group(conn: &mut impl redis::aio::ConnectionLike, keys: &Keys, instance: &str) -> Result<(), QueueError> {
    let res: redis::RedisResult<()> =
        redis::cmd("XGROUP").arg("CREATE").arg(keys.jobs(instance)).arg(keys.group()).arg("0").arg("MKSTREAM").query_async(conn).await;
    match res {
        Ok(()) => Ok(()),
        Err(e) if e.code() == Some("BUSYGROUP") => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// A new run id: creation time plus randomness, sortable and readable.
pub fn new_run_id() -> String {
    let t = time::OffsetDateTime::now_utc();
    let fmt = time::macros::format_description!("[year][month][day]-[hour][minute][second]");
    format!("{}-{:04x}", t.format(&fmt).unwrap_or_default(), rand::random::<u16>())
}

/// What the producer knows about a run when creating it.
pub struct NewRun<'a> {
    pub run_id: &'a str,
    pub file: &'a str,
    pub name: Option<&'a str>,
    pub specs: &'a [JobSpec],
    pub retention: Duration,
}

/// Creates every key of a run in one MULTI (all or nothing), roots in the outbox.
pub async fn create_run(conn: &mut impl redis::aio::ConnectionLike, keys: &Keys, run: &NewRun<'_>) -> Result<(), QueueError> {
    let k = |s: &str| keys.run(run.run_id, s);
    let n = run.specs.len();
    let mut children: Vec<Vec<u32>> = vec![Vec::new(); n];
    for s in run.specs {
        for &d in &s.deps {
            children[d as usize].push(s.idx);
        }
    }
    let now = now_ms();
    let mut p = redis::pipe();
    p.atomic();
    p.hset_multiple(
        k("meta"),
        &[
            ("run_id", run.run_id.to_string()),
            ("file", run.file.to_string()),
            ("name", run.name.unwrap_or("").to_string()),
            ("total", n.to_string()),
            ("done", "0".into()),
            ("running", "0".into()),
            ("success", "0".into()),
            ("failed", "0".into()),
            ("timeout", "0".into()),
            ("skipped", "0".into()),
            ("cancelled", "0".into()),
            ("status", "running".into()),
            ("created_ms", now.to_string()),
            ("retention_s", run.retention.as_secs().to_string()),
        ],
    )
    .ignore();
    // Large runs go in chunks so that no single command carries megabytes.
    for chunk in run.specs.chunks(1000) {
        let spec: Vec<(u32, Vec<u8>)> = chunk.iter().map(|s| (s.idx, s.encode())).collect();
        p.hset_multiple(k("spec"), &spec).ignore();
        let state: Vec<(u32, &str)> = chunk.iter().map(|s| (s.idx, if s.deps.is_empty() { "queued" } else { "waiting" })).collect();
        p.hset_multiple(k("state"), &state).ignore();
        let attempt: Vec<(u32, u32)> = chunk.iter().map(|s| (s.idx, u32::from(s.deps.is_empty()))).collect();
        p.hset_multiple(k("attempt"), &attempt).ignore();
        let pending: Vec<(u32, usize)> = chunk.iter().filter(|s| !s.deps.is_empty()).map(|s| (s.idx, s.deps.len())).collect();
        if !pending.is_empty() {
            p.hset_multiple(k("pending"), &pending).ignore();
        }
        let ch: Vec<(u32, String)> = chunk
            .iter()
            .filter(|s| !children[s.idx as usize].is_empty())
            .map(|s| (s.idx, children[s.idx as usize].iter().map(u32::to_string).collect::<Vec<_>>().join(",")))
            .collect();
        if !ch.is_empty() {
            p.hset_multiple(k("children"), &ch).ignore();
        }
        let roots: Vec<String> = chunk.iter().filter(|s| s.deps.is_empty()).map(|s| format!("{}:1", s.idx)).collect();
        if !roots.is_empty() {
            p.rpush(k("outbox"), roots).ignore();
        }
    }
    p.zadd(keys.runs(), run.run_id, now).ignore();
    p.query_async::<()>(conn).await?;
    Ok(())
}

/// Moves the run's outbox into the instance streams. Safe to run concurrently and to repeat:
/// an entry leaves the outbox only after its XADD, so a crash can duplicate a job (which the
/// running-guard drops) but never lose one. Returns how many jobs were enqueued.
pub async fn flush_outbox(conn: &mut impl redis::aio::ConnectionLike, keys: &Keys, run_id: &str) -> Result<usize, QueueError> {
    let outbox = keys.run(run_id, "outbox");
    let entries: Vec<String> = redis::cmd("LRANGE").arg(&outbox).arg(0).arg(4999).query_async(conn).await?;
    if entries.is_empty() {
        return Ok(0);
    }
    let parsed: Vec<(u32, u32, &str)> = entries
        .iter()
        .filter_map(|e| {
            let (i, a) = e.split_once(':')?;
            Some((i.parse().ok()?, a.parse().ok()?, e.as_str()))
        })
        .collect();
    let idxs: Vec<u32> = parsed.iter().map(|p| p.0).collect();
    let blobs: Vec<Option<Vec<u8>>> = redis::cmd("HMGET").arg(keys.run(run_id, "spec")).arg(&idxs).query_async(conn).await?;
    let mut p = redis::pipe();
    for ((idx, attempt, raw), blob) in parsed.iter().zip(blobs) {
        let Some(blob) = blob else {
            return Err(QueueError::Corrupt(format!("run {run_id}: outbox names task {idx} with no spec")));
        };
        let spec = JobSpec::decode(&blob).map_err(|e| QueueError::Corrupt(format!("run {run_id}: spec of task {idx}: {e}")))?;
        p.cmd("XADD")
            .arg(keys.jobs(&spec.instance))
            .arg("*")
            .arg("run")
            .arg(run_id)
            .arg("task")
            .arg(&spec.name)
            .arg("idx")
            .arg(idx)
            .arg("instance")
            .arg(&spec.instance)
            .arg("attempt")
            .arg(attempt)
            .arg("payload")
            .arg(blob)
            .ignore();
        p.cmd("LREM").arg(&outbox).arg(1).arg(*raw).ignore();
    }
    p.query_async::<()>(conn).await?;
    Ok(parsed.len())
}

const MARK_RUNNING: &str = r#"
-- KEYS: meta spec state attempt pending children result skip outbox events
-- ARGV: idx attempt worker now_ms
local st = redis.call('HGET', KEYS[3], ARGV[1])
if not st then return 'unknown' end
if st == 'queued' then
  local a = tonumber(redis.call('HGET', KEYS[4], ARGV[1]) or '0')
  if a ~= tonumber(ARGV[2]) then return 'stale' end
  redis.call('HSET', KEYS[3], ARGV[1], 'running')
  redis.call('HINCRBY', KEYS[1], 'running', 1)
  redis.call('HSETNX', KEYS[1], 'started_ms', ARGV[4])
  redis.call('XADD', KEYS[10], 'MAXLEN', '~', 10000, '*', 'idx', ARGV[1], 'state', 'running', 'worker', ARGV[3])
  return 'ok'
end
if st == 'running' then return 'running' end
if st == 'waiting' then return 'stale' end
return 'final'
"#;

const RECORD_RESULT: &str = r#"
-- KEYS: meta spec state attempt pending children result skip outbox events
-- ARGV: idx attempt status result_blob now_ms
local idx = ARGV[1]
local st = redis.call('HGET', KEYS[3], idx)
if st ~= 'running' and st ~= 'queued' then return {'dup', 0, 0} end
local a = tonumber(redis.call('HGET', KEYS[4], idx) or '0')
if a ~= tonumber(ARGV[2]) then return {'stale', 0, 0} end
local status = ARGV[3]
redis.call('HSET', KEYS[3], idx, status)
redis.call('HSET', KEYS[7], idx, ARGV[4])
if st == 'running' then redis.call('HINCRBY', KEYS[1], 'running', -1) end
redis.call('HINCRBY', KEYS[1], status, 1)
local done = redis.call('HINCRBY', KEYS[1], 'done', 1)
redis.call('XADD', KEYS[10], 'MAXLEN', '~', 10000, '*', 'idx', idx, 'state', status)
local released = 0
if status == 'success' then
  local ch = redis.call('HGET', KEYS[6], idx)
  if ch then
    for c in string.gmatch(ch, '[^,]+') do
      local left = redis.call('HINCRBY', KEYS[5], c, -1)
      if left <= 0 and redis.call('HGET', KEYS[3], c) == 'waiting' then
        redis.call('HSET', KEYS[3], c, 'queued')
        redis.call('HSET', KEYS[4], c, 1)
        redis.call('RPUSH', KEYS[9], c .. ':1')
        redis.call('XADD', KEYS[10], 'MAXLEN', '~', 10000, '*', 'idx', c, 'state', 'queued')
        released = released + 1
      end
    end
  end
else
  local stack = {idx}
  while #stack > 0 do
    local cur = table.remove(stack)
    local ch = redis.call('HGET', KEYS[6], cur)
    if ch then
      for c in string.gmatch(ch, '[^,]+') do
        if redis.call('HGET', KEYS[3], c) == 'waiting' then
          redis.call('HSET', KEYS[3], c, 'skipped')
          redis.call('HSET', KEYS[8], c, cur)
          redis.call('HINCRBY', KEYS[1], 'skipped', 1)
          done = redis.call('HINCRBY', KEYS[1], 'done', 1)
          redis.call('XADD', KEYS[10], 'MAXLEN', '~', 10000, '*', 'idx', c, 'state', 'skipped')
          table.insert(stack, c)
        end
      end
    end
  end
end
local total = tonumber(redis.call('HGET', KEYS[1], 'total'))
if done >= total then
  redis.call('HSET', KEYS[1], 'status', 'finished', 'finished_ms', ARGV[5])
  redis.call('XADD', KEYS[10], 'MAXLEN', '~', 10000, '*', 'state', 'finished')
  local ttl = tonumber(redis.call('HGET', KEYS[1], 'retention_s') or '0')
  if ttl and ttl > 0 then
    for i = 1, #KEYS do redis.call('EXPIRE', KEYS[i], ttl) end
  end
end
return {'ok', done, released}
"#;

/// Outcome of [`mark_running`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MarkRunning {
    /// The task is ours to run.
    Ok,
    /// Another delivery of this task is running.
    AlreadyRunning,
    /// The task already has its final result (a redelivery): drop the job.
    Final,
    /// The job is for an older attempt, or the run is gone: drop it.
    Stale,
}

/// Atomically moves a task from `queued` (this attempt) to `running`.
pub async fn mark_running(
    conn: &mut impl redis::aio::ConnectionLike,
    keys: &Keys,
    run_id: &str,
    idx: u32,
    attempt: u32,
    worker: &str,
) -> Result<MarkRunning, QueueError> {
    let script = redis::Script::new(MARK_RUNNING);
    let mut inv = script.prepare_invoke();
    for k in keys.run_keys(run_id) {
        inv.key(k);
    }
    let r: String = inv.arg(idx).arg(attempt).arg(worker).arg(now_ms()).invoke_async(conn).await?;
    Ok(match r.as_str() {
        "ok" => MarkRunning::Ok,
        "running" => MarkRunning::AlreadyRunning,
        "final" => MarkRunning::Final,
        _ => MarkRunning::Stale,
    })
}

/// Outcome of [`record_result`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    /// Stored; `released` dependents went to the outbox; `finished` when the run is complete.
    Ok { released: u32, finished: bool },
    /// The task already had a final result; nothing changed.
    Duplicate,
    /// The result is for an attempt that is no longer current; nothing changed.
    Stale,
}

/// Atomically stores a result (once per attempt), updates the counters, releases dependents
/// whose dependencies all succeeded and skips those of a failed task.
pub async fn record_result(
    conn: &mut impl redis::aio::ConnectionLike,
    keys: &Keys,
    run_id: &str,
    idx: u32,
    result: &TaskResult,
) -> Result<Recorded, QueueError> {
    let script = redis::Script::new(RECORD_RESULT);
    let mut inv = script.prepare_invoke();
    for k in keys.run_keys(run_id) {
        inv.key(k);
    }
    let (tag, done, released): (String, u64, u32) =
        inv.arg(idx).arg(result.attempt).arg(result.status.as_str()).arg(result.encode()).arg(now_ms()).invoke_async(conn).await?;
    Ok(match tag.as_str() {
        "ok" => {
            let total: u64 = conn_hget_u64(conn, &keys.run(run_id, "meta"), "total").await?;
            Recorded::Ok { released, finished: done >= total }
        }
        "dup" => Recorded::Duplicate,
        _ => Recorded::Stale,
    })
}

async fn conn_hget_u64(conn: &mut impl redis::aio::ConnectionLike, key: &str, field: &str) -> Result<u64, QueueError> {
    let v: Option<u64> = redis::cmd("HGET").arg(key).arg(field).query_async(conn).await?;
    Ok(v.unwrap_or(0))
}

/// The counters and status of a run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunMeta {
    pub run_id: String,
    pub file: String,
    pub name: String,
    pub total: u64,
    pub done: u64,
    pub running: u64,
    pub success: u64,
    pub failed: u64,
    pub timeout: u64,
    pub skipped: u64,
    pub cancelled: u64,
    pub finished: bool,
    pub created_ms: u64,
    pub started_ms: Option<u64>,
    pub finished_ms: Option<u64>,
}

pub async fn run_meta(conn: &mut impl redis::aio::ConnectionLike, keys: &Keys, run_id: &str) -> Result<RunMeta, QueueError> {
    let h: HashMap<String, String> = redis::cmd("HGETALL").arg(keys.run(run_id, "meta")).query_async(conn).await?;
    if h.is_empty() {
        return Err(QueueError::NoSuchRun(run_id.to_string()));
    }
    let num = |k: &str| h.get(k).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    Ok(RunMeta {
        run_id: run_id.to_string(),
        file: h.get("file").cloned().unwrap_or_default(),
        name: h.get("name").cloned().unwrap_or_default(),
        total: num("total"),
        done: num("done"),
        running: num("running"),
        success: num("success"),
        failed: num("failed"),
        timeout: num("timeout"),
        skipped: num("skipped"),
        cancelled: num("cancelled"),
        finished: h.get("status").map(String::as_str) == Some("finished"),
        created_ms: num("created_ms"),
        started_ms: h.get("started_ms").and_then(|v| v.parse().ok()),
        finished_ms: h.get("finished_ms").and_then(|v| v.parse().ok()),
    })
}

/// Everything about a run's tasks, for reports.
#[derive(Debug, Clone)]
pub struct RunSnapshot {
    pub meta: RunMeta,
    pub specs: Vec<JobSpec>,
    /// State per task (same order as `specs`).
    pub states: Vec<String>,
    pub results: Vec<Option<TaskResult>>,
    /// For skipped tasks: the dependency whose failure skipped them.
    pub skipped_by: Vec<Option<u32>>,
}

pub async fn snapshot(conn: &mut impl redis::aio::ConnectionLike, keys: &Keys, run_id: &str) -> Result<RunSnapshot, QueueError> {
    let meta = run_meta(conn, keys, run_id).await?;
    type Blobs = HashMap<u32, Vec<u8>>;
    let (spec, state, result, skip): (Blobs, HashMap<u32, String>, Blobs, HashMap<u32, u32>) = redis::pipe()
        .hgetall(keys.run(run_id, "spec"))
        .hgetall(keys.run(run_id, "state"))
        .hgetall(keys.run(run_id, "result"))
        .hgetall(keys.run(run_id, "skip"))
        .query_async(conn)
        .await?;
    let n = meta.total as usize;
    let mut specs = Vec::with_capacity(n);
    let mut states = Vec::with_capacity(n);
    let mut results = Vec::with_capacity(n);
    let mut skipped_by = Vec::with_capacity(n);
    for i in 0..n as u32 {
        let blob = spec.get(&i).ok_or_else(|| QueueError::Corrupt(format!("run {run_id}: task {i} has no spec")))?;
        specs.push(JobSpec::decode(blob).map_err(|e| QueueError::Corrupt(format!("run {run_id}: spec of task {i}: {e}")))?);
        states.push(state.get(&i).cloned().unwrap_or_else(|| "waiting".into()));
        results.push(match result.get(&i) {
            Some(b) => Some(TaskResult::decode(b).map_err(|e| QueueError::Corrupt(format!("run {run_id}: result of task {i}: {e}")))?),
            None => None,
        });
        skipped_by.push(skip.get(&i).copied());
    }
    Ok(RunSnapshot { meta, specs, states, results, skipped_by })
}

/// Convenience for binaries: a pooled connection.
pub async fn conn(pool: &Pool) -> Result<deadpool_redis::Connection, QueueError> {
    Ok(pool.get().await?)
}

/// Removes runs older than their retention from the run index (their keys expire on their own).
pub async fn prune_run_index(conn: &mut impl redis::aio::ConnectionLike, keys: &Keys, retention: Duration) -> Result<(), QueueError> {
    let cutoff = now_ms().saturating_sub(retention.as_millis() as u64);
    let _: i64 = redis::cmd("ZREMRANGEBYSCORE").arg(keys.runs()).arg("-inf").arg(cutoff).query_async(conn).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_passwords() {
        assert_eq!(redact_url("redis://:secret@host:6379/0"), "redis://:***@host:6379/0");
        assert_eq!(redact_url("redis://user:secret@host"), "redis://user:***@host");
        assert_eq!(redact_url("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379");
    }

    #[test]
    fn version_check() {
        assert!(version_at_least("7.0.15", MIN_REDIS));
        assert!(version_at_least("6.2.0", MIN_REDIS));
        assert!(!version_at_least("6.0.9", MIN_REDIS));
        assert!(!version_at_least("5.0.7", MIN_REDIS));
    }
}
