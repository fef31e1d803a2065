//! What a job holds while it runs — its task slot, its place among the worker's running jobs
//! (lease renewal, cancel checks), a slot of its instance's `max_concurrent` — held by one
//! guard that gives everything back when dropped, on every exit path, panics included.

use tokio::sync::OwnedSemaphorePermit;

use crate::limits::SharedSlot;
use crate::shared::{RunningJob, Shared};

/// What a job holds while it runs; dropping it gives everything back.
pub(super) struct Held<'a> {
    shared: &'a Shared,
    slot: Option<OwnedSemaphorePermit>,
    running: Option<(String, u32)>,
    /// A slot of the instance's `max_concurrent` (shared by every worker).
    shared_slot: Option<SharedSlot>,
}

impl<'a> Held<'a> {
    pub(super) fn new(shared: &'a Shared, slot: OwnedSemaphorePermit) -> Self {
        Held { shared, slot: Some(slot), running: None, shared_slot: None }
    }

    /// Registers the job among the worker's running jobs (its lease is renewed from there).
    pub(super) fn start(&mut self, key: (String, u32), job: RunningJob) {
        self.shared.running.lock().expect("running lock").insert(key.clone(), job);
        self.running = Some(key);
    }

    /// The execution is over: no more renewals.
    pub(super) fn stop_running(&mut self) {
        if let Some(key) = self.running.take() {
            self.shared.running.lock().expect("running lock").remove(&key);
        }
    }

    /// The task is done with its slot once its result is stored.
    pub(super) fn free_slot(&mut self) {
        self.slot = None;
        self.give_shared_slot();
    }

    /// Holds a shared slot (counted for the lease loop, which renews it, until given back).
    pub(super) fn hold_shared_slot(&mut self, slot: SharedSlot) {
        self.shared.limits.hold(&slot);
        self.shared_slot = Some(slot);
    }

    /// Gives the shared slot back (sent to the batch, nothing awaited: this runs in `drop` too).
    pub(super) fn give_shared_slot(&mut self) {
        let Some(slot) = self.shared_slot.take() else { return };
        self.shared.limits.release(slot);
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.stop_running();
        self.give_shared_slot();
    }
}
