//! The worker service: per served instance a read loop ([`read`]) takes jobs from that
//! instance's streams as slots free up and a reclaim loop ([`reclaim`]) takes over jobs whose
//! lease lapsed; per worker a lease loop ([`lease`]), an upkeep loop ([`upkeep`]) and a
//! heartbeat ([`heartbeat`]); with `archive:`, an archive sweep ([`archive`]). Each job runs
//! in its own tracked task ([`crate::job`]); results are recorded atomically before the job is
//! acknowledged. `run` wires them together and drains on shutdown.

mod archive;
mod gauges;
mod heartbeat;
mod lease;
mod options;
mod read;
mod reclaim;
mod startup;
mod upkeep;

use std::collections::HashMap;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex};

use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};
use zo_common::store::Store;

use crate::batch::{Batcher, ClaimInfo};
use crate::config::ExecutorConfig;
use crate::limits::{InstanceLimits, Limits};
use crate::preflight;
use crate::shared::Shared;
use crate::task::TaskContext;

pub use options::{WorkerError, WorkerOptions};

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
    let instance_limits = cfg.instances.iter().map(|i| (i.name.clone(), InstanceLimits::of(&opts.catalog, &i.name))).collect();
    let limits = Limits::new(store.clone(), batch.clone(), instance_limits, id.clone(), cfg.lease, finished.clone());
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
        limits,
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
        let observed = shared.clone();
        let observe = move || gauges::observe(&observed);
        keepers.spawn(crate::metrics::serve(ep, id.clone(), observe, ssh_host, finished.clone()));
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
