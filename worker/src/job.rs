//! One delivery, from stream entry to acknowledgement: decode the entry → mark the task
//! running (batched, atomic) → execute → record the result or schedule its retry (batched,
//! atomic) → acknowledge. Whatever the job holds — its task slot, its place among the
//! worker's running jobs (lease renewal, cancel checks) — is held by a [`Held`] guard and
//! released on every exit path, early returns and panics included.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::OwnedSemaphorePermit;
use tracing::{debug, error, info, warn, Instrument};
use zo_common::model::{now_ms, ErrorClass, Outcome, Status, TaskResult};
use zo_common::store::{Delivery, Job, MarkRunning, Recorded, ToMark, ToRecord};

use crate::admission::{self, defer, Decision};
use crate::limits::{self, SharedSlot};
use crate::shared::{RunningJob, Shared, StopReason};
use crate::task::execute;
use crate::templates::{self, has_templates};
use crate::waiting::{backoff, sleep_or_shutdown};

/// How often recording a result is tried while Redis is unreachable.
const RECORD_TRIES: u32 = 12;

/// What a job holds while it runs; dropping it gives everything back.
struct Held<'a> {
    shared: &'a Shared,
    slot: Option<OwnedSemaphorePermit>,
    running: Option<(String, u32)>,
    /// A slot of the instance's `max_concurrent` (shared by every worker).
    shared_slot: Option<SharedSlot>,
}

impl<'a> Held<'a> {
    fn new(shared: &'a Shared, slot: OwnedSemaphorePermit) -> Self {
        Held { shared, slot: Some(slot), running: None, shared_slot: None }
    }

    /// Registers the job among the worker's running jobs (its lease is renewed from there).
    fn start(&mut self, key: (String, u32), job: RunningJob) {
        self.shared.running.lock().expect("running lock").insert(key.clone(), job);
        self.running = Some(key);
    }

    /// The execution is over: no more renewals.
    fn stop_running(&mut self) {
        if let Some(key) = self.running.take() {
            self.shared.running.lock().expect("running lock").remove(&key);
        }
    }

    /// The task is done with its slot once its result is stored.
    fn free_slot(&mut self) {
        self.slot = None;
        self.give_shared_slot();
    }

    /// Holds a shared slot (counted for the lease loop, which renews it, until given back).
    fn hold_shared_slot(&mut self, slot: SharedSlot) {
        self.shared.hold_shared_slot(&slot.limiter, 1);
        self.shared_slot = Some(slot);
    }

    /// Gives the shared slot back (sent to the batch, nothing awaited: this runs in `drop` too).
    fn give_shared_slot(&mut self) {
        let Some(slot) = self.shared_slot.take() else { return };
        self.shared.hold_shared_slot(&slot.limiter, -1);
        limits::give_back(&self.shared.batch, slot);
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.stop_running();
        self.give_shared_slot();
    }
}

/// Handles one delivery. The rare paths (dead letters, hand-back) are boxed: every job's
/// future is as large as its largest state and is moved when spawned; unboxed they made the
/// worker ~10% more expensive per task (bench scenario 1, A/B). `slot` is the task slot the read loop took for it (a reclaimed job
/// waits for one); `takeover` when it was reclaimed from another consumer.
pub(crate) async fn handle(shared: Arc<Shared>, instance: String, d: Delivery, slot: Option<OwnedSemaphorePermit>, takeover: bool) {
    let job = match d.job(&instance) {
        Ok(j) => j,
        Err(reason) => {
            warn!(entry = %d.id, instance = %instance, "dead-lettering a malformed job: {reason}");
            Box::pin(dead_letter_entry(&shared, &d, &reason)).await;
            return;
        }
    };
    let slot = match slot {
        Some(p) => p,
        None => tokio::select! {
            p = shared.slots[&instance].clone().acquire_owned() => p.expect("semaphore never closes"),
            // Shutting down before a slot freed: the entry stays pending for another worker.
            _ = shared.abort.cancelled() => return,
        },
    };
    let span = tracing::info_span!("task", run = %job.run_id, task = %job.spec.name, attempt = job.attempt, worker = %shared.id, instance = %instance);
    run_job(&shared, &instance, &d, &job, Held::new(&shared, slot), takeover).instrument(span).await
}

async fn run_job(shared: &Shared, instance: &str, d: &Delivery, job: &Job, mut held: Held<'_>, takeover: bool) {
    // The limiters are asked beside the mark, in the same batch (no round trip of their own).
    let own = &shared.limits[instance].own;
    let limiters = limits::limiters(own, job, instance);
    let asks = shared.limits[instance].shared_cap().is_some() || !limiters.is_empty();
    let mark_it = shared.batch.mark(&job.run_id, ToMark { idx: job.idx, attempt: job.attempt, takeover, instance: instance.to_string() });
    let local = if asks { admission::ask_local(shared, instance, &limiters) } else { None };
    let (mark, asked) = if asks && local.is_none() {
        // Boxed: most jobs ask nothing, and the job's future is moved on every spawn.
        let (m, a) = tokio::join!(mark_it, Box::pin(admission::ask(shared, instance, job, &limiters)));
        (m, Some(a))
    } else {
        (mark_it.await, local)
    };
    let mut asked = match (&mark, asked) {
        (Ok(MarkRunning::Ok), a) => a,
        (_, Some(a)) => {
            a.give_back(shared);
            None
        }
        (_, None) => None,
    };
    // When it starts executing: after any wait for a rate limit (which counts as queue wait).
    let mut started_ms = now_ms();
    let mut rate_wait = Duration::ZERO;
    let outcome = match mark {
        Ok(MarkRunning::Ok) => None,
        Ok(MarkRunning::Poison) => Some(Outcome::poison(shared.max_deliveries)),
        Ok(MarkRunning::AlreadyRunning) if takeover => {
            // Its holder is alive and renewing: leave the entry pending; the holder acks it.
            debug!(entry = %d.id, "reclaimed entry belongs to a live lease; leaving it");
            return;
        }
        Ok(MarkRunning::Unknown) => {
            let reason = format!("run {} has no task {} (an unknown run, or one that expired)", job.run_id, job.idx);
            warn!(entry = %d.id, "dead-lettering: {reason}");
            Box::pin(dead_letter_entry(shared, d, &reason)).await;
            return;
        }
        Ok(MarkRunning::Parked) => {
            debug!(entry = %d.id, "its run is at a concurrency limit: the task waits in the run for a slot");
            shared.batch.ack_entry(d, &shared.finished).await;
            return;
        }
        Ok(other) => {
            debug!(entry = %d.id, "dropping job ({other:?})");
            shared.batch.ack_entry(d, &shared.finished).await;
            return;
        }
        Err(e) => {
            // Left pending: it will be delivered again.
            crate::metrics::redis_error("mark_running");
            if !e.store().is_some_and(|s| shared.redis.failed(s, "marking a task running")) {
                warn!("could not mark the task running: {e}");
            }
            return;
        }
    };
    let outcome = match outcome {
        Some(o) => o,
        None => {
            let running =
                RunningJob::new(job.spec.instance.clone(), d.stream.clone(), d.id.clone(), job.attempt, shared.abort.child_token());
            held.start((job.run_id.clone(), job.idx), running.clone());
            info!(takeover, "started");
            let mut refused = None;
            let asked = asked.take().unwrap_or_else(admission::Asked::nothing);
            match Box::pin(admission::pass(shared, job, d, own, &limiters, asked, &running.stop)).await {
                Decision::Go { rate_wait: waited, shared_slot } => {
                    rate_wait = waited;
                    started_ms = now_ms();
                    if let Some(slot) = shared_slot {
                        held.hold_shared_slot(slot);
                    }
                }
                Decision::HandedBack => {
                    held.stop_running();
                    return;
                }
                Decision::Failed(o) => refused = Some(o),
            }
            let ccr_before = shared.ccr_state(instance);
            // Boxed: the execution's state is large, and the job's future is moved on every spawn.
            let stopped_waiting = refused.is_some();
            let mut o = if let Some(o) = refused {
                o
            } else if has_templates(&job.spec) {
                match Box::pin(templates::render(&shared.store, job)).await {
                    Ok(rendered) => Box::pin(execute(&shared.ctx, &rendered, &running.stop)).await,
                    Err(failed) => failed,
                }
            } else {
                Box::pin(execute(&shared.ctx, job, &running.stop)).await
            };
            // A model error while this instance's CCR crashed or restarted is the router's
            // fault, not the task's: class it `network` so the job runs again.
            if let (Some(ErrorClass::Model), Some((g0, _)), Some((g1, ready_now))) = (o.error_class, ccr_before, shared.ccr_state(instance))
            {
                if g1 != g0 || !ready_now {
                    o.error_class = Some(ErrorClass::Network);
                    o.error = Some(format!("CCR for instance `{instance}` went down during the task: {}", o.error.unwrap_or_default()));
                }
            }
            if !stopped_waiting {
                if let Some(until) = Box::pin(limits::after(&shared.store, &limiters, own, &o)).await {
                    shared.note_backoff(&own.name, until);
                }
            }
            held.stop_running();
            if shared.abort.is_cancelled() {
                Box::pin(hand_back(shared, job, d)).await;
                return;
            }
            if running.stopped_for() == Some(StopReason::LeaseLost) {
                // Another worker owns the task (and this entry) now: record nothing, ack nothing.
                return;
            }
            if o.error_class == Some(ErrorClass::RateLimit) && o.status != Status::Success {
                // A rate-limit answer is not the task's fault: it waits out the backoff at the
                // same attempt, until it has waited MAX_RATE_LIMIT_WAIT in all.
                let said = o.error.as_deref().unwrap_or("").lines().next().unwrap_or("");
                info!(answer = %zo_common::text::escape_line(&said.chars().take(200).collect::<String>()), "the model answered with a rate limit");
                let due = shared.backoff_until(&own.name).unwrap_or_else(|| now_ms() + 10_000);
                let wait = Duration::from_millis(due.saturating_sub(now_ms()));
                if Box::pin(defer(shared, job, d, due, wait.max(Duration::from_millis(1)), "rate_limit")).await {
                    return;
                }
            }
            o
        }
    };
    let cost_nanos = job.spec.price.map(|p| outcome.cost(p));
    let result = TaskResult {
        outcome,
        attempt: job.attempt,
        worker: shared.id.clone(),
        started_ms,
        finished_ms: now_ms(),
        queue_wait_ms: started_ms.saturating_sub(d.enqueued_ms()),
        reclaimed: takeover,
        cost_nanos,
        rate_wait_ms: rate_wait.as_millis() as u64,
    };
    let o = &result.outcome;
    let retry = &job.spec.retry;
    let retry_in = match o.error_class {
        Some(c) if o.status != Status::Success && c != ErrorClass::Poison && retry.retries(c, job.attempt) => {
            Some(retry.delay(job.attempt, rand::random::<f64>()))
        }
        _ => None,
    };
    let class = o.error_class.map(|c| c.as_str()).unwrap_or("");
    match (&o.error, retry_in) {
        (None, _) => info!(status = o.status.as_str(), ms = result.duration_ms(), "finished"),
        (Some(e), Some(d)) => {
            warn!(
                status = o.status.as_str(),
                class,
                "attempt failed: {e}; retrying in {}",
                humantime::format_duration(Duration::from_millis(d.as_millis() as u64))
            )
        }
        (Some(e), None) => warn!(status = o.status.as_str(), class, ms = result.duration_ms(), "finished: {e}"),
    }
    let recorded = record(shared, job, &result, retry_in).await;
    if let (Some(Recorded::Ok { finished: true }), Some(dir)) = (&recorded, &shared.archive) {
        archive_finished(shared, &job.run_id, dir.clone());
    }
    let exhausted = retry_in.is_none()
        && o.status != Status::Success
        && o.error_class.is_some_and(|c| c == ErrorClass::Poison || retry.retry_on.contains(&c));
    if exhausted && matches!(recorded, Some(Recorded::Ok { .. })) {
        let reason = match o.error_class {
            Some(ErrorClass::Poison) => format!("poison: delivered more than {} times without a result", shared.max_deliveries),
            _ => format!(
                "retries exhausted after {} attempt{}: {}",
                job.attempt,
                if job.attempt == 1 { "" } else { "s" },
                o.error.as_deref().unwrap_or("")
            ),
        };
        Box::pin(dead_letter_task(shared, job, &result, &reason)).await;
    }
    held.free_slot();
    if recorded.is_some() {
        crate::metrics::task_done(instance, &result, retry_in.is_some());
        shared.batch.ack_entry(d, &shared.finished).await;
    }
}

/// This worker recorded a run's last result: its document goes to the archive (in the
/// background, tracked, unless another process claimed it first).
fn archive_finished(shared: &Shared, run_id: &str, dir: std::path::PathBuf) {
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
async fn hand_back(shared: &Shared, job: &Job, d: &Delivery) {
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
async fn record(shared: &Shared, job: &Job, result: &TaskResult, retry_in: Option<Duration>) -> Option<Recorded> {
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
async fn dead_letter_entry(shared: &Shared, d: &Delivery, reason: &str) {
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
async fn dead_letter_task(shared: &Shared, job: &Job, result: &TaskResult, reason: &str) {
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
