//! The reclaim loop of one instance: every half lease, claims jobs whose holder stopped
//! renewing for a whole lease (a dead or hung worker) and runs them as takeovers — as many as
//! this worker has slots not taken by running jobs (those the read loop holds while it waits
//! count as free), at least one, so a dead worker's jobs come back together, not one per round.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use crate::job;
use crate::shared::Shared;
use crate::waiting::sleep_or_shutdown;

pub(super) async fn reclaim_loop(shared: Arc<Shared>, instance: String, shutdown: CancellationToken) {
    let every = (shared.lease / 2).max(Duration::from_millis(250));
    loop {
        if sleep_or_shutdown(every, &shutdown).await || !shared.wait_ready(&instance, &shutdown).await {
            return;
        }
        // At least one, also when every slot is busy: a claimed job waits for the next free slot
        // ahead of new jobs, so a dead worker's work is not starved by a long backlog.
        let mut free = shared.idle_slots(&instance).max(1);
        for stream in shared.store.keys().job_streams(&instance) {
            if free == 0 {
                break;
            }
            let Ok(mut conn) = shared.store.conn().await else { break };
            let claimed = match shared.store.reclaim(&mut conn, &stream, &shared.id, shared.lease, free).await {
                Ok(c) => c,
                Err(e) => {
                    debug!(stream = %stream, "XAUTOCLAIM failed: {e}");
                    continue;
                }
            };
            drop(conn);
            free = free.saturating_sub(claimed.len());
            for d in claimed {
                info!(stream = %stream, entry = %d.id, "reclaimed a job whose lease lapsed");
                shared.tracker.spawn(job::handle(shared.clone(), instance.clone(), d, None, true));
            }
        }
    }
}
