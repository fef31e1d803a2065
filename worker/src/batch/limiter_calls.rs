//! The batcher's limiter calls, as a task makes them: admissions by rate limiters, shared
//! slots taken and given back, and what the limiters' last answers allow spent here without
//! a call ([`super::limits`] batches and sends the rest).

use std::time::Duration;

use tokio::time::Instant;
use tracing::debug;
use zo_common::store::Limiter;

use super::error::BatchError;
use super::limits::{Held, LimitOp};
use super::{Batcher, Op};

impl Batcher {
    /// See [`Store::limit_step`]: how long `job` (`RUN|IDX|ATTEMPT`) waits for `limiter`.
    pub async fn admit(&self, limiter: &Limiter, job: String) -> Result<Duration, BatchError> {
        self.ask(|reply| Op::Limit(LimitOp::Admit { limiter: limiter.clone(), job, reply })).await
    }

    /// [`Batcher::admit`] by several limiters at once (all in the same batch): per limiter,
    /// in order. A start banked by an earlier answer admits at once; `job` names the job for
    /// the others.
    pub async fn admit_all(&self, limiters: &[Limiter], job: impl Fn() -> String) -> Vec<Result<Duration, BatchError>> {
        let now = Instant::now();
        let banked: Vec<bool> = {
            let mut local = self.local.lock().expect("limiter state lock");
            limiters.iter().map(|l| local.spend_bank(&l.name, now)).collect()
        };
        let mut waiting = Vec::with_capacity(limiters.len());
        for (l, banked) in limiters.iter().zip(banked) {
            if banked {
                waiting.push(None);
                continue;
            }
            let (reply, rx) = tokio::sync::oneshot::channel();
            let sent = self.tx.send(Op::Limit(LimitOp::Admit { limiter: l.clone(), job: job(), reply }));
            waiting.push(Some(sent.ok().map(|_| rx)));
        }
        let mut out = Vec::with_capacity(waiting.len());
        for w in waiting {
            out.push(match w {
                None => Ok(Duration::ZERO),
                Some(Some(rx)) => rx.await.map_err(|_| BatchError::ShuttingDown).and_then(|r| r),
                Some(None) => Err(BatchError::ShuttingDown),
            });
        }
        out
    }

    /// Admits a job by every one of `limiters` from the starts banked here and takes a slot
    /// given back and held here for `slot`'s limiter (if asked), all or nothing: true when
    /// they did (nothing is sent), false when something must be asked of Redis (nothing was
    /// spent).
    pub fn try_local(&self, limiters: &[Limiter], slot: Option<&str>) -> bool {
        let now = Instant::now();
        let mut local = self.local.lock().expect("limiter state lock");
        let banked = limiters.iter().all(|l| local.banked(&l.name, now) > 0);
        if !banked || slot.is_some_and(|s| !local.may_take_held(s, now)) {
            return false;
        }
        for l in limiters {
            local.spend_bank(&l.name, now);
        }
        if let Some(s) = slot {
            local.take_held(s, now);
        }
        true
    }

    /// Takes one of the limiter's `cap` shared slots for one of this worker's tasks until
    /// `until_ms`: one given back and held here when [`Local`] allows, else in the next
    /// batch's [`Store::limit_step`]; false when all are held.
    pub async fn take_shared_slot(&self, limiter: &str, cap: u32, until_ms: u64) -> Result<bool, BatchError> {
        if self.local.lock().expect("limiter state lock").take_held(limiter, Instant::now()) {
            return Ok(true);
        }
        self.ask(|reply| Op::Limit(LimitOp::Take { limiter: limiter.to_string(), cap, until_ms, reply })).await
    }

    /// Gives a shared slot back: held here for this worker's next task that asks, and sent
    /// with the next take from its limiter or after [`HOLD_GIVES`]; at once while tasks wait
    /// for the limiter's slots (the batch then brings them forward). Nothing to wait for.
    /// Should the batch be gone, the slot frees itself when this worker's leases lapse.
    pub fn give_shared_slot(&self, limiter: &str, cap: u32) {
        let held = self.local.lock().expect("limiter state lock").hold_give(limiter, cap, Instant::now());
        let op = match held {
            Held::Already => return,
            Held::First => LimitOp::Wake,
            Held::No => LimitOp::Give { limiter: limiter.to_string(), cap },
        };
        if self.tx.send(Op::Limit(op)).is_err() {
            debug!(limiter, "the worker is shutting down: a shared slot frees itself when its lease lapses");
        }
    }
}
