//! The worker service: one read loop per served instance takes jobs from that instance's
//! stream as slots free up, each job runs in its own tracked task, and results are recorded
//! atomically before the job is acknowledged.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use deadpool_redis::Pool;
use redis::streams::StreamReadOptions;
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, error, info, warn, Instrument};
use zo_common::catalog::Catalog;
use zo_common::keys::Keys;
use zo_common::model::{now_ms, ErrorClass, JobSpec, Status, TaskResult};
use zo_common::queue::{self, MarkRunning, QueueError, Recorded, Renewed, ToMark, ToRecord};
use zo_common::taskfile::Priority;

use crate::batch::{Batcher, ClaimInfo};
use crate::ccr;
use crate::config::{ExecutorConfig, Reach, WorkerConfig};
use crate::exec::{local::LocalExecutor, ssh::SshExecutor, Executor};
use crate::secrets::Secrets;
use crate::task::{execute, Outcome, TaskContext};

/// Where and how this worker runs.
pub struct WorkerOptions {
    pub redis_url: String,
    pub namespace: String,
    pub config: WorkerConfig,
    pub catalog: Catalog,
}

#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error(transparent)]
    Queue(#[from] QueueError),
    #[error("{0}")]
    Config(String),
}

struct Shared {
    pool: Pool,
    /// The hot path's Redis steps (mark, record, ack), batched.
    batch: Batcher,
    keys: Keys,
    id: String,
    ctx: TaskContext,
    /// Fires when running tasks must stop and be handed back (drain deadline, second signal).
    abort: CancellationToken,
    lease: Duration,
    max_deliveries: u32,
    /// Jobs running on this worker, for lease renewal and cancel checks.
    running: Mutex<HashMap<(String, u32), RunningJob>>,
    /// Task slots per instance.
    slots: HashMap<String, Arc<Semaphore>>,
    tracker: TaskTracker,
    /// Readiness and (re)start count of each supervised CCR instance; jobs of an instance are
    /// taken only while it is ready.
    ready: HashMap<String, (watch::Receiver<bool>, Arc<std::sync::atomic::AtomicU32>)>,
}

impl Shared {
    /// Waits until the instance's CCR is ready (at once when this worker runs no CCR).
    /// False when shutdown came first.
    async fn wait_ready(&self, instance: &str, shutdown: &CancellationToken) -> bool {
        let Some((rx, _)) = self.ready.get(instance) else { return true };
        let mut rx = rx.clone();
        if *rx.borrow() {
            return true;
        }
        tokio::select! {
            r = rx.wait_for(|v| *v) => r.is_ok(),
            _ = shutdown.cancelled() => false,
        }
    }

    /// The instance's CCR (re)start count and whether it is ready now (`None`: no CCR here).
    fn ccr_state(&self, instance: &str) -> Option<(u32, bool)> {
        self.ready.get(instance).map(|(rx, gen)| (gen.load(std::sync::atomic::Ordering::SeqCst), *rx.borrow()))
    }
}

/// A job in progress on this worker.
#[derive(Clone)]
struct RunningJob {
    stream: String,
    entry_id: String,
    attempt: u32,
    /// Stops the execution (user cancel or lost lease; see `why`).
    stop: CancellationToken,
    why: Arc<std::sync::atomic::AtomicU8>,
}

const STOP_CANCELLED: u8 = 1;
const STOP_LEASE_LOST: u8 = 2;

/// A unique consumer name: host, pid and a random suffix.
pub fn worker_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "host".into());
    format!("{host}-{}-{:04x}", std::process::id(), rand::random::<u16>())
}

/// Runs until `shutdown` fires, then drains: no new jobs, running ones get
/// `drain_timeout` to finish, after which they are stopped (their processes killed) and their
/// jobs stay pending for another worker. `force` skips the drain.
pub async fn run(opts: WorkerOptions, shutdown: CancellationToken, force: CancellationToken) -> Result<(), WorkerError> {
    let cfg = &opts.config;
    let slots: usize = cfg.instances.iter().map(|i| i.concurrency).sum();
    let pool = queue::connect(&opts.redis_url, slots + cfg.instances.len() * 2 + 6).await?;
    let keys = Keys::new(&opts.namespace);
    let api_key = cfg.agent_api_key().map_err(|e| WorkerError::Config(format!("agent.api_key: {e}")))?;
    let executor: Option<Arc<dyn Executor>> = match &cfg.executor {
        ExecutorConfig::Ssh(s) => {
            let tunnels: Vec<(String, u16)> = match &cfg.ccr {
                Some(c) if c.reach == Reach::Tunnel => {
                    cfg.instances.iter().filter_map(|i| opts.catalog.get(&i.name).map(|e| (i.name.clone(), e.port))).collect()
                }
                _ => Vec::new(),
            };
            Some(Arc::new(SshExecutor::new(s.clone()).with_tunnels(tunnels)))
        }
        ExecutorConfig::Local {} => Some(Arc::new(LocalExecutor::new())),
        ExecutorConfig::Simulate {} => None,
    };
    {
        let mut conn = queue::conn(&pool).await?;
        for i in &cfg.instances {
            queue::ensure_group(&mut *conn, &keys, &i.name).await?;
        }
        for warning in queue::durability_warnings(&mut *conn).await {
            warn!("{warning}");
        }
    }
    let id = worker_id();
    // CCR instances: prepared (secrets substituted) before anything runs, so a missing key
    // stops the worker with a clear message instead of failing tasks.
    let mut ctx = TaskContext::new(cfg, opts.catalog.clone(), executor.clone(), api_key);
    let ccr_stop = CancellationToken::new();
    let mut supervisors = tokio::task::JoinSet::new();
    let mut ready: HashMap<String, (watch::Receiver<bool>, Arc<std::sync::atomic::AtomicU32>)> = HashMap::new();
    if let Some(ccr_cfg) = &cfg.ccr {
        let secrets = Secrets::load(&ccr_cfg.bws, &ccr_cfg.env_file);
        let prepared = ccr::prepare(cfg, &opts.catalog, &secrets, None).map_err(WorkerError::Config)?;
        if let (Reach::Callback, Some(host)) = (ccr_cfg.reach, &ccr_cfg.callback_host) {
            ctx.base_url = format!("http://{host}:{{port}}");
        }
        for p in prepared {
            let (tx, rx) = watch::channel(false);
            let gen = Arc::new(std::sync::atomic::AtomicU32::new(0));
            ready.insert(p.name.clone(), (rx, gen.clone()));
            ctx.instance_keys.insert(p.name.clone(), p.apikey.clone());
            supervisors.spawn(ccr::supervise(p, ccr_cfg.clone(), format!("worker {id}"), tx, gen, ccr_stop.clone()));
        }
    }
    let tracker = TaskTracker::new();
    // Background loops that must outlive the drain (leases, heartbeat, batching) stop on `finished`.
    let finished = CancellationToken::new();
    let mut keepers = tokio::task::JoinSet::new();
    let claim = ClaimInfo { worker: id.clone(), lease: cfg.lease, max_deliveries: cfg.max_deliveries };
    let (batch, batching) = Batcher::start(pool.clone(), keys.clone(), claim, finished.clone());
    keepers.spawn(batching);
    let shared = Arc::new(Shared {
        pool,
        batch,
        keys,
        id: id.clone(),
        ctx,
        abort: CancellationToken::new(),
        lease: cfg.lease,
        max_deliveries: cfg.max_deliveries,
        running: Mutex::new(HashMap::new()),
        slots: cfg.instances.iter().map(|i| (i.name.clone(), Arc::new(Semaphore::new(i.concurrency)))).collect(),
        tracker: tracker.clone(),
        ready,
    });
    let instances: Vec<String> = cfg.instances.iter().map(|i| i.name.clone()).collect();
    info!(worker = %id, instances = %instances.join(","), executor = executor.as_ref().map(|e| e.host().to_string()).unwrap_or_else(|| "simulate".into()), lease = %humantime::format_duration(cfg.lease), "worker started");

    let mut loops = tokio::task::JoinSet::new();
    for inst in &instances {
        loops.spawn(read_loop(shared.clone(), inst.clone(), shutdown.clone()));
        loops.spawn(reclaim_loop(shared.clone(), inst.clone(), shutdown.clone()));
    }
    loops.spawn(maintenance_loop(shared.clone(), instances.clone(), shutdown.clone()));
    keepers.spawn(heartbeat_loop(shared.clone(), instances.clone(), finished.clone()));
    keepers.spawn(lease_loop(shared.clone(), finished.clone()));

    shutdown.cancelled().await;
    info!("shutting down: taking no new jobs");
    while loops.join_next().await.is_some() {}
    tracker.close();
    let running = shared.running.lock().expect("running lock").len();
    if running > 0 {
        info!(running, "waiting up to {} for running tasks", humantime::format_duration(cfg.drain_timeout));
    }
    tokio::select! {
        _ = tracker.wait() => {}
        _ = tokio::time::sleep(cfg.drain_timeout) => {
            warn!("drain deadline passed: stopping running tasks and handing their jobs back");
            shared.abort.cancel();
            tracker.wait().await;
        }
        _ = force.cancelled() => {
            warn!("second signal: stopping running tasks now and handing their jobs back");
            shared.abort.cancel();
            tracker.wait().await;
        }
    }
    finished.cancel();
    while keepers.join_next().await.is_some() {}
    ccr_stop.cancel();
    while supervisors.join_next().await.is_some() {}
    if let Ok(mut conn) = queue::conn(&shared.pool).await {
        let _: redis::RedisResult<()> =
            redis::pipe().del(shared.keys.worker(&id)).zrem(shared.keys.workers(), &id).query_async(&mut *conn).await;
    }
    if let Some(ex) = executor {
        ex.close().await;
    }
    info!("worker stopped");
    Ok(())
}

async fn heartbeat_loop(shared: Arc<Shared>, instances: Vec<String>, shutdown: CancellationToken) {
    let info = serde_json::json!({
        "id": shared.id,
        "pid": std::process::id(),
        "instances": instances,
        "executor": shared.ctx.executor.as_ref().map(|e| e.host().to_string()).unwrap_or_else(|| "simulate".into()),
        "started_ms": now_ms(),
    })
    .to_string();
    loop {
        if let Ok(mut conn) = queue::conn(&shared.pool).await {
            let r: redis::RedisResult<()> = redis::pipe()
                .set_ex(shared.keys.worker(&shared.id), &info, 15)
                .zadd(shared.keys.workers(), &shared.id, now_ms())
                .query_async(&mut *conn)
                .await;
            if let Err(e) = r {
                debug!("heartbeat failed: {e}");
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(5)) => {}
        }
    }
}

/// Backoff for retrying Redis: 0.5 s doubling to 30 s.
fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(500u64.saturating_mul(1 << attempt.min(6))).min(Duration::from_secs(30))
}

/// The streams of one instance, highest priority first.
fn streams(keys: &Keys, instance: &str) -> Vec<String> {
    Priority::ALL.iter().map(|&p| keys.jobs_for(instance, p)).collect()
}

type Fields = HashMap<String, Vec<u8>>;
type Entries = Vec<(String, String, Fields)>;

fn bytes(v: &redis::Value) -> Option<Vec<u8>> {
    match v {
        redis::Value::BulkString(b) => Some(b.clone()),
        redis::Value::SimpleString(s) => Some(s.clone().into_bytes()),
        redis::Value::Int(i) => Some(i.to_string().into_bytes()),
        _ => None,
    }
}

fn items(v: &redis::Value) -> &[redis::Value] {
    match v {
        redis::Value::Array(a) => a,
        _ => &[],
    }
}

/// One `[id, [field, value, …]]` entry. Parsed by hand so that junk someone wrote into a
/// stream (binary field names, odd shapes) reaches the dead-letter path instead of failing
/// the whole read.
fn entry_of(v: &redis::Value) -> Option<(String, Fields)> {
    let parts = items(v);
    let id = String::from_utf8(bytes(parts.first()?)?).ok()?;
    let mut fields = HashMap::new();
    for kv in items(parts.get(1)?).chunks(2) {
        if let [k, val] = kv {
            if let (Some(k), Some(val)) = (bytes(k), bytes(val)) {
                fields.insert(String::from_utf8_lossy(&k).into_owned(), val);
            }
        }
    }
    Some((id, fields))
}

/// An XREADGROUP reply: `[[stream, [entry, …]], …]` (RESP2) or a map (RESP3).
fn entries_of(reply: redis::Value) -> Entries {
    let mut out = Vec::new();
    let streams: Vec<(redis::Value, redis::Value)> = match reply {
        redis::Value::Array(a) => a
            .into_iter()
            .filter_map(|s| match s {
                redis::Value::Array(mut kv) if kv.len() == 2 => {
                    let v = kv.pop()?;
                    Some((kv.pop()?, v))
                }
                _ => None,
            })
            .collect(),
        redis::Value::Map(m) => m,
        _ => Vec::new(),
    };
    for (name, list) in streams {
        let Some(name) = bytes(&name).map(|b| String::from_utf8_lossy(&b).into_owned()) else { continue };
        for e in items(&list) {
            if let Some((id, fields)) = entry_of(e) {
                out.push((name.clone(), id, fields));
            }
        }
    }
    out
}

/// Takes new jobs of one instance as slots free up: high priority first, then medium, then
/// low; blocks on all three when there is nothing.
async fn read_loop(shared: Arc<Shared>, instance: String, shutdown: CancellationToken) {
    let sem = shared.slots[&instance].clone();
    let streams = streams(&shared.keys, &instance);
    let group = shared.keys.group();
    let mut failures = 0u32;
    loop {
        if !shared.wait_ready(&instance, &shutdown).await {
            return;
        }
        let first = tokio::select! {
            _ = shutdown.cancelled() => return,
            p = sem.clone().acquire_owned() => p.expect("semaphore never closes"),
        };
        let mut permits = vec![first];
        while permits.len() < 256 {
            match sem.clone().try_acquire_owned() {
                Ok(p) => permits.push(p),
                Err(_) => break,
            }
        }
        let mut conn = match queue::conn(&shared.pool).await {
            Ok(c) => c,
            Err(e) => {
                warn!(instance = %instance, "Redis unavailable: {e}; retrying in {:?}", backoff(failures));
                if sleep_or_shutdown(backoff(failures), &shutdown).await {
                    return;
                }
                failures += 1;
                continue;
            }
        };
        let read = async {
            let mut got: Entries = Vec::new();
            for s in &streams {
                let want = permits.len().saturating_sub(got.len());
                if want == 0 {
                    break;
                }
                let opts = StreamReadOptions::default().group(&group, &shared.id).count(want);
                let mut cmd = redis::cmd("XREADGROUP");
                cmd.arg(&opts).arg("STREAMS").arg(s).arg(">");
                got.extend(entries_of(cmd.query_async::<redis::Value>(&mut *conn).await?));
            }
            if got.is_empty() {
                let opts = StreamReadOptions::default().group(&group, &shared.id).count(1).block(2000);
                let mut cmd = redis::cmd("XREADGROUP");
                cmd.arg(&opts).arg("STREAMS").arg(&streams).arg(vec![">"; streams.len()]);
                got.extend(entries_of(cmd.query_async::<redis::Value>(&mut *conn).await?));
            }
            Ok::<_, redis::RedisError>(got)
        };
        let result = tokio::select! {
            r = read => r,
            _ = shutdown.cancelled() => {
                // The blocked command is abandoned mid-flight: never return that connection to the pool.
                let _ = deadpool_redis::Connection::take(conn);
                return;
            }
        };
        drop(conn);
        let entries = match result {
            Ok(r) => {
                if failures > 0 {
                    info!(instance = %instance, "Redis reachable again");
                }
                failures = 0;
                r
            }
            Err(e) => {
                if e.code() == Some("NOGROUP") {
                    warn!(instance = %instance, "consumer group missing (Redis restarted without its data?); recreating it");
                    if let Ok(mut c) = queue::conn(&shared.pool).await {
                        let _ = queue::ensure_group(&mut *c, &shared.keys, &instance).await;
                    }
                } else {
                    warn!(instance = %instance, "reading jobs failed: {e}; retrying in {:?}", backoff(failures));
                }
                if sleep_or_shutdown(backoff(failures), &shutdown).await {
                    return;
                }
                failures += 1;
                continue;
            }
        };
        for (stream, id, fields) in entries {
            // The blocking read may return one entry per stream: extras wait for a slot.
            let permit = permits.pop();
            shared.tracker.spawn(handle_entry(shared.clone(), instance.clone(), stream, id, fields, permit, false));
        }
    }
}

/// Claims jobs whose holder stopped renewing for a whole lease (a dead worker) and runs them.
async fn reclaim_loop(shared: Arc<Shared>, instance: String, shutdown: CancellationToken) {
    let every = (shared.lease / 2).max(Duration::from_millis(250));
    let group = shared.keys.group();
    loop {
        if sleep_or_shutdown(every, &shutdown).await || !shared.wait_ready(&instance, &shutdown).await {
            return;
        }
        let free = shared.slots[&instance].available_permits().max(1);
        for stream in streams(&shared.keys, &instance) {
            let Ok(mut conn) = queue::conn(&shared.pool).await else { break };
            let r: redis::RedisResult<Vec<redis::Value>> = redis::cmd("XAUTOCLAIM")
                .arg(&stream)
                .arg(&group)
                .arg(&shared.id)
                .arg(shared.lease.as_millis() as u64)
                .arg("0-0")
                .arg("COUNT")
                .arg(free)
                .query_async(&mut *conn)
                .await;
            let reply = match r {
                Ok(v) => v,
                Err(e) => {
                    debug!(stream = %stream, "XAUTOCLAIM failed: {e}");
                    continue;
                }
            };
            let claimed: Vec<(String, Fields)> = reply.get(1).map(items).unwrap_or_default().iter().filter_map(entry_of).collect();
            let deleted: Vec<String> = reply
                .get(2)
                .map(items)
                .unwrap_or_default()
                .iter()
                .filter_map(|v| bytes(v).and_then(|b| String::from_utf8(b).ok()))
                .collect();
            if !deleted.is_empty() {
                let _: redis::RedisResult<()> = redis::cmd("XACK").arg(&stream).arg(&group).arg(&deleted).query_async(&mut *conn).await;
            }
            drop(conn);
            for (id, fields) in claimed {
                info!(stream = %stream, entry = %id, "reclaimed a job whose lease lapsed");
                shared.tracker.spawn(handle_entry(shared.clone(), instance.clone(), stream.clone(), id, fields, None, true));
            }
        }
    }
}

/// Every second: promote due retries and flush outboxes of unfinished runs; now and then,
/// remove consumers of workers that are gone and hold nothing.
async fn maintenance_loop(shared: Arc<Shared>, instances: Vec<String>, shutdown: CancellationToken) {
    let mut ticks = 0u64;
    loop {
        if sleep_or_shutdown(Duration::from_millis(500), &shutdown).await {
            return;
        }
        ticks += 1;
        let Ok(mut conn) = queue::conn(&shared.pool).await else { continue };
        if let Err(e) = queue::maintain_active(&mut *conn, &shared.keys).await {
            debug!("maintenance failed: {e}");
        }
        // Soon after start (a restarted worker cleans up after its dead predecessors), then every 30 s.
        if ticks == 4 || ticks.is_multiple_of(60) {
            for inst in &instances {
                for stream in streams(&shared.keys, inst) {
                    if let Err(e) = queue::remove_dead_consumers(&mut *conn, &shared.keys, &stream, shared.lease * 4).await {
                        debug!("consumer cleanup failed: {e}");
                    }
                }
            }
        }
    }
}

/// Renews the leases of running jobs (every third of the lease) and checks every second
/// whether one was cancelled.
async fn lease_loop(shared: Arc<Shared>, finished: CancellationToken) {
    let renew_every = (shared.lease / 3).max(Duration::from_millis(200));
    let mut last_renew = tokio::time::Instant::now();
    loop {
        if sleep_or_shutdown(renew_every.min(Duration::from_secs(1)), &finished).await {
            return;
        }
        let jobs: Vec<((String, u32), RunningJob)> =
            shared.running.lock().expect("running lock").iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        if jobs.is_empty() {
            continue;
        }
        let Ok(mut conn) = queue::conn(&shared.pool).await else { continue };
        if last_renew.elapsed() + Duration::from_millis(50) >= renew_every {
            last_renew = tokio::time::Instant::now();
            let mut reclaim: HashMap<String, Vec<String>> = HashMap::new();
            for ((run, idx), job) in &jobs {
                match queue::renew(&mut *conn, &shared.keys, run, *idx, job.attempt, &shared.id, shared.lease).await {
                    Ok(Renewed::Ok) => reclaim.entry(job.stream.clone()).or_default().push(job.entry_id.clone()),
                    Ok(Renewed::CancelRequested) => {
                        reclaim.entry(job.stream.clone()).or_default().push(job.entry_id.clone());
                        stop_job(job, STOP_CANCELLED);
                    }
                    Ok(Renewed::Lost) => {
                        warn!(run = %run, idx, "lease lost (another worker took the task over, or it ended); stopping it here");
                        stop_job(job, STOP_LEASE_LOST);
                    }
                    Err(e) => debug!("lease renewal failed: {e}"),
                }
            }
            // Keep the entries' idle time low so reclaimers leave them alone.
            for (stream, ids) in reclaim {
                let _: redis::RedisResult<redis::Value> = redis::cmd("XCLAIM")
                    .arg(&stream)
                    .arg(shared.keys.group())
                    .arg(&shared.id)
                    .arg(0)
                    .arg(&ids)
                    .arg("JUSTID")
                    .query_async(&mut *conn)
                    .await;
            }
        } else {
            // Between renewals, only look for cancel requests (one HMGET per run).
            let mut by_run: HashMap<&str, Vec<&RunningJob>> = HashMap::new();
            let mut idxs: HashMap<&str, Vec<u32>> = HashMap::new();
            for ((run, idx), job) in &jobs {
                by_run.entry(run.as_str()).or_default().push(job);
                idxs.entry(run.as_str()).or_default().push(*idx);
            }
            for (run, list) in by_run {
                let flags: redis::RedisResult<Vec<Option<String>>> =
                    redis::cmd("HMGET").arg(shared.keys.run(run, "cancel")).arg(&idxs[run]).query_async(&mut *conn).await;
                if let Ok(flags) = flags {
                    for (job, flag) in list.into_iter().zip(flags) {
                        if flag.is_some() {
                            stop_job(job, STOP_CANCELLED);
                        }
                    }
                }
            }
        }
    }
}

fn stop_job(job: &RunningJob, why: u8) {
    let _ = job.why.compare_exchange(0, why, std::sync::atomic::Ordering::SeqCst, std::sync::atomic::Ordering::SeqCst);
    job.stop.cancel();
}

/// Sleeps, returning true if shutdown fired first.
async fn sleep_or_shutdown(d: Duration, shutdown: &CancellationToken) -> bool {
    tokio::select! {
        _ = shutdown.cancelled() => true,
        _ = tokio::time::sleep(d) => false,
    }
}

/// Milliseconds part of a stream entry id (`<ms>-<seq>`).
fn entry_ms(id: &str) -> u64 {
    id.split('-').next().and_then(|s| s.parse().ok()).unwrap_or(0)
}

/// A job as read from its stream entry, checked.
fn parse_entry(instance: &str, fields: &HashMap<String, Vec<u8>>) -> Result<(JobSpec, u32), String> {
    let field = |k: &str| fields.get(k).ok_or_else(|| format!("missing field `{k}`"));
    let text = |k: &str| field(k).and_then(|b| String::from_utf8(b.clone()).map_err(|_| format!("field `{k}` is not UTF-8")));
    let run = text("run")?;
    let idx: u32 = text("idx")?.parse().map_err(|_| "field `idx` is not a number".to_string())?;
    let attempt: u32 = text("attempt")?.parse().map_err(|_| "field `attempt` is not a number".to_string())?;
    let spec = JobSpec::decode(field("payload")?).map_err(|e| format!("payload is not a job spec: {e}"))?;
    if spec.run_id != run || spec.idx != idx {
        return Err(format!("payload is for run {} task {}, fields say run {run} task {idx}", spec.run_id, spec.idx));
    }
    if spec.instance != instance {
        return Err(format!("payload is for instance `{}`, found in the stream of `{instance}`", spec.instance));
    }
    Ok((spec, attempt))
}

async fn handle_entry(
    shared: Arc<Shared>,
    instance: String,
    stream: String,
    entry_id: String,
    fields: HashMap<String, Vec<u8>>,
    permit: Option<OwnedSemaphorePermit>,
    takeover: bool,
) {
    let (spec, attempt) = match parse_entry(&instance, &fields) {
        Ok(v) => v,
        Err(reason) => {
            warn!(entry = %entry_id, instance = %instance, "dead-lettering a malformed job: {reason}");
            Box::pin(dead_letter(&shared, &stream, &entry_id, &fields, &reason)).await;
            return;
        }
    };
    let permit = match permit {
        Some(p) => p,
        None => tokio::select! {
            p = shared.slots[&instance].clone().acquire_owned() => p.expect("semaphore never closes"),
            // Shutting down before a slot freed: the entry stays pending for another worker.
            _ = shared.abort.cancelled() => return,
        },
    };
    let span = tracing::info_span!("task", run = %spec.run_id, task = %spec.name, attempt);
    async move {
        let mark = shared.batch.mark(&spec.run_id, ToMark { idx: spec.idx, attempt, takeover }).await;
        let started_ms = now_ms();
        let outcome = match mark {
            Ok(MarkRunning::Ok) => None,
            Ok(MarkRunning::Poison) => Some(Outcome::poison(shared.max_deliveries)),
            Ok(MarkRunning::AlreadyRunning) if takeover => {
                // Its holder is alive and renewing: leave the entry pending; the holder acks it.
                debug!(entry = %entry_id, "reclaimed entry belongs to a live lease; leaving it");
                return;
            }
            Ok(MarkRunning::Unknown) => {
                let reason = format!("run {} has no task {} (an unknown run, or one that expired)", spec.run_id, spec.idx);
                warn!(entry = %entry_id, "dead-lettering: {reason}");
                Box::pin(dead_letter(&shared, &stream, &entry_id, &fields, &reason)).await;
                return;
            }
            Ok(other) => {
                debug!(entry = %entry_id, "dropping job ({other:?})");
                ack(&shared, &stream, &entry_id).await;
                return;
            }
            Err(e) => {
                // Left pending: it will be delivered again.
                warn!("could not mark the task running: {e}");
                return;
            }
        };
        let key = (spec.run_id.clone(), spec.idx);
        let outcome = match outcome {
            Some(o) => o,
            None => {
                let job = RunningJob {
                    stream: stream.clone(),
                    entry_id: entry_id.clone(),
                    attempt,
                    stop: shared.abort.child_token(),
                    why: Arc::new(std::sync::atomic::AtomicU8::new(0)),
                };
                shared.running.lock().expect("running lock").insert(key.clone(), job.clone());
                info!(takeover, "started");
                let ccr_before = shared.ccr_state(&instance);
                // Boxed: the execution's state is large, and the job's future is moved on every spawn.
                let mut o = Box::pin(execute(&shared.ctx, &spec, &job.stop)).await;
                // A model error while this instance's CCR crashed or restarted is the router's
                // fault, not the task's: class it `network` so the job runs again.
                if let (Some(ErrorClass::Model), Some((g0, _)), Some((g1, ready_now))) =
                    (o.error_class, ccr_before, shared.ccr_state(&instance))
                {
                    if g1 != g0 || !ready_now {
                        o.error_class = Some(ErrorClass::Network);
                        o.error = Some(format!("CCR for instance `{instance}` went down during the task: {}", o.error.unwrap_or_default()));
                    }
                }
                shared.running.lock().expect("running lock").remove(&key);
                if shared.abort.is_cancelled() {
                    Box::pin(hand_back(&shared, &spec, attempt, &stream, &entry_id)).await;
                    return;
                }
                if job.why.load(std::sync::atomic::Ordering::SeqCst) == STOP_LEASE_LOST {
                    // Another worker owns the task (and this entry) now: record nothing, ack nothing.
                    return;
                }
                o
            }
        };
        let finished_ms = now_ms();
        let result = TaskResult {
            status: outcome.status,
            error_class: outcome.error_class,
            error: outcome.error,
            output: outcome.output,
            exit_code: outcome.exit_code,
            command: outcome.command,
            agent: outcome.agent,
            attempt,
            worker: shared.id.clone(),
            started_ms,
            finished_ms,
            queue_wait_ms: started_ms.saturating_sub(entry_ms(&entry_id)),
            reclaimed: takeover,
        };
        let retry_in = match result.error_class {
            Some(c) if result.status != Status::Success && c != ErrorClass::Poison && spec.retry.retries(c, attempt) => {
                Some(spec.retry.delay(attempt, rand::random::<f64>()))
            }
            _ => None,
        };
        match (&result.error, retry_in) {
            (None, _) => info!(status = result.status.as_str(), ms = result.duration_ms(), "finished"),
            (Some(e), Some(d)) => warn!(
                status = result.status.as_str(),
                class = result.error_class.map(|c| c.as_str()).unwrap_or(""),
                "attempt failed: {e}; retrying in {}",
                humantime::format_duration(Duration::from_millis(d.as_millis() as u64))
            ),
            (Some(e), None) => warn!(
                status = result.status.as_str(),
                class = result.error_class.map(|c| c.as_str()).unwrap_or(""),
                ms = result.duration_ms(),
                "finished: {e}"
            ),
        }
        let recorded = record(&shared, &spec, &result, retry_in).await;
        let exhausted = retry_in.is_none()
            && result.status != Status::Success
            && result.error_class.is_some_and(|c| c == ErrorClass::Poison || spec.retry.retry_on.contains(&c));
        if exhausted && matches!(recorded, Some(Recorded::Ok { .. })) {
            let reason = match result.error_class {
                Some(ErrorClass::Poison) => format!("poison: delivered more than {} times without a result", shared.max_deliveries),
                _ => format!(
                    "retries exhausted after {attempt} attempt{}: {}",
                    if attempt == 1 { "" } else { "s" },
                    result.error.as_deref().unwrap_or("")
                ),
            };
            Box::pin(dead_letter_task(&shared, &spec, &result, &reason)).await;
        }
        // The task is done with its slot once its result is stored.
        drop(permit);
        if recorded.is_some() {
            ack(&shared, &stream, &entry_id).await;
        }
    }
    .instrument(span)
    .await
}

/// Shutdown: give a running task back to the queue at once (not after its lease).
async fn hand_back(shared: &Shared, spec: &JobSpec, attempt: u32, stream: &str, entry_id: &str) {
    let Ok(mut c) = queue::conn(&shared.pool).await else {
        warn!("Redis unavailable while handing the task back; it will be reclaimed after its lease");
        return;
    };
    match queue::release(&mut *c, &shared.keys, &spec.run_id, spec.idx, attempt, &shared.id).await {
        Ok(true) => {
            drop(c);
            ack(shared, stream, entry_id).await;
            if let Ok(mut c) = queue::conn(&shared.pool).await {
                let _ = queue::flush_outbox(&mut *c, &shared.keys, &spec.run_id).await;
            }
            info!("handed back to the queue");
        }
        Ok(false) => debug!("not ours to hand back"),
        Err(e) => warn!("handing the task back failed ({e}); it will be reclaimed after its lease"),
    }
}

/// Records a result, retrying while Redis is unreachable (the batcher enqueues released
/// dependents). `None` when it could not be recorded (the job stays pending and runs again).
async fn record(shared: &Shared, spec: &JobSpec, result: &TaskResult, retry_in: Option<Duration>) -> Option<Recorded> {
    let item = ToRecord { idx: spec.idx, attempt: result.attempt, status: result.status.as_str(), blob: result.encode(), retry_in };
    for attempt in 0..12u32 {
        match shared.batch.record(&spec.run_id, item.clone()).await {
            Ok(rec) => {
                if matches!(rec, Recorded::Duplicate | Recorded::Stale) {
                    debug!("result not stored ({rec:?}): another delivery recorded this attempt");
                }
                return Some(rec);
            }
            Err(e) => {
                warn!("recording the result failed: {e}; retrying in {:?}", backoff(attempt));
                tokio::time::sleep(backoff(attempt)).await;
            }
        }
    }
    error!("gave up recording the result; the job stays pending and will run again");
    None
}

async fn ack(shared: &Shared, stream: &str, entry_id: &str) {
    for attempt in 0..6u32 {
        if shared.batch.ack(stream, entry_id).await.is_ok() {
            return;
        }
        tokio::time::sleep(backoff(attempt)).await;
    }
    warn!(entry = %entry_id, "could not acknowledge; a redelivery will be dropped as a duplicate");
}

/// The start of an XADD to the dead letters: capped stream, reason, worker, time.
fn dead_cmd(shared: &Shared, reason: &str) -> redis::Cmd {
    let mut cmd = redis::cmd("XADD");
    cmd.arg(shared.keys.dead())
        .arg("MAXLEN")
        .arg("~")
        .arg(10_000)
        .arg("*")
        .arg("reason")
        .arg(reason)
        .arg("worker")
        .arg(&shared.id)
        .arg("at_ms")
        .arg(now_ms());
    cmd
}

async fn dead_letter(shared: &Shared, stream: &str, entry_id: &str, fields: &HashMap<String, Vec<u8>>, reason: &str) {
    let mut cmd = dead_cmd(shared, reason);
    cmd.arg("stream").arg(stream).arg("entry").arg(entry_id);
    for (k, v) in fields.iter().take(32) {
        let shown = &v[..v.len().min(4096)];
        cmd.arg(format!("field:{}", k.chars().take(64).collect::<String>())).arg(shown);
    }
    let stored = match queue::conn(&shared.pool).await {
        Ok(mut c) => cmd.query_async::<String>(&mut *c).await.map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    match stored {
        // Only once the dead letter exists may the entry leave its stream.
        Ok(_) => ack(shared, stream, entry_id).await,
        Err(e) => warn!("could not dead-letter {entry_id}: {e}; leaving it pending"),
    }
}

/// A task that ended for good after its retries (or as poison) goes to the dead letters, so
/// that `zo-submit dead` shows it and `zo-submit dead retry` can run it again.
async fn dead_letter_task(shared: &Shared, spec: &JobSpec, result: &TaskResult, reason: &str) {
    let mut cmd = dead_cmd(shared, reason);
    cmd.arg("run")
        .arg(&spec.run_id)
        .arg("idx")
        .arg(spec.idx)
        .arg("task")
        .arg(&spec.name)
        .arg("instance")
        .arg(&spec.instance)
        .arg("attempt")
        .arg(result.attempt)
        .arg("error_class")
        .arg(result.error_class.map(|c| c.as_str()).unwrap_or(""));
    let stored = match queue::conn(&shared.pool).await {
        Ok(mut c) => cmd.query_async::<String>(&mut *c).await.map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    if let Err(e) = stored {
        warn!("could not dead-letter the task: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_entries_are_explained() {
        let mut f: HashMap<String, Vec<u8>> = HashMap::new();
        assert_eq!(parse_entry("fast", &f).unwrap_err(), "missing field `run`");
        f.insert("run".into(), b"R".to_vec());
        f.insert("idx".into(), b"x".to_vec());
        assert_eq!(parse_entry("fast", &f).unwrap_err(), "field `idx` is not a number");
        f.insert("idx".into(), b"0".to_vec());
        f.insert("attempt".into(), b"1".to_vec());
        f.insert("payload".into(), b"\xc1garbage".to_vec());
        assert!(parse_entry("fast", &f).unwrap_err().starts_with("payload is not a job spec"));
    }

    #[test]
    fn entry_id_time() {
        assert_eq!(entry_ms("1700000000123-4"), 1_700_000_000_123);
        assert_eq!(backoff(0), Duration::from_millis(500));
        assert_eq!(backoff(20), Duration::from_secs(30));
    }
}
