//! The worker service: per served instance a read loop ([`read`]) takes jobs from that
//! instance's streams as slots free up and a reclaim loop ([`reclaim`]) takes over jobs whose
//! lease lapsed; per worker a lease loop ([`lease`]), an upkeep loop ([`upkeep`]) and a
//! heartbeat ([`heartbeat`]); with `archive:`, an archive sweep ([`archive`]). Each job runs
//! in its own tracked task ([`crate::job`]); results are recorded atomically before the job is
//! acknowledged. `run` wires them together and drains on shutdown.

mod archive;
mod heartbeat;
mod lease;
mod read;
mod reclaim;
mod startup;
mod upkeep;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{watch, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};
use zo_common::catalog::Catalog;
use zo_common::store::{Store, StoreError};

use crate::batch::{Batcher, ClaimInfo};
use crate::config::{ExecutorConfig, WorkerConfig};
use crate::preflight;
use crate::task::TaskContext;

/// Where and how this worker runs.
pub struct WorkerOptions {
    pub redis_url: String,
    pub namespace: String,
    pub config: WorkerConfig,
    pub catalog: Catalog,
    /// Serve Prometheus metrics here.
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// Use the CCR instances `zo-worker ccr start` left running instead of starting them.
    pub use_running_ccr: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Config(String),
    /// Something the worker needs outside it is missing (a CCR it was told to use).
    #[error("{0}")]
    Missing(String),
}

/// What every loop and job of the worker shares.
pub(crate) struct Shared {
    pub store: Store,
    /// The hot path's Redis steps (mark, record, ack), batched.
    pub batch: Batcher,
    pub id: String,
    pub ctx: TaskContext,
    /// Fires when running tasks must stop and be handed back (drain deadline, second signal).
    pub abort: CancellationToken,
    /// Fires when the worker's background loops stop (after the drain): retry loops of jobs
    /// give up then.
    pub finished: CancellationToken,
    pub lease: Duration,
    pub max_deliveries: u32,
    /// Jobs running on this worker, for lease renewal and cancel checks.
    pub running: Mutex<HashMap<(String, u32), RunningJob>>,
    /// Task slots per instance.
    pub slots: HashMap<String, Arc<Semaphore>>,
    /// Slots the read loop of each instance holds while it waits for new jobs: free for the
    /// reclaim loop's count (reclaimed jobs get them as soon as the read returns).
    pub reading: HashMap<String, AtomicUsize>,
    pub tracker: TaskTracker,
    /// Readiness and (re)start count of each supervised CCR instance; jobs of an instance are
    /// taken only while it is ready.
    pub ready: HashMap<String, (watch::Receiver<bool>, Arc<AtomicU32>)>,
    /// Backoffs after rate-limit answers, by limiter name (Unix ms they end): what this
    /// worker's own tasks saw, and what upkeep reads from Redis for every served instance.
    pub backoffs: Mutex<HashMap<String, u64>>,
    /// How many shared concurrency slots (the catalog's `max_concurrent`) running jobs hold,
    /// per limiter, renewed with their leases.
    pub shared_slots: Mutex<HashMap<String, u32>>,
    /// What the catalog says of each served instance's limits (worked out once).
    pub limits: HashMap<String, crate::limits::InstanceLimits>,
    /// The execution host passed the start-up checks (false while it does not answer).
    pub host_ready: watch::Receiver<bool>,
    /// Where the runs this worker finishes are archived (`archive:` in its config).
    pub archive: Option<std::path::PathBuf>,
    /// Says once when Redis fails the worker and once when it is back.
    pub redis: Arc<crate::redis_health::RedisHealth>,
}

impl Shared {
    /// Waits until the execution host answers and the instance's CCR is ready (at once when
    /// this worker runs no CCR). False when shutdown came first.
    pub async fn wait_ready(&self, instance: &str, shutdown: &CancellationToken) -> bool {
        let mut host = self.host_ready.clone();
        if !*host.borrow() {
            tokio::select! {
                r = host.wait_for(|v| *v) => if r.is_err() { return false },
                _ = shutdown.cancelled() => return false,
            }
        }
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

    /// Slots of an instance not held by a running job: free ones and those the read loop
    /// holds while it waits.
    pub fn idle_slots(&self, instance: &str) -> usize {
        self.slots[instance].available_permits() + self.reading[instance].load(Ordering::SeqCst)
    }

    /// Counts `d` (1 or -1) more shared slots of `limiter` held by running jobs.
    pub fn hold_shared_slot(&self, limiter: &str, d: i32) {
        let mut slots = self.shared_slots.lock().expect("slots lock");
        match slots.get_mut(limiter) {
            Some(n) => *n = n.saturating_add_signed(d),
            None => {
                slots.insert(limiter.to_string(), 0u32.saturating_add_signed(d));
            }
        }
    }

    /// The end of a backoff known for limiter `name`, if it has not passed.
    pub fn backoff_until(&self, name: &str) -> Option<u64> {
        let until = self.backoffs.lock().expect("backoffs lock").get(name).copied()?;
        Some(until).filter(|&u| u > zo_common::model::now_ms())
    }

    /// Notes a backoff (the later end wins).
    pub fn note_backoff(&self, name: &str, until: u64) {
        let mut b = self.backoffs.lock().expect("backoffs lock");
        let e = b.entry(name.to_string()).or_insert(0);
        *e = (*e).max(until);
    }

    /// The instance's CCR (re)start count and whether it is ready now (`None`: no CCR here).
    pub fn ccr_state(&self, instance: &str) -> Option<(u32, bool)> {
        self.ready.get(instance).map(|(rx, gen)| (gen.load(Ordering::SeqCst), *rx.borrow()))
    }
}

/// Why a running job was told to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StopReason {
    Cancelled,
    LeaseLost,
}

/// A job in progress on this worker.
#[derive(Clone)]
pub(crate) struct RunningJob {
    /// The instance it runs on (for the heartbeat's count of jobs in flight).
    pub instance: String,
    pub stream: String,
    pub entry_id: String,
    pub attempt: u32,
    /// Stops the execution (user cancel or lost lease; see `why`).
    pub stop: CancellationToken,
    /// The first reason it was told to stop (set once).
    why: Arc<std::sync::OnceLock<StopReason>>,
}

impl RunningJob {
    pub fn new(instance: String, stream: String, entry_id: String, attempt: u32, stop: CancellationToken) -> Self {
        RunningJob { instance, stream, entry_id, attempt, stop, why: Arc::default() }
    }

    /// Stops the job; the first reason given sticks.
    pub fn stop(&self, why: StopReason) {
        let _ = self.why.set(why);
        self.stop.cancel();
    }

    pub fn stopped_for(&self) -> Option<StopReason> {
        self.why.get().copied()
    }
}

/// A unique consumer name: host, pid and a random suffix.
pub fn worker_id() -> String {
    format!("{}-{}-{:04x}", heartbeat::host_name(), std::process::id(), rand::random::<u16>())
}

/// Runs until `shutdown` fires, then drains: no new jobs, running ones get
/// `drain_timeout` to finish, after which they are stopped (their processes killed) and their
/// jobs stay pending for another worker. `force` skips the drain.
pub async fn run(opts: WorkerOptions, shutdown: CancellationToken, force: CancellationToken) -> Result<(), WorkerError> {
    let cfg = &opts.config;
    // Bound first: a taken port is a config problem, found before anything starts.
    let metrics = crate::metrics::endpoint(opts.metrics_addr).await.map_err(WorkerError::Config)?;
    let slots: usize = cfg.instances.iter().map(|i| i.concurrency).sum();
    let store = Store::connect(&opts.redis_url, &opts.namespace, slots + cfg.instances.len() * 2 + 6).await?;
    let api_key = cfg.agent_api_key().map_err(|e| WorkerError::Config(format!("agent.api_key: {e}")))?;
    let executor = startup::executor(cfg, &opts.catalog)?;
    let (host_tx, host_ready) = startup::preflight(cfg, executor.as_ref(), !opts.use_running_ccr).await?;
    startup::prepare_redis(&store, cfg, &opts.catalog).await?;
    let id = worker_id();
    // CCR instances: prepared (secrets substituted) before anything runs, so a missing key
    // stops the worker with a clear message instead of failing tasks.
    let mut ctx = TaskContext::new(cfg, opts.catalog.clone(), executor.clone(), api_key);
    ctx.task_env = cfg.task_env().map_err(WorkerError::Config)?;
    let ccr_stop = CancellationToken::new();
    let (mut supervisors, ready) = startup::ccrs(cfg, &opts, &id, &mut ctx, &ccr_stop).await?;
    let tracker = TaskTracker::new();
    // Background loops that must outlive the drain (leases, heartbeat, batching) stop on `finished`.
    let finished = CancellationToken::new();
    let mut keepers = tokio::task::JoinSet::new();
    let claim = ClaimInfo { worker: id.clone(), lease: cfg.lease, max_deliveries: cfg.max_deliveries };
    let redis_health = Arc::new(crate::redis_health::RedisHealth::default());
    let (batch, batching) = Batcher::start(store.clone(), claim, redis_health.clone(), finished.clone());
    keepers.spawn(batching);
    let shared = Arc::new(Shared {
        store: store.clone(),
        batch,
        id: id.clone(),
        ctx,
        abort: CancellationToken::new(),
        finished: finished.clone(),
        lease: cfg.lease,
        max_deliveries: cfg.max_deliveries,
        running: Mutex::new(HashMap::new()),
        slots: cfg.instances.iter().map(|i| (i.name.clone(), Arc::new(Semaphore::new(i.concurrency)))).collect(),
        reading: cfg.instances.iter().map(|i| (i.name.clone(), AtomicUsize::new(0))).collect(),
        tracker: tracker.clone(),
        ready,
        backoffs: Mutex::new(HashMap::new()),
        shared_slots: Mutex::new(HashMap::new()),
        limits: cfg.instances.iter().map(|i| (i.name.clone(), crate::limits::InstanceLimits::of(&opts.catalog, &i.name))).collect(),
        host_ready,
        archive: cfg.archive.clone(),
        redis: redis_health,
    });
    let instances: Vec<String> = cfg.instances.iter().map(|i| i.name.clone()).collect();
    let executor_name = executor.as_ref().map(|e| e.host().to_string()).unwrap_or_else(|| "simulate".into());
    info!(worker = %id, instances = %instances.join(","), executor = %executor_name, lease = %humantime::format_duration(cfg.lease), "worker started");

    let mut loops = tokio::task::JoinSet::new();
    let host_up = *host_tx.borrow();
    if let (false, Some(ex)) = (host_up, &executor) {
        loops.spawn(preflight::wait_for_host(Arc::new(cfg.clone()), ex.clone(), host_tx, shutdown.clone()));
    }
    for inst in &instances {
        loops.spawn(read::read_loop(shared.clone(), inst.clone(), shutdown.clone()));
        loops.spawn(reclaim::reclaim_loop(shared.clone(), inst.clone(), shutdown.clone()));
    }
    loops.spawn(upkeep::upkeep_loop(shared.clone(), instances.clone(), shutdown.clone()));
    if let Some(dir) = &shared.archive {
        loops.spawn(archive::archive_loop(shared.clone(), dir.clone(), shutdown.clone()));
    }
    if let Some(ep) = metrics {
        let ssh_host = matches!(cfg.executor, ExecutorConfig::Ssh(_)).then(|| executor_name.clone());
        keepers.spawn(crate::metrics::serve(ep, shared.clone(), ssh_host, finished.clone()));
    }
    keepers.spawn(heartbeat::heartbeat_loop(shared.clone(), instances.clone(), executor_name, finished.clone()));
    keepers.spawn(lease::lease_loop(shared.clone(), finished.clone()));

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
    if let Ok(mut conn) = store.conn().await {
        let _ = store.remove_worker(&mut conn, &id).await;
    }
    if let Some(ex) = executor {
        ex.close().await;
    }
    info!("worker stopped");
    Ok(())
}

/// Backoff for retrying Redis: 0.5 s doubling to 30 s.
pub(crate) fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(500u64.saturating_mul(1 << attempt.min(6))).min(Duration::from_secs(30))
}

/// Sleeps, returning true if shutdown fired first.
pub(crate) async fn sleep_or_shutdown(d: Duration, shutdown: &CancellationToken) -> bool {
    tokio::select! {
        _ = shutdown.cancelled() => true,
        _ = tokio::time::sleep(d) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_a_cap() {
        assert_eq!(backoff(0), Duration::from_millis(500));
        assert_eq!(backoff(1), Duration::from_secs(1));
        assert_eq!(backoff(20), Duration::from_secs(30));
    }

    #[test]
    fn the_first_stop_reason_sticks() {
        let j = RunningJob::new("i".into(), "s".into(), "1-0".into(), 1, CancellationToken::new());
        assert_eq!(j.stopped_for(), None);
        j.stop(StopReason::LeaseLost);
        j.stop(StopReason::Cancelled);
        assert_eq!(j.stopped_for(), Some(StopReason::LeaseLost));
        assert!(j.stop.is_cancelled());
    }
}
