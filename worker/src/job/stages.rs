//! The stages of one job, in the order `run` calls them. Each takes what the one before gave
//! and returns what the next needs, or an [`Exit`]. The large or rare steps are boxed where
//! they are awaited: a job's future is as large as its largest state and is moved when
//! spawned (unboxed they made the worker ~10% more expensive per task, bench scenario 1, A/B).

use std::time::Duration;

use tracing::{debug, info, warn};
use zo_common::model::{now_ms, ErrorClass, Outcome, Status, TaskResult};
use zo_common::store::{MarkRunning, Recorded, ToMark};

use super::context::{Ctx, Exit, Next};
use super::held::Held;
use super::rare;
use crate::exec::run::Discard;
use crate::limits::admission::{self, defer};
use crate::limits::{Asked, Decision, Limiters};
use crate::shared::{RunningJob, StopReason};
use crate::templates::{self, has_templates};

/// What marking the task running gave.
pub(super) enum Marked {
    /// It is ours to run; the limiters' first answers, when any were asked.
    Run(Option<Asked>),
    /// Delivered too often without a result: recorded as poison without running.
    Poison(Outcome),
}

/// Marks the task running, asking its limiters beside the mark in the same batch (no round
/// trip of their own).
pub(super) async fn mark(c: &Ctx<'_>, limiters: &Limiters<'_>) -> Next<Marked> {
    let (shared, job) = (c.shared, c.job);
    let mark_it = shared
        .batch
        .mark(&job.run_id, ToMark { idx: job.idx, attempt: job.attempt, takeover: c.takeover, instance: c.instance.to_string() });
    let local = if limiters.asks { admission::ask_local(&shared.limits, c.instance, &limiters.all) } else { None };
    let (mark, asked) = if limiters.asks && local.is_none() {
        // Boxed: most jobs ask nothing.
        let (m, a) = tokio::join!(mark_it, Box::pin(admission::ask(&shared.limits, c.instance, job, &limiters.all)));
        (m, Some(a))
    } else {
        (mark_it.await, local)
    };
    let mark = match mark {
        Ok(MarkRunning::Ok) => return Ok(Marked::Run(asked)),
        other => other,
    };
    if let Some(a) = asked {
        a.give_back(&shared.limits);
    }
    match mark {
        Ok(MarkRunning::Poison) => Ok(Marked::Poison(Outcome::poison(shared.max_deliveries))),
        Ok(MarkRunning::AlreadyRunning) if c.takeover => {
            // Its holder is alive and renewing: leave the entry pending; the holder acks it.
            debug!(entry = %c.d.id, "reclaimed entry belongs to a live lease; leaving it");
            Err(Exit::Leave)
        }
        Ok(MarkRunning::Unknown) => {
            let reason = format!("run {} has no task {} (an unknown run, or one that expired)", job.run_id, job.idx);
            warn!(entry = %c.d.id, "dead-lettering: {reason}");
            Err(Exit::DeadLetter(reason))
        }
        Ok(MarkRunning::Parked) => {
            debug!(entry = %c.d.id, "its run is at a concurrency limit: the task waits in the run for a slot");
            Err(Exit::Ack)
        }
        Ok(other) => {
            debug!(entry = %c.d.id, "dropping job ({other:?})");
            Err(Exit::Ack)
        }
        Err(e) => {
            // Left pending: it will be delivered again.
            crate::metrics::redis_error("mark_running");
            if !e.store().is_some_and(|s| shared.redis.failed(s, "marking a task running")) {
                warn!("could not mark the task running: {e}");
            }
            Err(Exit::Leave)
        }
    }
}

/// A task that started: its registration among the running jobs, when it started executing
/// (after any wait for a rate limit, which counts as queue wait) and that wait.
pub(super) struct Started {
    pub running: RunningJob,
    pub started_ms: u64,
    pub rate_wait: Duration,
}

/// What admission gave.
pub(super) enum Admitted {
    /// Execute it.
    Go(Started),
    /// It ends without executing (told to stop while it waited, or over quota too long).
    Refused { outcome: Box<Outcome>, started: Started },
}

/// Registers the running job and takes it through admission: rate limits, a shared slot of
/// `max_concurrent` (held until the result is stored), host quotas.
pub(super) async fn admit(c: &Ctx<'_>, limiters: &Limiters<'_>, asked: Option<Asked>, held: &mut Held<'_>) -> Next<Admitted> {
    let (shared, job) = (c.shared, c.job);
    let before = now_ms();
    let running = RunningJob::new(job.spec.instance.clone(), c.d.stream.clone(), c.d.id.clone(), job.attempt, shared.abort.child_token());
    held.start((job.run_id.clone(), job.idx), running.clone());
    info!(takeover = c.takeover, "started");
    let asked = asked.unwrap_or_else(Asked::nothing);
    match Box::pin(admission::pass(&shared.limits, &shared.ctx, job, c.d, limiters.own, &limiters.all, asked, &running.stop)).await {
        Decision::Go { rate_wait, shared_slot } => {
            if let Some(slot) = shared_slot {
                held.hold_shared_slot(slot);
            }
            Ok(Admitted::Go(Started { running, started_ms: now_ms(), rate_wait }))
        }
        Decision::HandedBack => {
            held.stop_running();
            Err(Exit::Leave)
        }
        Decision::Failed(outcome) => Ok(Admitted::Refused {
            outcome: Box::new(outcome),
            started: Started { running, started_ms: before, rate_wait: Duration::ZERO },
        }),
    }
}

/// Renders the task's templates from its dependencies' results, then runs its command and
/// agent (boxed: the execution's state is large). Their output goes to a sink as it arrives:
/// nobody watches it yet ([`Discard`]); live output hands its own sink in here.
pub(super) async fn execute(c: &Ctx<'_>, running: &RunningJob) -> Outcome {
    let sink = &Discard;
    if has_templates(&c.job.spec) {
        match Box::pin(templates::render(&c.shared.store, c.job)).await {
            Ok(rendered) => Box::pin(crate::task::execute(&c.shared.ctx, &rendered, &running.stop, sink)).await,
            Err(failed) => failed,
        }
    } else {
        Box::pin(crate::task::execute(&c.shared.ctx, c.job, &running.stop, sink)).await
    }
}

/// How the job ended before it is recorded.
pub(super) struct Ended {
    pub outcome: Outcome,
    pub started_ms: u64,
    pub rate_wait: Duration,
}

impl Ended {
    /// An outcome decided without starting the task (poison).
    pub(super) fn without_start(outcome: Outcome) -> Self {
        Ended { outcome, started_ms: now_ms(), rate_wait: Duration::ZERO }
    }
}

/// What the outcome means for this job. A model error while the instance's CCR crashed or
/// restarted is the router's fault (`network`: it runs again); tokens are debited and a
/// rate-limit answer reported to the limiters (`executed` only); at shutdown the task is
/// handed back, after a lost lease it is another worker's, and a rate-limit answer waits out
/// its backoff at the same attempt — those end the job here.
pub(super) async fn judge(
    c: &Ctx<'_>,
    limiters: &Limiters<'_>,
    held: &mut Held<'_>,
    started: Started,
    ccr_before: Option<(u32, bool)>,
    mut o: Outcome,
    executed: bool,
) -> Next<Ended> {
    let (shared, job, own) = (c.shared, c.job, limiters.own);
    if let (Some(ErrorClass::Model), Some((g0, _)), Some((g1, ready_now))) = (o.error_class, ccr_before, shared.ccr_state(c.instance)) {
        if g1 != g0 || !ready_now {
            o.error_class = Some(ErrorClass::Network);
            o.error = Some(format!("CCR for instance `{}` went down during the task: {}", c.instance, o.error.unwrap_or_default()));
        }
    }
    if executed {
        Box::pin(shared.limits.note_outcome(limiters, &o)).await;
    }
    held.stop_running();
    if shared.abort.is_cancelled() {
        Box::pin(rare::hand_back(shared, job, c.d)).await;
        return Err(Exit::Leave);
    }
    if started.running.stopped_for() == Some(StopReason::LeaseLost) {
        // Another worker owns the task (and this entry) now: record nothing, ack nothing.
        return Err(Exit::Leave);
    }
    if o.error_class == Some(ErrorClass::RateLimit) && o.status != Status::Success {
        // A rate-limit answer is not the task's fault: it waits out the backoff at the same
        // attempt, until it has waited MAX_RATE_LIMIT_WAIT in all.
        let said = o.error.as_deref().unwrap_or("").lines().next().unwrap_or("");
        info!(answer = %zo_common::text::escape_line(&said.chars().take(200).collect::<String>()), "the model answered with a rate limit");
        let due = shared.limits.backoff_until(&own.name).unwrap_or_else(|| now_ms() + 10_000);
        let wait = Duration::from_millis(due.saturating_sub(now_ms()));
        if Box::pin(defer(&shared.limits, job, c.d, due, wait.max(Duration::from_millis(1)), "rate_limit")).await {
            return Err(Exit::Leave);
        }
    }
    Ok(Ended { outcome: o, started_ms: started.started_ms, rate_wait: started.rate_wait })
}

/// Records the result, or schedules the retry its policy asks for, then dead-letters a task
/// that ended for good, gives back the job's slots and acknowledges the entry (not when the
/// result could not be stored: the job stays pending and runs again).
pub(super) async fn finish(c: &Ctx<'_>, mut held: Held<'_>, ended: Ended) {
    let (shared, job) = (c.shared, c.job);
    let Ended { outcome, started_ms, rate_wait } = ended;
    let cost_nanos = job.spec.price.map(|p| outcome.cost(p));
    let result = TaskResult {
        outcome,
        attempt: job.attempt,
        worker: shared.id.clone(),
        started_ms,
        finished_ms: now_ms(),
        queue_wait_ms: started_ms.saturating_sub(c.d.enqueued_ms()),
        reclaimed: c.takeover,
        cost_nanos,
        rate_wait_ms: rate_wait.as_millis() as u64,
    };
    let o = &result.outcome;
    let retry = &job.spec.retry;
    let retry_in = match o.error_class {
        Some(class) if o.status != Status::Success && class != ErrorClass::Poison && retry.retries(class, job.attempt) => {
            Some(retry.delay(job.attempt, rand::random::<f64>()))
        }
        _ => None,
    };
    log_end(&result, retry_in);
    let recorded = rare::record(shared, job, &result, retry_in).await;
    if let (Some(Recorded::Ok { finished: true }), Some(dir)) = (&recorded, &shared.archive) {
        rare::archive_finished(shared, &job.run_id, dir.clone());
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
        Box::pin(rare::dead_letter_task(shared, job, &result, &reason)).await;
    }
    held.free_slot();
    if recorded.is_some() {
        crate::metrics::task_done(c.instance, &result, retry_in.is_some());
        shared.batch.ack_entry(c.d, &shared.finished).await;
    }
}

/// One line for how the attempt ended.
fn log_end(result: &TaskResult, retry_in: Option<Duration>) {
    let o = &result.outcome;
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
}
