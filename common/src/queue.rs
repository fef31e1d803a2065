//! The queue's Redis operations. Every state change of a task is one atomic operation here:
//! creating a run is one commit of staged keys, marking a task running and recording a result
//! are one Lua script each (touching only the run's own keys), and releasing dependents goes through the
//! run's outbox so that no job is lost between the script and the stream (see
//! ARCHITECTURE.md, "Task lifecycle").

use std::collections::HashMap;
use std::time::Duration;

use deadpool_redis::{Manager, Pool, Runtime};

use crate::keys::Keys;
use crate::model::{now_ms, JobSpec, TaskResult};
use crate::scripts;
use crate::taskfile::Priority;

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

/// Creates the consumer group of an instance's streams (and the streams) if missing.
pub async fn ensure_group(conn: &mut impl redis::aio::ConnectionLike, keys: &Keys, instance: &str) -> Result<(), QueueError> {
    for p in Priority::ALL {
        let res: redis::RedisResult<()> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(keys.jobs_for(instance, p))
            .arg(keys.group())
            .arg("0")
            .arg("MKSTREAM")
            .query_async(conn)
            .await;
        match res {
            Ok(()) => {}
            Err(e) if e.code() == Some("BUSYGROUP") => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
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

/// Tasks per pipeline while a run is created: bounds the memory a large run needs.
const CREATE_CHUNK: usize = 2000;

/// How long the staging keys of a run being created live if the producer dies before
/// committing them.
const STAGING_TTL_S: u64 = 3600;

/// The run keys [`create_run`] writes (besides `meta`), each first under a staging name.
const CREATED_KEYS: [&str; 6] = ["spec", "state", "attempt", "pending", "children", "outbox"];

/// A job spec encoded for its stream entry, kept from [`create_run`] so the first flush does
/// not encode it again.
pub type RootBlobs = Vec<(u32, Vec<u8>)>;

/// Creates every key of a run, all or nothing, roots in the outbox, and returns the roots'
/// encoded specs (for [`flush_outbox_with`]). The keys are streamed to Redis under staging
/// names (`…:new:spec` and so on, expiring after [`STAGING_TTL_S`]) in pipelines of
/// [`CREATE_CHUNK`] tasks — Redis stores one chunk while the next is encoded, and a
/// 100,000-task run never sits in memory as one command buffer — and then one script renames
/// them into place and writes `meta`: until then nothing of the run is visible, and a producer
/// that dies half-way leaves only staging keys that expire.
pub async fn create_run(conn: &mut impl redis::aio::ConnectionLike, keys: &Keys, run: &NewRun<'_>) -> Result<RootBlobs, QueueError> {
    let created = stage_and_commit(conn, keys, run).await;
    if created.is_err() {
        // Whatever was staged goes (it would expire anyway); a committed run has none left.
        let mut del = redis::cmd("DEL");
        for s in CREATED_KEYS {
            del.arg(staging_key(keys, run.run_id, s));
        }
        let _ = del.query_async::<()>(conn).await;
    }
    let (now, roots) = created?;
    // Shared index keys are written by single commands, outside the run's script (one slot).
    redis::pipe().zadd(keys.runs(), run.run_id, now).ignore().sadd(keys.active(), run.run_id).ignore().query_async::<()>(conn).await?;
    Ok(roots)
}

/// Adds an HSET of `fields` to `key` unless there are none; says whether it did.
fn hset_some<V: redis::ToRedisArgs>(p: &mut redis::Pipeline, key: &str, fields: &[(u32, V)]) -> bool {
    if !fields.is_empty() {
        p.hset_multiple(key, fields).ignore();
    }
    !fields.is_empty()
}

/// Where [`create_run`] stages one of a run's keys.
fn staging_key(keys: &Keys, run_id: &str, suffix: &str) -> String {
    keys.run(run_id, &format!("new:{suffix}"))
}

/// The two steps of [`create_run`]; returns the creation time and the roots' blobs.
async fn stage_and_commit(
    conn: &mut impl redis::aio::ConnectionLike,
    keys: &Keys,
    run: &NewRun<'_>,
) -> Result<(u64, RootBlobs), QueueError> {
    let (now, written, roots) = stage_run(conn, keys, run).await?;
    let mut commit = scripts::COMMIT_RUN_SCRIPT.prepare_invoke();
    commit.key(keys.run(run.run_id, "meta"));
    for s in &written {
        commit.key(staging_key(keys, run.run_id, s));
    }
    for s in &written {
        commit.key(keys.run(run.run_id, s));
    }
    let meta: [(&str, String); 14] = [
        ("run_id", run.run_id.to_string()),
        ("file", run.file.to_string()),
        ("name", run.name.unwrap_or("").to_string()),
        ("total", run.specs.len().to_string()),
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
    ];
    for (f, v) in &meta {
        commit.arg(*f).arg(v);
    }
    let committed: i64 = commit.invoke_async(conn).await?;
    if committed != 1 {
        return Err(QueueError::Corrupt(format!("run {} already exists; nothing was changed (submit again for a new run id)", run.run_id)));
    }
    Ok((now, roots))
}

/// Writes the staging keys of [`create_run`]: chunks are encoded while Redis stores the one
/// before. Returns the creation time, the keys written (suffixes) and the roots' blobs.
async fn stage_run(
    conn: &mut impl redis::aio::ConnectionLike,
    keys: &Keys,
    run: &NewRun<'_>,
) -> Result<(u64, Vec<&'static str>, RootBlobs), QueueError> {
    let staging: Vec<String> = CREATED_KEYS.iter().map(|s| staging_key(keys, run.run_id, s)).collect();
    let n = run.specs.len();
    let mut children: Vec<Vec<u32>> = vec![Vec::new(); n];
    for s in run.specs {
        for &d in &s.deps {
            children[d as usize].push(s.idx);
        }
    }
    let now = now_ms();
    let at = |s: &str| CREATED_KEYS.iter().position(|c| *c == s).expect("a created key");
    let mut written = [false; CREATED_KEYS.len()];
    let mut roots: RootBlobs = Vec::new();
    let pipes = run.specs.chunks(CREATE_CHUNK).enumerate().map(|(c, chunk)| {
        let mut p = redis::pipe();
        let before = written;
        if c == 0 {
            // Start clean should an earlier attempt with this run id have left staging keys.
            p.del(&staging).ignore();
        }
        let blobs: Vec<Vec<u8>> = chunk.iter().map(JobSpec::encode).collect();
        let spec: Vec<(u32, &[u8])> = chunk.iter().zip(&blobs).map(|(s, b)| (s.idx, b.as_slice())).collect();
        written[at("spec")] |= hset_some(&mut p, &staging[at("spec")], &spec);
        let state: Vec<(u32, &str)> = chunk.iter().map(|s| (s.idx, if s.deps.is_empty() { "queued" } else { "waiting" })).collect();
        written[at("state")] |= hset_some(&mut p, &staging[at("state")], &state);
        let attempt: Vec<(u32, u32)> = chunk.iter().map(|s| (s.idx, u32::from(s.deps.is_empty()))).collect();
        written[at("attempt")] |= hset_some(&mut p, &staging[at("attempt")], &attempt);
        let pending: Vec<(u32, usize)> = chunk.iter().filter(|s| !s.deps.is_empty()).map(|s| (s.idx, s.deps.len())).collect();
        written[at("pending")] |= hset_some(&mut p, &staging[at("pending")], &pending);
        let ch: Vec<(u32, String)> = chunk
            .iter()
            .filter(|s| !children[s.idx as usize].is_empty())
            .map(|s| (s.idx, children[s.idx as usize].iter().map(u32::to_string).collect::<Vec<_>>().join(",")))
            .collect();
        written[at("children")] |= hset_some(&mut p, &staging[at("children")], &ch);
        let root_entries: Vec<String> = chunk.iter().filter(|s| s.deps.is_empty()).map(|s| format!("{}:1", s.idx)).collect();
        if !root_entries.is_empty() {
            p.rpush(&staging[at("outbox")], root_entries).ignore();
            written[at("outbox")] = true;
        }
        // A chunk that creates a staging key also sets its expiry (later writes keep it),
        // in one MULTI: a producer killed mid-write leaves no staging key without one.
        let mut creates = false;
        for (i, key) in staging.iter().enumerate() {
            if written[i] && !before[i] {
                p.expire(key, STAGING_TTL_S as i64).ignore();
                creates = true;
            }
        }
        if creates {
            p.atomic();
        }
        roots.extend(chunk.iter().zip(blobs).filter(|(s, _)| s.deps.is_empty()).map(|(s, b)| (s.idx, b)));
        Ok(p)
    });
    send_while_building(conn, pipes).await?;
    let written = CREATED_KEYS.iter().zip(written).filter(|(_, w)| *w).map(|(s, _)| *s).collect();
    Ok((now, written, roots))
}

/// Sends the pipelines `pipes` yields, in order, while the next one is being built: Redis
/// works on one while this task encodes the following one. Stops at the first error.
async fn send_while_building(
    conn: &mut impl redis::aio::ConnectionLike,
    pipes: impl Iterator<Item = Result<redis::Pipeline, QueueError>>,
) -> Result<(), QueueError> {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<redis::Pipeline>(1);
    let build = async move {
        for p in pipes {
            if tx.send(p?).await.is_err() {
                break;
            }
            // Let the connection write this pipeline before the next one is built.
            tokio::task::yield_now().await;
        }
        Ok::<_, QueueError>(())
    };
    let send = async {
        while let Some(p) = rx.recv().await {
            p.query_async::<()>(conn).await?;
        }
        Ok::<_, QueueError>(())
    };
    let (built, sent) = tokio::join!(build, send);
    sent?;
    built
}

/// Moves the run's outbox into the instance streams. Safe to run concurrently and to repeat:
/// an entry leaves the outbox only after its XADD, so a crash can duplicate a job (which the
/// running-guard drops) but never lose one. One flusher at a time per run (a short-lived
/// `flushing` key) keeps concurrent flushers from enqueueing the same entries twice; the
/// holder flushes until the outbox is empty, and looks again after letting go, so an entry
/// pushed while someone else held the key is never left behind. Returns how many jobs were
/// enqueued.
pub async fn flush_outbox(conn: &mut impl redis::aio::ConnectionLike, keys: &Keys, run_id: &str) -> Result<usize, QueueError> {
    flush_outbox_with(conn, keys, run_id, None).await
}

/// The run's specs as the producer holds them (index = task index), and the encoded specs of
/// its roots as [`create_run`] returned them (sorted by index).
#[derive(Clone, Copy)]
pub struct LocalSpecs<'a> {
    pub specs: &'a [JobSpec],
    pub blobs: &'a [(u32, Vec<u8>)],
}

impl<'a> LocalSpecs<'a> {
    fn blob(self, idx: u32) -> Option<&'a [u8]> {
        self.blobs.binary_search_by_key(&idx, |b| b.0).ok().map(|i| self.blobs[i].1.as_slice())
    }
}

/// [`flush_outbox`], taking specs from `local` instead of reading them back from Redis.
pub async fn flush_outbox_with(
    conn: &mut impl redis::aio::ConnectionLike,
    keys: &Keys,
    run_id: &str,
    local: Option<LocalSpecs<'_>>,
) -> Result<usize, QueueError> {
    let outbox = keys.run(run_id, "outbox");
    let lock = keys.run(run_id, "flushing");
    let token = format!("{:016x}", rand::random::<u64>());
    let mut moved = 0;
    loop {
        let got: Option<String> = redis::cmd("SET").arg(&lock).arg(&token).arg("NX").arg("PX").arg(5000).query_async(conn).await?;
        if got.is_none() {
            // Another flusher holds the key and will look again after letting go.
            return Ok(moved);
        }
        let flushed = flush_held(conn, keys, run_id, &lock, &token, local).await;
        let _: i64 = scripts::UNLOCK_SCRIPT.key(&lock).arg(&token).invoke_async(conn).await?;
        moved += flushed?;
        let left: u64 = redis::cmd("LLEN").arg(&outbox).query_async(conn).await?;
        if left == 0 {
            return Ok(moved);
        }
    }
}

/// The work of [`flush_outbox`] while holding the run's `flushing` key: chunks of the outbox's
/// head go to the streams, then leave the outbox in one LTRIM — safe because only the key's
/// holder removes entries while others only append (checked in the same script; should the
/// key have lapsed, each entry is removed by value instead).
async fn flush_held(
    conn: &mut impl redis::aio::ConnectionLike,
    keys: &Keys,
    run_id: &str,
    lock: &str,
    token: &str,
    local: Option<LocalSpecs<'_>>,
) -> Result<usize, QueueError> {
    let outbox = keys.run(run_id, "outbox");
    let mut moved = 0;
    // A run this process has just created: its outbox begins with exactly its roots, in order,
    // unless another flusher has moved some already (every flusher takes from the head, so the
    // head would no longer be the first root). Checking the head and the length replaces
    // reading the entries back.
    let mut fresh: &[(u32, Vec<u8>)] = match local {
        Some(l) if !l.blobs.is_empty() => {
            let (head, len): (Option<String>, usize) = redis::pipe().lindex(&outbox, 0).llen(&outbox).query_async(conn).await?;
            if head == Some(format!("{}:1", l.blobs[0].0)) && len >= l.blobs.len() {
                l.blobs
            } else {
                &[]
            }
        }
        _ => &[],
    };
    loop {
        let entries: Vec<String> = if fresh.is_empty() {
            redis::cmd("LRANGE").arg(&outbox).arg(0).arg(4999).query_async(conn).await?
        } else {
            let (chunk, rest) = fresh.split_at(fresh.len().min(5000));
            fresh = rest;
            chunk.iter().map(|(i, _)| format!("{i}:1")).collect()
        };
        if entries.is_empty() {
            return Ok(moved);
        }
        let mut parsed: Vec<(u32, u32)> = Vec::with_capacity(entries.len());
        for e in &entries {
            match e.split_once(':').and_then(|(i, a)| Some((i.parse().ok()?, a.parse().ok()?))) {
                Some(ia) => parsed.push(ia),
                None => tracing::warn!(run = run_id, entry = %e, "dropping a malformed outbox entry"),
            }
        }
        let known = |i: u32| local.and_then(|l| l.specs.get(i as usize));
        let missing: Vec<u32> = parsed.iter().map(|p| p.0).filter(|&i| known(i).is_none()).collect();
        let mut fetched: HashMap<u32, Vec<u8>> = HashMap::new();
        if !missing.is_empty() {
            let blobs: Vec<Option<Vec<u8>>> = redis::cmd("HMGET").arg(keys.run(run_id, "spec")).arg(&missing).query_async(conn).await?;
            for (i, b) in missing.iter().zip(blobs) {
                let b = b.ok_or_else(|| QueueError::Corrupt(format!("run {run_id}: outbox names task {i} with no spec")))?;
                fetched.insert(*i, b);
            }
        }
        let pipes = parsed.chunks(500).map(|part| {
            let mut p = redis::pipe();
            for &(idx, attempt) in part {
                match known(idx) {
                    Some(spec) => match local.and_then(|l| l.blob(idx)) {
                        Some(blob) => xadd_job(&mut p, keys, run_id, spec, attempt, blob),
                        None => xadd_job(&mut p, keys, run_id, spec, attempt, &spec.encode()),
                    },
                    None => {
                        let blob = &fetched[&idx];
                        let spec =
                            JobSpec::decode(blob).map_err(|e| QueueError::Corrupt(format!("run {run_id}: spec of task {idx}: {e}")))?;
                        xadd_job(&mut p, keys, run_id, &spec, attempt, blob);
                    }
                }
            }
            Ok(p)
        });
        send_while_building(conn, pipes).await?;
        let trimmed: i64 = scripts::TRIM_HELD_SCRIPT.key(lock).key(&outbox).arg(token).arg(entries.len()).invoke_async(conn).await?;
        if trimmed == 0 {
            // The flush key lapsed: someone else may be flushing now.
            fresh = &[];
            let mut p = redis::pipe();
            for e in &entries {
                p.cmd("LREM").arg(&outbox).arg(1).arg(e).ignore();
            }
            p.query_async::<()>(conn).await?;
        }
        moved += parsed.len();
    }
}

/// Adds the XADD of one job (readable fields next to the MessagePack payload) to a pipeline.
/// The command is sized up front: growing it argument by argument was most of its cost.
fn xadd_job(p: &mut redis::Pipeline, keys: &Keys, run_id: &str, spec: &JobSpec, attempt: u32, blob: &[u8]) {
    let stream = keys.jobs_for(&spec.instance, spec.priority);
    let bytes = stream.len() + run_id.len() + spec.name.len() + spec.instance.len() + blob.len() + 64;
    let mut cmd = redis::Cmd::with_capacity(15, bytes);
    cmd.arg("XADD")
        .arg(stream)
        .arg("*")
        .arg("run")
        .arg(run_id)
        .arg("task")
        .arg(&spec.name)
        .arg("idx")
        .arg(spec.idx)
        .arg("instance")
        .arg(&spec.instance)
        .arg("attempt")
        .arg(attempt)
        .arg("payload")
        .arg(blob);
    p.add_command(cmd).ignore();
}

/// Outcome of [`mark_running`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MarkRunning {
    /// The task is ours to run (under a lease).
    Ok,
    /// Ours, but delivered more often than allowed without a result: record it as failed.
    Poison,
    /// Another delivery of this task is running under a live lease.
    AlreadyRunning,
    /// The task already has its final result (a redelivery): drop the job.
    Final,
    /// The job is for an older attempt: drop it.
    Stale,
    /// The run (or the task in it) does not exist: dead-letter it.
    Unknown,
}

/// How a worker claims a task.
#[derive(Debug, Clone, Copy)]
pub struct Claim<'a> {
    pub worker: &'a str,
    pub lease: Duration,
    /// The job was reclaimed from another consumer: take over if that lease lapsed.
    pub takeover: bool,
    pub max_deliveries: u32,
}

fn invoke<'a>(script: &'a redis::Script, keys: &Keys, run_id: &str) -> redis::ScriptInvocation<'a> {
    let mut inv = script.prepare_invoke();
    for k in keys.run_keys(run_id) {
        inv.key(k);
    }
    inv
}

/// Atomically moves a task from `queued` (this attempt) to `running` under a lease, or takes
/// over a running task whose lease lapsed.
pub async fn mark_running(
    conn: &mut impl redis::aio::ConnectionLike,
    keys: &Keys,
    run_id: &str,
    idx: u32,
    attempt: u32,
    claim: &Claim<'_>,
) -> Result<MarkRunning, QueueError> {
    let item = ToMark { idx, attempt, takeover: claim.takeover };
    let tags = mark_running_many(conn, keys, run_id, claim, &[item]).await?;
    tags.into_iter().next().ok_or_else(|| QueueError::Corrupt("empty reply from the mark-running script".into()))
}

/// One task of a batch handed to [`mark_running_many`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ToMark {
    pub idx: u32,
    pub attempt: u32,
    /// The job was reclaimed from another consumer: take over if that lease lapsed.
    pub takeover: bool,
}

/// [`mark_running`] for several tasks of one run in one script call (one atomic step);
/// `claim.takeover` is ignored in favour of each item's. One outcome per item, in order.
pub async fn mark_running_many(
    conn: &mut impl redis::aio::ConnectionLike,
    keys: &Keys,
    run_id: &str,
    claim: &Claim<'_>,
    items: &[ToMark],
) -> Result<Vec<MarkRunning>, QueueError> {
    let mut inv = invoke(&scripts::MARK_RUNNING_SCRIPT, keys, run_id);
    inv.arg(claim.worker).arg(now_ms()).arg(claim.lease.as_millis() as u64).arg(claim.max_deliveries);
    for it in items {
        inv.arg(it.idx).arg(it.attempt).arg(if it.takeover { "1" } else { "0" });
    }
    let tags: Vec<String> = inv.invoke_async(conn).await?;
    if tags.len() != items.len() {
        return Err(QueueError::Corrupt(format!("mark-running script answered {} of {} tasks", tags.len(), items.len())));
    }
    Ok(tags
        .iter()
        .map(|t| match t.as_str() {
            "ok" => MarkRunning::Ok,
            "poison" => MarkRunning::Poison,
            "running" => MarkRunning::AlreadyRunning,
            "final" => MarkRunning::Final,
            "unknown" => MarkRunning::Unknown,
            _ => MarkRunning::Stale,
        })
        .collect())
}

/// Outcome of [`renew`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Renewed {
    Ok,
    /// Renewed, and someone asked to cancel the task.
    CancelRequested,
    /// The lease is no longer ours (taken over, or the task ended): stop working on it.
    Lost,
}

/// Extends the lease of a running task held by `worker`.
pub async fn renew(
    conn: &mut impl redis::aio::ConnectionLike,
    keys: &Keys,
    run_id: &str,
    idx: u32,
    attempt: u32,
    worker: &str,
    lease: Duration,
) -> Result<Renewed, QueueError> {
    let r: i64 = invoke(&scripts::RENEW_SCRIPT, keys, run_id)
        .arg(idx)
        .arg(attempt)
        .arg(worker)
        .arg(now_ms())
        .arg(lease.as_millis() as u64)
        .invoke_async(conn)
        .await?;
    Ok(match r {
        1 => Renewed::Ok,
        2 => Renewed::CancelRequested,
        _ => Renewed::Lost,
    })
}

/// Outcome of [`record_result`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    /// Stored as final; `released` dependents went to the outbox; `finished` when the run is complete.
    Ok { released: u32, finished: bool },
    /// Stored as a failed attempt; the next attempt waits in the run's delayed set.
    Retry,
    /// The task already had a final result; nothing changed.
    Duplicate,
    /// The result is for an attempt that is no longer current; nothing changed.
    Stale,
}

/// Atomically stores a result (once per attempt). With `retry_in`, a failure schedules the
/// next attempt instead of ending the task. A final result updates the counters, releases
/// dependents whose dependencies all succeeded and skips those of a failed task.
pub async fn record_result(
    conn: &mut impl redis::aio::ConnectionLike,
    keys: &Keys,
    run_id: &str,
    idx: u32,
    result: &TaskResult,
    retry_in: Option<Duration>,
) -> Result<Recorded, QueueError> {
    let item = ToRecord { idx, attempt: result.attempt, status: result.status.as_str(), blob: result.encode(), retry_in };
    let (mut out, finished) = record_results(conn, keys, run_id, std::slice::from_ref(&item)).await?;
    match out.pop() {
        Some(Recorded::Ok { released, .. }) => Ok(Recorded::Ok { released, finished }),
        Some(other) => Ok(other),
        None => Err(QueueError::Corrupt("empty reply from the record script".into())),
    }
}

/// One result of a batch handed to [`record_results`].
#[derive(Debug, Clone)]
pub struct ToRecord {
    pub idx: u32,
    pub attempt: u32,
    pub status: &'static str,
    /// The encoded [`TaskResult`].
    pub blob: Vec<u8>,
    pub retry_in: Option<Duration>,
}

/// [`record_result`] for several results of one run in one script call (one atomic step).
/// One outcome per item, in order (their `finished` is false), and whether the batch
/// finished the run.
pub async fn record_results(
    conn: &mut impl redis::aio::ConnectionLike,
    keys: &Keys,
    run_id: &str,
    items: &[ToRecord],
) -> Result<(Vec<Recorded>, bool), QueueError> {
    let mut inv = invoke(&scripts::RECORD_RESULT_SCRIPT, keys, run_id);
    inv.arg(now_ms());
    for it in items {
        inv.arg(it.idx).arg(it.attempt).arg(it.status).arg(&it.blob).arg(it.retry_in.map_or(-1i64, |d| d.as_millis() as i64));
    }
    let (tags, finished): (Vec<(String, u32)>, u32) = inv.invoke_async(conn).await?;
    if tags.len() != items.len() {
        return Err(QueueError::Corrupt(format!("record script answered {} of {} results", tags.len(), items.len())));
    }
    let out = tags
        .into_iter()
        .map(|(tag, released)| match tag.as_str() {
            "ok" => Recorded::Ok { released, finished: false },
            "retry" => Recorded::Retry,
            "dup" => Recorded::Duplicate,
            _ => Recorded::Stale,
        })
        .collect();
    Ok((out, finished == 1))
}

/// Acknowledges and deletes handled entries of one stream (one round trip).
pub async fn ack_many(conn: &mut impl redis::aio::ConnectionLike, keys: &Keys, stream: &str, ids: &[&str]) -> Result<(), QueueError> {
    redis::pipe().xack(stream, keys.group(), ids).ignore().xdel(stream, ids).ignore().query_async::<()>(conn).await?;
    Ok(())
}

/// Hands a running task back to the queue at once (worker shutdown). True when handed back.
pub async fn release(
    conn: &mut impl redis::aio::ConnectionLike,
    keys: &Keys,
    run_id: &str,
    idx: u32,
    attempt: u32,
    worker: &str,
) -> Result<bool, QueueError> {
    let r: i64 = invoke(&scripts::RELEASE_SCRIPT, keys, run_id).arg(idx).arg(attempt).arg(worker).invoke_async(conn).await?;
    Ok(r == 1)
}

/// Moves due retries of a run to its outbox; returns how many.
pub async fn promote_due(conn: &mut impl redis::aio::ConnectionLike, keys: &Keys, run_id: &str) -> Result<u64, QueueError> {
    Ok(invoke(&scripts::PROMOTE_SCRIPT, keys, run_id).arg(now_ms()).invoke_async(conn).await?)
}

/// What [`cancel`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cancelled {
    /// Tasks that had not started and are now cancelled.
    pub cancelled: u64,
    /// Running tasks whose workers were asked to stop them.
    pub flagged: u64,
    pub finished: bool,
}

/// Cancels a whole run (`idx` = None) or one task (its dependents are skipped).
pub async fn cancel(
    conn: &mut impl redis::aio::ConnectionLike,
    keys: &Keys,
    run_id: &str,
    idx: Option<u32>,
) -> Result<Cancelled, QueueError> {
    let (c, f, fin): (i64, u64, u32) = invoke(&scripts::CANCEL_SCRIPT, keys, run_id)
        .arg(idx.map(|i| i.to_string()).unwrap_or_default())
        .arg(now_ms())
        .invoke_async(conn)
        .await?;
    if c < 0 {
        return Err(QueueError::NoSuchRun(run_id.to_string()));
    }
    Ok(Cancelled { cancelled: c as u64, flagged: f, finished: fin == 1 })
}

/// Runs a failed task again (a new attempt), un-skipping what it skipped; `None` when the
/// task is not failed, timed out or cancelled.
pub async fn revive(conn: &mut impl redis::aio::ConnectionLike, keys: &Keys, run_id: &str, idx: u32) -> Result<Option<u32>, QueueError> {
    let n: u32 = invoke(&scripts::REVIVE_SCRIPT, keys, run_id).arg(idx).arg(now_ms()).invoke_async(conn).await?;
    if n == 0 {
        return Ok(None);
    }
    let _: i64 = redis::cmd("SADD").arg(keys.active()).arg(run_id).query_async(conn).await?;
    flush_outbox(conn, keys, run_id).await?;
    Ok(Some(n))
}

/// One dead-lettered entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    pub id: String,
    pub reason: String,
    /// Run and task index, when the entry names a task of a run.
    pub task: Option<(String, u32)>,
    pub task_name: String,
    pub fields: Vec<(String, String)>,
}

/// The dead letters, oldest first.
pub async fn dead_letters(conn: &mut impl redis::aio::ConnectionLike, keys: &Keys) -> Result<Vec<DeadLetter>, QueueError> {
    let reply: redis::streams::StreamRangeReply = redis::cmd("XRANGE").arg(keys.dead()).arg("-").arg("+").query_async(conn).await?;
    Ok(reply
        .ids
        .into_iter()
        .map(|e| {
            let text = |k: &str| {
                e.map
                    .get(k)
                    .and_then(|v| redis::from_redis_value::<Vec<u8>>(v.clone()).ok())
                    .map(|b| String::from_utf8_lossy(&b).into_owned())
            };
            let task = match (text("run"), text("idx").and_then(|i| i.parse().ok())) {
                (Some(r), Some(i)) => Some((r, i)),
                _ => None,
            };
            let mut fields: Vec<(String, String)> = e
                .map
                .iter()
                .map(|(k, v)| {
                    (
                        k.clone(),
                        redis::from_redis_value::<Vec<u8>>(v.clone())
                            .map(|b| String::from_utf8_lossy(&b).chars().take(200).collect())
                            .unwrap_or_default(),
                    )
                })
                .collect();
            fields.sort();
            DeadLetter { reason: text("reason").unwrap_or_default(), task_name: text("task").unwrap_or_default(), task, id: e.id, fields }
        })
        .collect())
}

/// Keeps every unfinished run moving: promotes due retries and flushes outboxes; forgets
/// finished or expired runs. Workers and watchers call it every second or so.
pub async fn maintain_active(conn: &mut impl redis::aio::ConnectionLike, keys: &Keys) -> Result<(), QueueError> {
    let runs: Vec<String> = redis::cmd("SMEMBERS").arg(keys.active()).query_async(conn).await?;
    for run in runs {
        let status: Option<String> = redis::cmd("HGET").arg(keys.run(&run, "meta")).arg("status").query_async(conn).await?;
        match status.as_deref() {
            Some("running") => {
                promote_due(conn, keys, &run).await?;
                flush_outbox(conn, keys, &run).await?;
            }
            _ => {
                let _: i64 = redis::cmd("SREM").arg(keys.active()).arg(&run).query_async(conn).await?;
            }
        }
    }
    Ok(())
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
    /// Every recorded attempt per task (retried ones and the final result), in attempt order.
    pub history: Vec<Vec<TaskResult>>,
}

pub async fn snapshot(conn: &mut impl redis::aio::ConnectionLike, keys: &Keys, run_id: &str) -> Result<RunSnapshot, QueueError> {
    let meta = run_meta(conn, keys, run_id).await?;
    type Blobs = HashMap<u32, Vec<u8>>;
    type Named = HashMap<String, Vec<u8>>;
    let (spec, state, result, skip, hist): (Blobs, HashMap<u32, String>, Blobs, HashMap<u32, u32>, Named) = redis::pipe()
        .hgetall(keys.run(run_id, "spec"))
        .hgetall(keys.run(run_id, "state"))
        .hgetall(keys.run(run_id, "result"))
        .hgetall(keys.run(run_id, "skip"))
        .hgetall(keys.run(run_id, "history"))
        .query_async(conn)
        .await?;
    let n = meta.total as usize;
    let mut specs = Vec::with_capacity(n);
    let mut states = Vec::with_capacity(n);
    let mut results = Vec::with_capacity(n);
    let mut skipped_by = Vec::with_capacity(n);
    let mut history: Vec<Vec<TaskResult>> = vec![Vec::new(); n];
    for (k, blob) in &hist {
        let Some(i) = k.split(':').next().and_then(|i| i.parse::<usize>().ok()).filter(|&i| i < n) else { continue };
        let r = TaskResult::decode(blob).map_err(|e| QueueError::Corrupt(format!("run {run_id}: attempt {k}: {e}")))?;
        history[i].push(r);
    }
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
    // `history` holds the attempts that were retried or revived; the final one is the result.
    for (h, r) in history.iter_mut().zip(&results) {
        if let Some(r) = r.as_ref().filter(|r| !h.iter().any(|x| x.attempt == r.attempt)) {
            h.push(r.clone());
        }
        h.sort_by_key(|r| r.attempt);
    }
    Ok(RunSnapshot { meta, specs, states, results, skipped_by, history })
}

/// What the server's settings put at risk, as warnings to log at start-up: without AOF a
/// restart loses queued jobs and results; with an evicting policy Redis may drop them.
pub async fn durability_warnings(conn: &mut impl redis::aio::ConnectionLike) -> Vec<String> {
    let mut out = Vec::new();
    let get = |name: &'static str| redis::cmd("CONFIG").arg("GET").arg(name).to_owned();
    let aof: redis::RedisResult<Vec<String>> = get("appendonly").query_async(conn).await;
    if let Ok(v) = aof {
        if v.get(1).map(String::as_str) == Some("no") {
            out.push("Redis runs without AOF (appendonly no): a Redis restart loses queued jobs and results; set `appendonly yes` and `appendfsync everysec`".to_string());
        }
    }
    let policy: redis::RedisResult<Vec<String>> = get("maxmemory-policy").query_async(conn).await;
    if let Ok(v) = policy {
        if let Some(p) = v.get(1).filter(|p| p.as_str() != "noeviction") {
            out.push(format!(
                "Redis maxmemory-policy is `{p}`: under memory pressure it may evict jobs or run state; set `maxmemory-policy noeviction`"
            ));
        }
    }
    out
}

/// Removes consumers of a stream's group that hold no pending entries, have been idle longer
/// than `idle`, and belong to no worker with a recent heartbeat.
pub async fn remove_dead_consumers(
    conn: &mut impl redis::aio::ConnectionLike,
    keys: &Keys,
    stream: &str,
    idle: Duration,
) -> Result<u32, QueueError> {
    let live: Vec<String> =
        redis::cmd("ZRANGEBYSCORE").arg(keys.workers()).arg(now_ms().saturating_sub(60_000)).arg("+inf").query_async(conn).await?;
    let info: Vec<HashMap<String, redis::Value>> =
        redis::cmd("XINFO").arg("CONSUMERS").arg(stream).arg(keys.group()).query_async(conn).await?;
    let mut removed = 0;
    for c in info {
        let name: String = c.get("name").and_then(|v| redis::from_redis_value(v.clone()).ok()).unwrap_or_default();
        let pending: u64 = c.get("pending").and_then(|v| redis::from_redis_value(v.clone()).ok()).unwrap_or(1);
        let idle_ms: u64 = c.get("idle").and_then(|v| redis::from_redis_value(v.clone()).ok()).unwrap_or(0);
        if pending == 0 && idle_ms > idle.as_millis() as u64 && !live.contains(&name) && !name.is_empty() {
            let _: i64 = redis::cmd("XGROUP").arg("DELCONSUMER").arg(stream).arg(keys.group()).arg(&name).query_async(conn).await?;
            removed += 1;
        }
    }
    Ok(removed)
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
