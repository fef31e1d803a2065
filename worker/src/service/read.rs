//! The read loop of one instance: takes as many new jobs as it has free slots (high priority
//! first), hands each to its own tracked job task with the slot it holds, and blocks on the
//! instance's streams when there is nothing.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::job;
use crate::shared::Shared;
use crate::waiting::{backoff, sleep_or_shutdown};

/// Most jobs taken in one read.
const MAX_READ: usize = 256;

pub(super) async fn read_loop(shared: Arc<Shared>, instance: String, shutdown: CancellationToken) {
    let sem = shared.slots[&instance].clone();
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
        while permits.len() < MAX_READ {
            match sem.clone().try_acquire_owned() {
                Ok(p) => permits.push(p),
                Err(_) => break,
            }
        }
        let mut conn = match shared.store.conn().await {
            Ok(c) => c,
            Err(e) => {
                crate::metrics::redis_error("read");
                if !shared.redis.failed(&e, "reading jobs") {
                    warn!(instance = %instance, "Redis unavailable: {e}; retrying in {:?}", backoff(failures));
                }
                if sleep_or_shutdown(backoff(failures), &shutdown).await {
                    return;
                }
                failures += 1;
                continue;
            }
        };
        let reading = &shared.reading[&instance];
        reading.store(permits.len(), Ordering::SeqCst);
        let result = tokio::select! {
            r = shared.store.read_jobs(&mut conn, &instance, &shared.id, permits.len()) => r,
            _ = shutdown.cancelled() => {
                reading.store(0, Ordering::SeqCst);
                // The blocked command is abandoned mid-flight: never return that connection to the pool.
                drop(conn.detach());
                return;
            }
        };
        reading.store(0, Ordering::SeqCst);
        drop(conn);
        let deliveries = match result {
            Ok(r) => {
                shared.redis.read();
                failures = 0;
                r
            }
            Err(e) => {
                if e.is_missing_group() {
                    warn!(instance = %instance, "consumer group missing (Redis restarted without its data?); recreating it");
                    if let Ok(mut c) = shared.store.conn().await {
                        let _ = shared.store.ensure_group(&mut c, &instance).await;
                    }
                } else {
                    crate::metrics::redis_error("read");
                    if !shared.redis.failed(&e, "reading jobs") {
                        warn!(instance = %instance, "reading jobs failed: {e}; retrying in {:?}", backoff(failures));
                    }
                }
                if sleep_or_shutdown(backoff(failures), &shutdown).await {
                    return;
                }
                failures += 1;
                continue;
            }
        };
        for d in deliveries {
            // The blocking read may return one entry per stream: extras wait for a slot.
            let permit = permits.pop();
            shared.tracker.spawn(job::handle(shared.clone(), instance.clone(), d, permit, false));
        }
    }
}
