//! What this worker knows of the limits, behind one handle ([`Limits`]): the catalog's limits
//! of each served instance, the backoffs rate-limit answers started, the shared slots its
//! running tasks hold, and the store and batcher the limiter steps go through. A job admits,
//! notes its outcome and releases what it held through it; nothing here needs the rest of
//! the worker.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use zo_common::model::{now_ms, Outcome};
use zo_common::store::{Job, Limiter, Store};

use super::instance::{InstanceLimits, SharedSlot};
use super::rates;
use crate::batch::Batcher;

pub struct Limits {
    pub(super) store: Store,
    pub(super) batch: Batcher,
    /// What the catalog says of each served instance's limits (worked out once).
    instances: HashMap<String, InstanceLimits>,
    /// Backoffs after rate-limit answers, by limiter name (Unix ms they end): what this
    /// worker's own tasks saw, and what upkeep reads from Redis for every served instance.
    backoffs: Mutex<HashMap<String, u64>>,
    /// How many shared concurrency slots (the catalog's `max_concurrent`) running jobs hold,
    /// per limiter, renewed with their leases.
    held: Mutex<HashMap<String, u32>>,
    /// This worker's consumer name (a handed-back task names it).
    pub(super) worker: String,
    pub(super) lease: Duration,
    /// Fires when the worker's background loops stop: acknowledging stops retrying then.
    pub(super) finished: CancellationToken,
}

/// The limiters a job must be admitted by, worked out once per job.
pub struct Limiters<'a> {
    /// The instance's own limiter (told of rate-limit answers even when it limits nothing).
    pub own: &'a Limiter,
    /// Those that must admit it: the instance's when the catalog limits it, the run's.
    pub all: Vec<Limiter>,
    /// Anything to ask before it starts (a limiter, or a shared slot of `max_concurrent`).
    pub asks: bool,
}

impl Limits {
    pub fn new(
        store: Store,
        batch: Batcher,
        instances: HashMap<String, InstanceLimits>,
        worker: String,
        lease: Duration,
        finished: CancellationToken,
    ) -> Self {
        Limits { store, batch, instances, backoffs: Mutex::default(), held: Mutex::default(), worker, lease, finished }
    }

    /// What the catalog says of a served instance.
    pub fn of(&self, instance: &str) -> &InstanceLimits {
        &self.instances[instance]
    }

    /// The limiters a job of `instance` must be admitted by.
    pub fn limiters(&self, instance: &str, job: &Job) -> Limiters<'_> {
        let limits = self.of(instance);
        let all = rates::limiters(&limits.own, job, instance);
        let asks = limits.shared_cap().is_some() || !all.is_empty();
        Limiters { own: &limits.own, all, asks }
    }

    /// The end of a backoff known for limiter `name`, if it has not passed.
    pub fn backoff_until(&self, name: &str) -> Option<u64> {
        let until = self.backoffs.lock().expect("backoffs lock").get(name).copied()?;
        Some(until).filter(|&u| u > now_ms())
    }

    /// Notes a backoff (the later end wins).
    pub fn note_backoff(&self, name: &str, until: u64) {
        let mut b = self.backoffs.lock().expect("backoffs lock");
        let e = b.entry(name.to_string()).or_insert(0);
        *e = (*e).max(until);
    }

    /// After a task that ran: tokens debited, a rate-limit answer reported to every limiter
    /// and the backoff it started noted here.
    pub async fn note_outcome(&self, limiters: &Limiters<'_>, outcome: &Outcome) {
        if let Some(until) = rates::after(&self.store, &limiters.all, limiters.own, outcome).await {
            self.note_backoff(&limiters.own.name, until);
        }
    }

    /// Counts a shared slot a running job holds (renewed with the leases until released).
    pub fn hold(&self, slot: &SharedSlot) {
        self.count(&slot.limiter, 1);
    }

    /// Gives a held shared slot back; the batch brings forward the tasks waiting for it.
    pub fn release(&self, slot: SharedSlot) {
        self.count(&slot.limiter, -1);
        self.give_back(slot);
    }

    /// Gives back a slot that was taken but never held (the task will not run).
    pub(super) fn give_back(&self, slot: SharedSlot) {
        self.batch.give_shared_slot(&slot.limiter, slot.cap);
    }

    /// The shared slots running jobs hold, per limiter (for the lease loop's renewals).
    pub fn held(&self) -> Vec<(String, u32)> {
        self.held.lock().expect("slots lock").iter().filter(|(_, &n)| n > 0).map(|(l, &n)| (l.clone(), n)).collect()
    }

    fn count(&self, limiter: &str, d: i32) {
        let mut held = self.held.lock().expect("slots lock");
        match held.get_mut(limiter) {
            Some(n) => *n = n.saturating_add_signed(d),
            None => {
                held.insert(limiter.to_string(), 0u32.saturating_add_signed(d));
            }
        }
    }
}
