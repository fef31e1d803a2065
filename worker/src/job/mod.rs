//! One delivery, from stream entry to acknowledgement, as a pipeline of stages: decode the
//! entry → mark the task running (batched, atomic; the limiters asked beside it) → admit it
//! (rate limits, shared slots, quotas) → execute (templates rendered, then command and agent,
//! their checks judged by `task`) → judge what the outcome means for the job (a crashed CCR,
//! a rate-limit answer, a lost lease, shutdown) → record the result or schedule its retry
//! (batched, atomic) → acknowledge. Each stage returns what the next one needs, or an [`Exit`]
//! that ends the job early; whatever the job holds is held by a [`Held`] guard and released
//! on every exit path, early returns and panics included.
//!
//! Where the coming stages go (ARCHITECTURE.md, "Where the next features go"): a result
//! cache is looked up between admit and execute (before admit for a task that skips its
//! command), an output transform runs in judge, a fallback instance is chosen where the retry
//! is decided (`stages::finish`), and live output is a sink `execute` hands the executor.

mod context;
mod held;
mod rare;
mod stages;

use std::sync::Arc;

use tokio::sync::OwnedSemaphorePermit;
use tracing::{warn, Instrument};
use zo_common::store::Delivery;

use crate::shared::Shared;
use context::{Ctx, Exit, Next};
use held::Held;
use stages::{Admitted, Marked};

/// Handles one delivery. `slot` is the task slot the read loop took for it (a reclaimed job
/// waits for one); `takeover` when it was reclaimed from another consumer.
pub(crate) async fn handle(shared: Arc<Shared>, instance: String, d: Delivery, slot: Option<OwnedSemaphorePermit>, takeover: bool) {
    let job = match d.job(&instance) {
        Ok(j) => j,
        Err(reason) => {
            warn!(entry = %d.id, instance = %instance, "dead-lettering a malformed job: {reason}");
            Box::pin(rare::dead_letter_entry(&shared, &d, &reason)).await;
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
    let held = Held::new(&shared, slot);
    let c = Ctx { shared: &shared, instance: &instance, d: &d, job: &job, takeover };
    match run(&c, held).instrument(span.clone()).await {
        Ok(()) | Err(Exit::Leave) => {}
        Err(Exit::Ack) => shared.batch.ack_entry(&d, &shared.finished).instrument(span).await,
        Err(Exit::DeadLetter(reason)) => Box::pin(rare::dead_letter_entry(&shared, &d, &reason)).instrument(span).await,
    }
}

/// The stages in order.
async fn run(c: &Ctx<'_>, mut held: Held<'_>) -> Next<()> {
    let limiters = c.shared.limits.limiters(c.instance, c.job);
    let ended = match stages::mark(c, &limiters).await? {
        Marked::Poison(outcome) => stages::Ended::without_start(outcome),
        Marked::Run(asked) => {
            let admitted = stages::admit(c, &limiters, asked, &mut held).await?;
            let ccr_before = c.shared.ccr_state(c.instance);
            let (started, outcome, executed) = match admitted {
                Admitted::Go(started) => {
                    let outcome = stages::execute(c, &started.running).await;
                    (started, outcome, true)
                }
                Admitted::Refused { outcome, started } => (started, *outcome, false),
            };
            stages::judge(c, &limiters, &mut held, started, ccr_before, outcome, executed).await?
        }
    };
    stages::finish(c, held, ended).await;
    Ok(())
}
