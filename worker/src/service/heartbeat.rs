//! The heartbeat: every five seconds the worker announces itself (id, host, version,
//! instances, executor, protocol, jobs in flight) so that zo-submit can tell which instances
//! are served, by whom, and how busy they are (`zo-submit workers`).

use std::collections::BTreeMap;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tracing::debug;
use zo_common::model::now_ms;
use zo_common::store::{WorkerInfo, PROTOCOL};

use crate::shared::Shared;
use crate::waiting::sleep_or_shutdown;

use zo_common::store::HEARTBEAT_EVERY as EVERY;

/// The machine's name, as the worker id starts with.
pub(super) fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "host".into())
}

pub(super) async fn heartbeat_loop(shared: Arc<Shared>, instances: Vec<String>, executor: String, shutdown: CancellationToken) {
    let mut info = WorkerInfo {
        id: shared.id.clone(),
        pid: std::process::id(),
        instances,
        executor,
        started_ms: now_ms(),
        protocol: PROTOCOL,
        host: host_name(),
        version: crate::VERSION.to_string(),
        in_flight: BTreeMap::new(),
    };
    loop {
        info.in_flight = in_flight(&shared, &info.instances);
        match shared.store.conn().await {
            Ok(mut conn) => match shared.store.heartbeat(&mut conn, &info).await {
                Ok(()) => shared.redis.wrote(),
                Err(e) => {
                    crate::metrics::redis_error("heartbeat");
                    if !shared.redis.failed(&e, "heartbeat") {
                        debug!("heartbeat failed: {e}");
                    }
                }
            },
            Err(e) => {
                crate::metrics::redis_error("heartbeat");
                if !shared.redis.failed(&e, "heartbeat") {
                    debug!("heartbeat failed: {e}");
                }
            }
        }
        if sleep_or_shutdown(EVERY, &shutdown).await {
            return;
        }
    }
}

/// Jobs running now, by instance (every served instance listed, idle ones with 0).
fn in_flight(shared: &Shared, instances: &[String]) -> BTreeMap<String, u32> {
    let mut m: BTreeMap<String, u32> = instances.iter().map(|i| (i.clone(), 0)).collect();
    let running = shared.running.lock().expect("running jobs lock");
    for job in running.values() {
        *m.entry(job.instance.clone()).or_default() += 1;
    }
    m
}
