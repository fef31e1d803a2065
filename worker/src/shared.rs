//! What every loop and job of the worker shares ([`Shared`]) and what it knows of a job in
//! progress ([`RunningJob`], [`StopReason`]). Built once by `service::run`; it imports only
//! the layers below it (the batcher, the instances' limits, the task context, Redis health),
//! never the loops or the job that use it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{watch, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use zo_common::store::Store;

use crate::batch::Batcher;
use crate::limits::Limits;
use crate::task::TaskContext;

/// What every loop and job of the worker shares.
pub(crate) struct Shared {
    pub store: Store,
    /// The hot path's Redis steps (mark, record, ack), batched.
    pub batch: Batcher,
    pub id: String,
    pub ctx: TaskContext,
    /// Fires when running tasks must stop and be handed back (drain deadline, second signal).
    pub abort: CancellationToken,
    /// Fires when the worker's background loops stop (after the drain): retry loops of jobs
    /// give up then.
    pub finished: CancellationToken,
    pub lease: Duration,
    pub max_deliveries: u32,
    /// Jobs running on this worker, for lease renewal and cancel checks.
    pub running: Mutex<HashMap<(String, u32), RunningJob>>,
    /// Task slots per instance.
    pub slots: HashMap<String, Arc<Semaphore>>,
    /// Slots the read loop of each instance holds while it waits for new jobs: free for the
    /// reclaim loop's count (reclaimed jobs get them as soon as the read returns).
    pub reading: HashMap<String, AtomicUsize>,
    pub tracker: TaskTracker,
    /// Readiness and (re)start count of each supervised CCR instance; jobs of an instance are
    /// taken only while it is ready.
    pub ready: HashMap<String, (watch::Receiver<bool>, Arc<AtomicU32>)>,
    /// Rate limits, shared slots and quotas: what jobs are admitted through.
    pub limits: Limits,
    /// The execution host passed the start-up checks (false while it does not answer).
    pub host_ready: watch::Receiver<bool>,
    /// Where the runs this worker finishes are archived (`archive:` in its config).
    pub archive: Option<std::path::PathBuf>,
    /// Says once when Redis fails the worker and once when it is back.
    pub redis: Arc<crate::redis_health::RedisHealth>,
}

impl Shared {
    /// Waits until the execution host answers and the instance's CCR is ready (at once when
    /// this worker runs no CCR). False when shutdown came first.
    pub async fn wait_ready(&self, instance: &str, shutdown: &CancellationToken) -> bool {
        let mut host = self.host_ready.clone();
        if !*host.borrow() {
            tokio::select! {
                r = host.wait_for(|v| *v) => if r.is_err() { return false },
                _ = shutdown.cancelled() => return false,
            }
        }
        let Some((rx, _)) = self.ready.get(instance) else { return true };
        let mut rx = rx.clone();
        if *rx.borrow() {
            return true;
        }
        tokio::select! {
            r = rx.wait_for(|v| *v) => r.is_ok(),
            _ = shutdown.cancelled() => false,
        }
    }

    /// Slots of an instance not held by a running job: free ones and those the read loop
    /// holds while it waits.
    pub fn idle_slots(&self, instance: &str) -> usize {
        self.slots[instance].available_permits() + self.reading[instance].load(Ordering::SeqCst)
    }

    /// The instance's CCR (re)start count and whether it is ready now (`None`: no CCR here).
    pub fn ccr_state(&self, instance: &str) -> Option<(u32, bool)> {
        self.ready.get(instance).map(|(rx, gen)| (gen.load(Ordering::SeqCst), *rx.borrow()))
    }
}

/// Why a running job was told to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StopReason {
    Cancelled,
    LeaseLost,
}

/// A job in progress on this worker.
#[derive(Clone)]
pub(crate) struct RunningJob {
    /// The instance it runs on (for the heartbeat's count of jobs in flight).
    pub instance: String,
    pub stream: String,
    pub entry_id: String,
    pub attempt: u32,
    /// Stops the execution (user cancel or lost lease; see `why`).
    pub stop: CancellationToken,
    /// The first reason it was told to stop (set once).
    why: Arc<std::sync::OnceLock<StopReason>>,
}

impl RunningJob {
    pub fn new(instance: String, stream: String, entry_id: String, attempt: u32, stop: CancellationToken) -> Self {
        RunningJob { instance, stream, entry_id, attempt, stop, why: Arc::default() }
    }

    /// Stops the job; the first reason given sticks.
    pub fn stop(&self, why: StopReason) {
        let _ = self.why.set(why);
        self.stop.cancel();
    }

    pub fn stopped_for(&self) -> Option<StopReason> {
        self.why.get().copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_stop_reason_sticks() {
        let j = RunningJob::new("i".into(), "s".into(), "1-0".into(), 1, CancellationToken::new());
        assert_eq!(j.stopped_for(), None);
        j.stop(StopReason::LeaseLost);
        j.stop(StopReason::Cancelled);
        assert_eq!(j.stopped_for(), Some(StopReason::LeaseLost));
        assert!(j.stop.is_cancelled());
    }
}
