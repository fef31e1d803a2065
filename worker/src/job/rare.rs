//! The job's rare paths, each boxed where it is called (a job's future is as large as its
//! largest state and is moved when spawned): the hand-back at shutdown, dead letters, the
//! archive of a run this job finished, and recording retried while Redis is unreachable.

use std::time::Duration;

use tracing::{debug, error, info, warn};
use zo_common::model::TaskResult;
use zo_common::store::{Delivery, Job, Recorded, ToRecord};

use crate::shared::Shared;
use crate::waiting::{backoff, sleep_or_shutdown};

/// How often recording a result is tried while Redis is unreachable.
const RECORD_TRIES: u32 = 12;

/// This worker recorded a run's last result: its document goes to the archive (in the
/// background, tracked, unless another process claimed it first).
pub(super) fn archive_finished(shared: &Shared, run_id: &str, dir: std::path::PathBuf) {
    let (store, who, run) = (shared.store.clone(), shared.id.clone(), run_id.to_string());
    let catalog = shared.ctx.catalog.clone();
    shared.tracker.spawn(async move {
        match zo_common::archive::archive_run(&store, &run, &who, &dir, &catalog).await {
            Ok(Some(path)) => info!(run = %run, path = %path.display(), "archived the finished run"),
            Ok(None) => {}
            Err(e) => warn!(run = %run, "could not archive the finished run: {e}"),
        }
    });
}

/// Shutdown: give a running task back to the queue at once (not after its lease).
pub(super) async fn hand_back(shared: &Shared, job: &Job, d: &Delivery) {
    let store = &shared.store;
    let Ok(mut c) = store.conn().await else {
        warn!("Redis unavailable while handing the task back; it will be reclaimed after its lease");
        return;
    };
    match store.release(&mut c, &job.run_id, job.idx, job.attempt, &shared.id).await {
        Ok(true) => {
            shared.batch.ack_entry(d, &shared.finished).await;
            let _ = store.flush_outbox(&mut c, &job.run_id).await;
            info!("handed back to the queue");
        }
        Ok(false) => debug!("not ours to hand back"),
        Err(e) if shared.redis.failed(&e, "handing a task back") => {}
        Err(e) => warn!("handing the task back failed ({e}); it will be reclaimed after its lease"),
    }
}

/// Records a result, retrying while Redis is unreachable (the batcher enqueues released
/// dependents). `None` when it could not be recorded (the job stays pending and runs again).
pub(super) async fn record(shared: &Shared, job: &Job, result: &TaskResult, retry_in: Option<Duration>) -> Option<Recorded> {
    let item = ToRecord {
        idx: job.idx,
        attempt: result.attempt,
        status: result.outcome.status,
        blob: result.encode(),
        retry_in,
        cost: result.cost_nanos.unwrap_or(0),
        instance: job.spec.instance.clone(),
    };
    for attempt in 0..RECORD_TRIES {
        match shared.batch.record(&job.run_id, item.clone()).await {
            Ok(rec) => {
                if matches!(rec, Recorded::Duplicate | Recorded::Stale) {
                    debug!("result not stored ({rec:?}): another delivery recorded this attempt");
                }
                return Some(rec);
            }
            Err(e) if e.is_transient() => {
                crate::metrics::redis_error("record_result");
                if !e.store().is_some_and(|s| shared.redis.failed(s, "recording a result")) {
                    warn!("recording the result failed: {e}; retrying in {:?}", backoff(attempt));
                }
                if sleep_or_shutdown(backoff(attempt), &shared.finished).await {
                    break;
                }
            }
            Err(e) => {
                error!("could not record the result: {e}; the job stays pending and will run again");
                return None;
            }
        }
    }
    error!("gave up recording the result; the job stays pending and will run again");
    None
}

/// Only once the dead letter exists may the entry leave its stream.
pub(super) async fn dead_letter_entry(shared: &Shared, d: &Delivery, reason: &str) {
    let stored = match shared.store.conn().await {
        Ok(mut c) => shared.store.dead_letter_entry(&mut c, &shared.id, d, reason).await,
        Err(e) => Err(e),
    };
    match stored {
        Ok(()) => shared.batch.ack_entry(d, &shared.finished).await,
        Err(e) if shared.redis.failed(&e, "dead-lettering an entry") => {}
        Err(e) => warn!("could not dead-letter {}: {e}; leaving it pending", d.id),
    }
}

/// A task that ended for good after its retries (or as poison) goes to the dead letters.
pub(super) async fn dead_letter_task(shared: &Shared, job: &Job, result: &TaskResult, reason: &str) {
    let stored = match shared.store.conn().await {
        Ok(mut c) => shared.store.dead_letter_task(&mut c, &shared.id, job, result, reason).await,
        Err(e) => Err(e),
    };
    if let Err(e) = stored {
        if !shared.redis.failed(&e, "dead-lettering a task") {
            warn!("could not dead-letter the task: {e}");
        }
    }
}
