//! The upkeep loop: every half second, due retries and outboxes of unfinished runs and the
//! rate-limit backoffs of the served instances; soon after
//! start and then every 30 s, consumers of workers that are gone and hold nothing.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::debug;

use crate::shared::Shared;
use crate::waiting::sleep_or_shutdown;

pub(super) async fn upkeep_loop(shared: Arc<Shared>, instances: Vec<String>, shutdown: CancellationToken) {
    let store = &shared.store;
    let mut ticks = 0u64;
    loop {
        if sleep_or_shutdown(Duration::from_millis(500), &shutdown).await {
            return;
        }
        ticks += 1;
        let Ok(mut conn) = store.conn().await else { continue };
        if let Err(e) = store.maintain_active(&mut conn).await {
            debug!("maintenance failed: {e}");
        }
        // Backoffs other workers started after rate-limit answers hold here too.
        for inst in &instances {
            let name = &shared.limits.of(inst).own.name;
            if let Ok(Some(until)) = store.backoff_until(&mut conn, name).await {
                shared.limits.note_backoff(name, until);
            }
            // Shared slots whose lease lapsed (a dead worker's) go to the tasks waiting.
            if let Some((limiter, cap)) = shared.limits.of(inst).shared_cap() {
                if let Ok(waiters) = store.free_lapsed_shared_slots(&mut conn, limiter, cap).await {
                    crate::waiters::wake(store, &mut conn, &waiters).await;
                }
            }
        }
        // Soon after start (a restarted worker cleans up after its dead predecessors), then every 30 s.
        if ticks == 4 || ticks.is_multiple_of(60) {
            for inst in &instances {
                for stream in store.keys().job_streams(inst) {
                    if let Err(e) = store.remove_dead_consumers(&mut conn, &stream, shared.lease * 4).await {
                        debug!("consumer cleanup failed: {e}");
                    }
                }
            }
        }
    }
}
