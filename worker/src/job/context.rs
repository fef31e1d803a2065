//! What every stage of a job reads ([`Ctx`]) and how a stage ends the job early ([`Exit`]).

use zo_common::store::{Delivery, Job};

use crate::shared::Shared;

/// What every stage of one job reads.
pub(super) struct Ctx<'a> {
    pub shared: &'a Shared,
    pub instance: &'a str,
    pub d: &'a Delivery,
    pub job: &'a Job,
    /// Reclaimed from another consumer.
    pub takeover: bool,
}

/// How a job ends before its result is recorded.
pub(super) enum Exit {
    /// Nothing more to do here: the entry stays pending (Redis failed, so it is delivered
    /// again) or is another's to acknowledge (a live lease, a lost lease), or a stage already
    /// handed the task back.
    Leave,
    /// Done with the entry without a result: acknowledge it (the run parked the task, or the
    /// delivery is stale).
    Ack,
    /// The entry names no task that can run: dead-letter it, then acknowledge it.
    DeadLetter(String),
}

/// What a stage gives the next one, or how the job ends.
pub(super) type Next<T> = Result<T, Exit>;
