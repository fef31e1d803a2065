//! The worker's start-up, before any job is taken: the executor built from the config, the
//! checks of what tasks will need (a config problem stops the worker, a host that does not
//! answer yet holds it idle), the consumer groups and the Redis and catalog warnings, and the
//! CCR instances (started and supervised, or the running ones followed).

use std::collections::HashMap;
use std::sync::atomic::AtomicU32;
use std::sync::Arc;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::warn;
use zo_common::catalog::Catalog;
use zo_common::store::Store;

use super::options::{WorkerError, WorkerOptions};
use crate::config::{ExecutorConfig, Reach, WorkerConfig};
use crate::exec::{local::LocalExecutor, run_as::RunAs, ssh::SshExecutor, Executor};
use crate::secrets::Secrets;
use crate::task::TaskContext;
use crate::{ccr, preflight};

/// Each served instance's CCR: ready now, and how often it was (re)started.
pub(super) type Readiness = HashMap<String, (watch::Receiver<bool>, Arc<AtomicU32>)>;

/// The executor of the config (`None`: simulated), with `run_as` checked.
pub(super) fn executor(cfg: &WorkerConfig, catalog: &Catalog) -> Result<Option<Arc<dyn Executor>>, WorkerError> {
    let executor: Option<Arc<dyn Executor>> = match &cfg.executor {
        ExecutorConfig::Ssh(s) => {
            let tunnels: Vec<(String, u16)> = match &cfg.ccr {
                Some(c) if c.reach == Reach::Tunnel => {
                    cfg.instances.iter().filter_map(|i| catalog.get(&i.name).map(|e| (i.name.clone(), e.port))).collect()
                }
                _ => Vec::new(),
            };
            Some(Arc::new(SshExecutor::new(s.clone()).with_tunnels(tunnels)))
        }
        ExecutorConfig::Local(l) => {
            let run_as = match l.run_as.as_deref().map(RunAs::resolve) {
                None => None,
                Some(Ok(r)) => {
                    r.check_privileges().map_err(WorkerError::Config)?;
                    let secret_files = std::iter::once(cfg.source.as_path()).chain(cfg.ccr.as_ref().map(|c| c.env_file.as_path()));
                    let open: Vec<String> = r.readable(secret_files).iter().map(|p| p.display().to_string()).collect();
                    if !open.is_empty() {
                        return Err(WorkerError::Config(format!(
                            "executor.run_as `{}` could read {}: tasks would see what the worker reads; make them readable by the worker's user only (chmod 600 {})",
                            r.name,
                            open.join(" and "),
                            open.join(" ")
                        )));
                    }
                    Some(r)
                }
                Some(Err(e)) => return Err(WorkerError::Config(e)),
            };
            Some(Arc::new(LocalExecutor::new(l.helper, run_as)))
        }
        ExecutorConfig::Simulate {} => None,
    };
    Ok(executor)
}

/// What tasks will need, checked before any is taken: a config problem stops the worker here
/// (every one named at once); a host that does not answer yet keeps it idle until it does
/// (the returned channel says when it is ready).
pub(super) async fn preflight(
    cfg: &WorkerConfig,
    executor: Option<&Arc<dyn Executor>>,
    starts_ccr: bool,
) -> Result<(watch::Sender<bool>, watch::Receiver<bool>), WorkerError> {
    let mut problems = preflight::local_checks(cfg, starts_ccr);
    if let Some(ex) = executor {
        problems.extend(preflight::host_checks(cfg, ex.as_ref()).await);
    }
    let config_problems: Vec<String> =
        problems.iter().filter_map(|p| if let preflight::Problem::Config(m) = p { Some(m.clone()) } else { None }).collect();
    if !config_problems.is_empty() {
        if let Some(ex) = executor {
            ex.close().await;
        }
        return Err(WorkerError::Config(config_problems.join("\n")));
    }
    let (host_tx, host_ready) = watch::channel(problems.is_empty());
    for p in &problems {
        if let preflight::Problem::Unreachable(m) = p {
            warn!(
                "the execution host does not answer ({m}); taking no jobs until it does (checking every {}s)",
                preflight::RECHECK.as_secs()
            );
        }
    }
    Ok((host_tx, host_ready))
}

/// The consumer groups of the served instances, and warnings about Redis's settings and
/// about catalogs that disagree between workers.
pub(super) async fn prepare_redis(store: &Store, cfg: &WorkerConfig, catalog: &Catalog) -> Result<(), WorkerError> {
    {
        let mut conn = store.conn().await?;
        for i in &cfg.instances {
            store.ensure_group(&mut conn, &i.name).await?;
        }
        for warning in store.durability_warnings(&mut conn).await {
            warn!("{warning}");
        }
        // Namespace-wide limits come from each worker's catalog: say when they disagree.
        for i in &cfg.instances {
            let Some(e) = catalog.get(&i.name) else { continue };
            let conf = crate::limits::conf_text(e);
            if let Ok(Some(other)) = store.limiter_conf(&mut conn, e.limiter(), &conf).await {
                warn!(instance = %i.name, "this worker's catalog limits `{}` to {conf}, another worker's to {other}: each enforces its own numbers against the shared counters; give every worker the same catalog", e.limiter());
            }
        }
    }
    Ok(())
}

/// The CCR instances: prepared (secrets substituted) and supervised, or, with
/// `--use-running-ccr`, those `zo-worker ccr start` left running, followed. Their keys and
/// the agent's base URL go into `ctx`.
pub(super) async fn ccrs(
    cfg: &WorkerConfig,
    opts: &WorkerOptions,
    id: &str,
    ctx: &mut TaskContext,
    ccr_stop: &CancellationToken,
) -> Result<(tokio::task::JoinSet<()>, Readiness), WorkerError> {
    let mut supervisors = tokio::task::JoinSet::new();
    let mut ready: HashMap<String, (watch::Receiver<bool>, Arc<AtomicU32>)> = HashMap::new();
    let Some(ccr_cfg) = &cfg.ccr else { return Ok((supervisors, ready)) };
    if let (Reach::Callback, Some(host)) = (ccr_cfg.reach, &ccr_cfg.callback_host) {
        ctx.base_url = format!("http://{host}:{{port}}");
    }
    // Each instance: its readiness and (re)start count, and the key its agents send.
    let mut register = |name: &str, key: String| {
        let (tx, rx) = watch::channel(false);
        let gen = Arc::new(AtomicU32::new(0));
        ready.insert(name.to_string(), (rx, gen.clone()));
        ctx.instance_keys.insert(name.to_string(), key);
        (tx, gen)
    };
    if opts.use_running_ccr {
        let located = ccr::locate(cfg, &opts.catalog, None).map_err(WorkerError::Config)?;
        for (at, key) in ccr::running(&located, &cfg.source).await.map_err(WorkerError::Missing)? {
            let (tx, gen) = register(&at.name, key);
            supervisors.spawn(ccr::follow_running(at, tx, gen, ccr_stop.clone()));
        }
    } else {
        let secrets = Secrets::load(&ccr_cfg.bws, &ccr_cfg.env_file);
        for p in ccr::prepare(cfg, &opts.catalog, &secrets, None).map_err(WorkerError::Config)? {
            let (tx, gen) = register(&p.name, p.apikey.clone());
            supervisors.spawn(ccr::supervise(p, ccr_cfg.clone(), format!("worker {id}"), tx, gen, ccr_stop.clone()));
        }
    }
    Ok((supervisors, ready))
}
