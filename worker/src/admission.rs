//! What a running task passes before it executes, in order: its rate limits (the instance's
//! from the catalog and the run's own, after any backoff a rate-limit answer started), a slot
//! of its instance's `max_concurrent` shared by every worker, and its run's host quotas. A
//! short wait is spent here; a long one hands the task back to its run (`DEFER`: still
//! queued, same attempt) until its turn, so its worker slot serves other runs meanwhile.

use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{info, warn};
use zo_common::model::{now_ms, ErrorClass, Outcome};
use zo_common::store::{Deferred, Delivery, Job, Limiter};

use crate::job::ack;
use crate::limits::{self, Admission, SharedSlot};
use crate::quotas;
use crate::service::Shared;

/// How the gate ended.
pub(crate) enum Gate {
    /// Execute now; `rate_wait` spent here for rate limits; the shared slot it took, if any
    /// (the caller holds it until the result is stored).
    Go { rate_wait: Duration, shared_slot: Option<SharedSlot> },
    /// Handed back to its run to wait (the entry is acknowledged): nothing more to do here.
    HandedBack,
    /// It ends without executing: told to stop while waiting, or over quota too long.
    Failed(Outcome),
}

/// Takes the task through its limits. `own`: the instance's limiter; `limiters`: those that
/// must admit it.
pub(crate) async fn pass(
    shared: &Shared,
    instance: &str,
    job: &Job,
    d: &Delivery,
    own: &Limiter,
    limiters: &[Limiter],
    stop: &CancellationToken,
) -> Gate {
    let mut rate_wait = Duration::ZERO;
    let backoff = shared.backoff_until(&own.name);
    if !limiters.is_empty() || backoff.is_some() {
        let key = format!("{}|{}|{}", job.run_id, job.idx, job.attempt);
        match limits::admit(&shared.store, backoff, limiters, &key, stop).await {
            Admission::Go { waited } => rate_wait = waited,
            Admission::Later(wait) => {
                defer(shared, job, d, now_ms() + wait.as_millis() as u64, Duration::ZERO, "rate_limit").await;
                return Gate::HandedBack;
            }
            Admission::Stopped => {
                return Gate::Failed(Outcome::fail(ErrorClass::Cancelled, "cancelled while it waited for its rate limit".into()))
            }
        }
    }
    let mut shared_slot = None;
    if let Some((limiter, cap)) = limits::shared_cap(shared, instance) {
        let slot = SharedSlot { limiter, cap, member: format!("{}|{}", job.run_id, job.idx) };
        let until = now_ms() + shared.lease.as_millis() as u64;
        let taken = match shared.store.conn().await {
            Ok(mut c) => shared.store.take_shared_slot(&mut c, &slot.limiter, cap, &slot.member, until).await,
            Err(e) => Err(e),
        };
        match taken {
            Ok(true) => shared_slot = Some(slot),
            Ok(false) => {
                // Every slot of the instance is held: handed back to the run (due in 30 s
                // should the wake-up be lost), then queued for the next free slot.
                defer(shared, job, d, now_ms() + 30_000, Duration::ZERO, "max_concurrent").await;
                let waiting = format!("{}|{}|{}", job.run_id, job.idx, job.attempt);
                let queued = match shared.store.conn().await {
                    Ok(mut c) => shared.store.wait_for_shared_slot(&mut c, &slot.limiter, &waiting).await,
                    Err(e) => Err(e),
                };
                if let Err(e) = queued {
                    warn!("could not queue for a shared slot ({e}); the task comes back in 30 s");
                }
                return Gate::HandedBack;
            }
            Err(e) => warn!("shared slots unavailable ({e}); starting without one"),
        }
    }
    if let Some(q) = &job.spec.quotas {
        if let Err(o) = quotas::wait_under(shared, job, q, stop).await {
            if let Some(slot) = shared_slot {
                limits::give_back(&shared.store, &slot).await;
            }
            return Gate::Failed(o);
        }
    }
    Gate::Go { rate_wait, shared_slot }
}

/// Hands a running task back to its run to wait for a rate limit until `due_ms` (Unix ms),
/// then acknowledges its entry. `counted`: time that counts against the task's most wait
/// after rate-limit answers. False when it was not handed back (counting would pass the
/// most: record the answer as a failure; or Redis is unreachable: the entry stays pending).
pub(crate) async fn defer(shared: &Shared, job: &Job, d: &Delivery, due_ms: u64, counted: Duration, reason: &str) -> bool {
    let store = &shared.store;
    let Ok(mut c) = store.conn().await else {
        warn!("Redis unavailable while handing the task back to wait; it will be reclaimed after its lease");
        return true;
    };
    match store.defer(&mut c, &job.run_id, job.idx, job.attempt, &shared.id, due_ms, counted, limits::MAX_RATE_LIMIT_WAIT, reason).await {
        Ok(Deferred::Ok { waited }) => {
            info!(until_ms = due_ms, waited_s = waited.as_secs(), "waiting for the rate limit: handed back until its turn");
            ack(shared, d).await;
            true
        }
        Ok(Deferred::NotOurs) => true,
        Ok(Deferred::OverMax) => {
            warn!(
                "waited {} for rate limits already; recording the rate-limit answer as a failure",
                humantime::format_duration(limits::MAX_RATE_LIMIT_WAIT)
            );
            false
        }
        Err(e) => {
            warn!("handing the task back to wait failed ({e}); it will be reclaimed after its lease");
            true
        }
    }
}
