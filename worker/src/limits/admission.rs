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

use super::instance::SharedSlot;
use super::quotas;
use super::rates::{self, Admission};
use super::state::Limits;
use crate::task::TaskContext;

/// What admission decided for a job (admission is not the `gate:` result check).
pub enum Decision {
    /// Execute now; `rate_wait` spent here for rate limits; the shared slot it took, if any
    /// (the caller holds it until the result is stored).
    Go { rate_wait: Duration, shared_slot: Option<SharedSlot> },
    /// Handed back to its run to wait (the entry is acknowledged): nothing more to do here.
    HandedBack,
    /// It ends without executing: told to stop while waiting, or over quota too long.
    Failed(Outcome),
}

/// The limiters' first answers for a task, asked for all at once and beside its mark (one
/// batch: no round trip of its own when nothing binds).
pub struct Asked {
    /// Per limiter of [`super::Limiters`]`::all`, in order: the wait its first answer asked for.
    waits: Vec<Duration>,
    /// The shared slot asked for, and whether it was taken (`None`: the instance has no
    /// `max_concurrent`, or Redis could not say).
    slot: Option<(SharedSlot, bool)>,
}

impl Asked {
    /// Nothing was asked (no limiter applies).
    pub fn nothing() -> Self {
        Asked { waits: Vec::new(), slot: None }
    }

    /// The task will not run after all (its mark failed): gives back what it took.
    pub fn give_back(self, limits: &Limits) {
        if let Some((slot, true)) = self.slot {
            limits.give_back(slot);
        }
    }
}

/// What the limiters' last answers allow, spent here with no call (starts banked, a slot
/// given back by one of this worker's tasks): all of them or `None` ([`ask`] then).
pub fn ask_local(limits: &Limits, instance: &str, limiters: &[Limiter]) -> Option<Asked> {
    let slot = limits.of(instance).shared_cap();
    if !limits.batch.try_local(limiters, slot.map(|(l, _)| l)) {
        return None;
    }
    let slot = slot.map(|(limiter, cap)| (SharedSlot { limiter: limiter.to_string(), cap }, true));
    Some(Asked { waits: vec![Duration::ZERO; limiters.len()], slot })
}

/// Asks every limiter that applies, and for a shared slot, in one batch. Errors let the task
/// go (a limiter is a courtesy to the provider, and Redis being down stops more than this).
pub async fn ask(limits: &Limits, instance: &str, job: &Job, limiters: &[Limiter]) -> Asked {
    let slot = limits.of(instance).shared_cap().map(|(limiter, cap)| SharedSlot { limiter: limiter.to_string(), cap });
    let until = now_ms() + limits.lease.as_millis() as u64;
    let take = async {
        match &slot {
            Some(s) => Some(limits.batch.take_shared_slot(&s.limiter, s.cap, until).await),
            None => None,
        }
    };
    let (waits, taken) = tokio::join!(limits.batch.admit_all(limiters, || crate::waiters::job_key(job)), take);
    let waits = waits
        .into_iter()
        .zip(limiters)
        .map(|(w, l)| {
            w.unwrap_or_else(|e| {
                warn!(limiter = %l.name, "rate limiter unavailable ({e}); starting without it");
                Duration::ZERO
            })
        })
        .collect();
    let slot = match (slot, taken) {
        (Some(s), Some(Ok(t))) => Some((s, t)),
        (_, Some(Err(e))) => {
            warn!("shared slots unavailable ({e}); starting without one");
            None
        }
        _ => None,
    };
    Asked { waits, slot }
}

/// Takes the task through its limits, from the answers [`ask`] got. `own`: the instance's
/// limiter; `limiters`: those that must admit it; `ctx`: how its host is reached (quotas).
#[allow(clippy::too_many_arguments)]
pub async fn pass(
    limits: &Limits,
    ctx: &TaskContext,
    job: &Job,
    d: &Delivery,
    own: &Limiter,
    limiters: &[Limiter],
    asked: Asked,
    stop: &CancellationToken,
) -> Decision {
    let Asked { waits, slot } = asked;
    let mut shared_slot = match slot {
        Some((s, true)) => Some(s),
        Some((s, false)) => {
            // Every slot of the instance is held: handed back to the run, then queued for the
            // next free slot. Should the wake-up be lost (this worker dies between the two, or
            // the queueing fails), the task comes back by itself after the fallback.
            let fallback = shared_slot_fallback(limits.lease);
            defer(limits, job, d, now_ms() + fallback.as_millis() as u64, Duration::ZERO, "max_concurrent").await;
            let queued = match limits.store.conn().await {
                Ok(mut c) => limits.store.wait_for_shared_slot(&mut c, &s.limiter, &crate::waiters::job_key(job)).await,
                Err(e) => Err(e),
            };
            if let Err(e) = queued {
                warn!("could not queue for a shared slot ({e}); the task comes back in {}", humantime::format_duration(fallback));
            }
            return Decision::HandedBack;
        }
        None => None,
    };
    let mut give_up = |decision: Decision| {
        if let Some(s) = shared_slot.take() {
            limits.give_back(s);
        }
        decision
    };
    let mut rate_wait = Duration::ZERO;
    let backoff = limits.backoff_until(&own.name);
    let bound: Vec<(Limiter, Duration)> = limiters.iter().zip(waits).filter(|(_, w)| !w.is_zero()).map(|(l, w)| (l.clone(), w)).collect();
    if !bound.is_empty() || backoff.is_some() {
        match rates::wait_out(&limits.batch, backoff, &bound, &crate::waiters::job_key(job), stop).await {
            Admission::Go { waited } => rate_wait = waited,
            Admission::Later(wait) => {
                defer(limits, job, d, now_ms() + wait.as_millis() as u64, Duration::ZERO, "rate_limit").await;
                return give_up(Decision::HandedBack);
            }
            Admission::Stopped => {
                return give_up(Decision::Failed(Outcome::fail(
                    ErrorClass::Cancelled,
                    "cancelled while it waited for its rate limit".into(),
                )))
            }
        }
    }
    if let Some(q) = &job.spec.quotas {
        if let Err(o) = quotas::wait_under(ctx, &limits.store, job, q, stop).await {
            return give_up(Decision::Failed(o));
        }
    }
    Decision::Go { rate_wait, shared_slot }
}

/// Hands a running task back to its run to wait for a rate limit until `due_ms` (Unix ms),
/// then acknowledges its entry. `counted`: time that counts against the task's most wait
/// after rate-limit answers. False when it was not handed back (counting would pass the
/// most: record the answer as a failure; or Redis is unreachable: the entry stays pending).
pub async fn defer(limits: &Limits, job: &Job, d: &Delivery, due_ms: u64, counted: Duration, reason: &str) -> bool {
    let store = &limits.store;
    let Ok(mut c) = store.conn().await else {
        warn!("Redis unavailable while handing the task back to wait; it will be reclaimed after its lease");
        return true;
    };
    match store.defer(&mut c, &job.run_id, job.idx, job.attempt, &limits.worker, due_ms, counted, rates::MAX_RATE_LIMIT_WAIT, reason).await
    {
        Ok(Deferred::Ok { waited }) => {
            info!(until_ms = due_ms, waited_s = waited.as_secs(), "waiting for the rate limit: handed back until its turn");
            limits.batch.ack_entry(d, &limits.finished).await;
            true
        }
        Ok(Deferred::NotOurs) => true,
        Ok(Deferred::OverMax) => {
            warn!(
                "waited {} for rate limits already; recording the rate-limit answer as a failure",
                humantime::format_duration(rates::MAX_RATE_LIMIT_WAIT)
            );
            false
        }
        Err(e) => {
            warn!("handing the task back to wait failed ({e}); it will be reclaimed after its lease");
            true
        }
    }
}

/// How long a task handed back for a shared slot waits at most when its wake-up is lost: two
/// leases (a dead worker's slots lapse after one), from 2 s to 30 s.
fn shared_slot_fallback(lease: Duration) -> Duration {
    (lease * 2).clamp(Duration::from_secs(2), Duration::from_secs(30))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lost_wake_up_costs_two_leases_within_bounds() {
        let s = Duration::from_secs;
        assert_eq!(shared_slot_fallback(s(3)), s(6));
        assert_eq!(shared_slot_fallback(Duration::from_millis(500)), s(2));
        assert_eq!(shared_slot_fallback(s(30)), s(30));
        assert_eq!(shared_slot_fallback(s(600)), s(30));
    }
}
