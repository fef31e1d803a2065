//! The worker service: one read loop per served instance takes jobs from that instance's
//! stream as slots free up, each job runs in its own tracked task, and results are recorded
//! atomically before the job is acknowledged.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use deadpool_redis::Pool;
use redis::streams::{StreamReadOptions, StreamReadReply};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, error, info, warn, Instrument};
use zo_common::catalog::Catalog;
use zo_common::keys::Keys;
use zo_common::model::{now_ms, JobSpec, TaskResult};
use zo_common::queue::{self, MarkRunning, QueueError, Recorded};

use crate::config::{ExecutorConfig, WorkerConfig};
use crate::exec::{local::LocalExecutor, ssh::SshExecutor, Executor};
use crate::task::{execute, TaskContext};

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
    keys: Keys,
    id: String,
    ctx: TaskContext,
    /// Fires when running tasks must stop (drain deadline passed, or a second signal).
    abort: CancellationToken,
}

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
    let pool = queue::connect(&opts.redis_url, slots + cfg.instances.len() + 4).await?;
    let keys = Keys::new(&opts.namespace);
    let api_key = cfg.agent_api_key().map_err(|e| WorkerError::Config(format!("agent.api_key: {e}")))?;
    let executor: Option<Arc<dyn Executor>> = match &cfg.executor {
        ExecutorConfig::Ssh(s) => Some(Arc::new(SshExecutor::new(s.clone()))),
        ExecutorConfig::Local {} => Some(Arc::new(LocalExecutor::new())),
        ExecutorConfig::Simulate {} => None,
    };
    {
        let mut conn = queue::conn(&pool).await?;
        for i in &cfg.instances {
            queue::ensure_group(&mut *conn, &keys, &i.name).await?;
        }
    }
    let id = worker_id();
    let shared = Arc::new(Shared {
        pool,
        keys,
        id: id.clone(),
        ctx: TaskContext::new(cfg, opts.catalog.clone(), executor.clone(), api_key),
        abort: CancellationToken::new(),
    });
    let instances: Vec<String> = cfg.instances.iter().map(|i| i.name.clone()).collect();
    info!(worker = %id, instances = %instances.join(","), executor = executor.as_ref().map(|e| e.host().to_string()).unwrap_or_else(|| "simulate".into()), "worker started");

    let tracker = TaskTracker::new();
    let mut loops = tokio::task::JoinSet::new();
    for inst in &cfg.instances {
        let sem = Arc::new(Semaphore::new(inst.concurrency));
        loops.spawn(read_loop(shared.clone(), inst.name.clone(), sem, tracker.clone(), shutdown.clone()));
    }
    loops.spawn(heartbeat_loop(shared.clone(), instances.clone(), shutdown.clone()));

    shutdown.cancelled().await;
    info!("shutting down: taking no new jobs");
    while loops.join_next().await.is_some() {}
    tracker.close();
    let running = tracker.len();
    if running > 0 {
        info!(running, "waiting up to {} for running tasks", humantime::format_duration(cfg.drain_timeout));
    }
    tokio::select! {
        _ = tracker.wait() => {}
        _ = tokio::time::sleep(cfg.drain_timeout) => {
            warn!("drain deadline passed: stopping running tasks; their jobs stay pending for another worker");
            shared.abort.cancel();
            tracker.wait().await;
        }
        _ = force.cancelled() => {
            warn!("second signal: stopping running tasks now");
            shared.abort.cancel();
            tracker.wait().await;
        }
    }
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

async fn read_loop(shared: Arc<Shared>, instance: String, sem: Arc<Semaphore>, tracker: TaskTracker, shutdown: CancellationToken) {
    let stream = shared.keys.jobs(&instance);
    let group = shared.keys.group();
    let mut failures = 0u32;
    loop {
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
        let opts = StreamReadOptions::default().group(&group, &shared.id).count(permits.len()).block(2000);
        let mut cmd = redis::cmd("XREADGROUP");
        cmd.arg(&opts).arg("STREAMS").arg(&stream).arg(">");
        let read = cmd.query_async::<Option<StreamReadReply>>(&mut *conn);
        let reply = tokio::select! {
            r = read => r,
            _ = shutdown.cancelled() => {
                // The blocked command is abandoned mid-flight: never return that connection to the pool.
                let _ = deadpool_redis::Connection::take(conn);
                return;
            }
        };
        drop(conn);
        let reply = match reply {
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
        for key in reply.map(|r| r.keys).unwrap_or_default() {
            for entry in key.ids {
                let Some(permit) = permits.pop() else {
                    error!("more entries than requested; leaving {} pending", entry.id);
                    continue;
                };
                let fields: HashMap<String, Vec<u8>> =
                    entry.map.into_iter().filter_map(|(k, v)| redis::from_redis_value::<Vec<u8>>(v).ok().map(|b| (k, b))).collect();
                tracker.spawn(handle_entry(shared.clone(), instance.clone(), entry.id, fields, permit));
            }
        }
    }
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
    entry_id: String,
    fields: HashMap<String, Vec<u8>>,
    permit: OwnedSemaphorePermit,
) {
    let (spec, attempt) = match parse_entry(&instance, &fields) {
        Ok(v) => v,
        Err(reason) => {
            warn!(entry = %entry_id, instance = %instance, "dead-lettering a malformed job: {reason}");
            dead_letter(&shared, &instance, &entry_id, &fields, &reason).await;
            return;
        }
    };
    let span = tracing::info_span!("task", run = %spec.run_id, task = %spec.name, attempt);
    async move {
        let mark = match queue::conn(&shared.pool).await {
            Ok(mut c) => queue::mark_running(&mut *c, &shared.keys, &spec.run_id, spec.idx, attempt, &shared.id).await,
            Err(e) => Err(e),
        };
        match mark {
            Ok(MarkRunning::Ok) => {}
            Ok(other) => {
                debug!(entry = %entry_id, "dropping job ({other:?})");
                ack(&shared, &instance, &entry_id).await;
                return;
            }
            Err(e) => {
                // Left pending: it will be delivered again.
                warn!("could not mark the task running: {e}");
                return;
            }
        }
        info!("started");
        let started_ms = now_ms();
        let outcome = execute(&shared.ctx, &spec, &shared.abort).await;
        if shared.abort.is_cancelled() {
            warn!("stopped by shutdown; the job stays pending for another worker");
            return;
        }
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
        };
        match &result.error {
            None => info!(status = result.status.as_str(), ms = result.duration_ms(), "finished"),
            Some(e) => warn!(
                status = result.status.as_str(),
                class = result.error_class.map(|c| c.as_str()).unwrap_or(""),
                ms = result.duration_ms(),
                "finished: {e}"
            ),
        }
        record(&shared, &spec, &result).await;
        ack(&shared, &instance, &entry_id).await;
        drop(permit);
    }
    .instrument(span)
    .await
}

/// Records a result, retrying while Redis is unreachable; then releases dependents.
async fn record(shared: &Shared, spec: &JobSpec, result: &TaskResult) {
    for attempt in 0..12u32 {
        let r = match queue::conn(&shared.pool).await {
            Ok(mut c) => match queue::record_result(&mut *c, &shared.keys, &spec.run_id, spec.idx, result).await {
                Ok(Recorded::Ok { released, .. }) => {
                    if released > 0 {
                        if let Err(e) = queue::flush_outbox(&mut *c, &shared.keys, &spec.run_id).await {
                            warn!("could not enqueue released tasks now ({e}); they stay in the run's outbox");
                        }
                    }
                    Ok(())
                }
                Ok(Recorded::Duplicate) => {
                    debug!("result already recorded by an earlier delivery");
                    Ok(())
                }
                Ok(Recorded::Stale) => {
                    debug!("result is for an attempt that is no longer current");
                    Ok(())
                }
                Err(e) => Err(e),
            },
            Err(e) => Err(e),
        };
        match r {
            Ok(()) => return,
            Err(e) => {
                warn!("recording the result failed: {e}; retrying in {:?}", backoff(attempt));
                tokio::time::sleep(backoff(attempt)).await;
            }
        }
    }
    error!("gave up recording the result; the job stays pending and will run again");
}

async fn ack(shared: &Shared, instance: &str, entry_id: &str) {
    let stream = shared.keys.jobs(instance);
    for attempt in 0..6u32 {
        if let Ok(mut c) = queue::conn(&shared.pool).await {
            let r: redis::RedisResult<()> = redis::pipe()
                .xack(&stream, shared.keys.group(), &[entry_id])
                .ignore()
                .xdel(&stream, &[entry_id])
                .ignore()
                .query_async(&mut *c)
                .await;
            if r.is_ok() {
                return;
            }
        }
        tokio::time::sleep(backoff(attempt)).await;
    }
    warn!(entry = %entry_id, "could not acknowledge; a redelivery will be dropped as a duplicate");
}

async fn dead_letter(shared: &Shared, instance: &str, entry_id: &str, fields: &HashMap<String, Vec<u8>>, reason: &str) {
    let mut cmd = redis::cmd("XADD");
    cmd.arg(shared.keys.dead())
        .arg("MAXLEN")
        .arg("~")
        .arg(10_000)
        .arg("*")
        .arg("reason")
        .arg(reason)
        .arg("stream")
        .arg(shared.keys.jobs(instance))
        .arg("entry")
        .arg(entry_id)
        .arg("worker")
        .arg(&shared.id)
        .arg("at_ms")
        .arg(now_ms());
    for (k, v) in fields.iter().take(32) {
        let shown = &v[..v.len().min(4096)];
        cmd.arg(format!("field:{}", k.chars().take(64).collect::<String>())).arg(shown);
    }
    if let Ok(mut c) = queue::conn(&shared.pool).await {
        let r: redis::RedisResult<String> = cmd.query_async(&mut *c).await;
        if let Err(e) = r {
            warn!("could not dead-letter {entry_id}: {e}; leaving it pending");
            return;
        }
    }
    ack(shared, instance, entry_id).await;
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
