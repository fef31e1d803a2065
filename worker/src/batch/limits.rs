//! The limiter steps of the hot path, batched like the others: admissions by a rate limiter
//! and the shared slots of an instance's `max_concurrent` (taken and given back), gathered
//! per limiter into one script call (`LIMIT_STEP`) per batch. With limits set but not
//! binding, a task costs no extra round trip of its own.

use std::collections::HashMap;
use std::time::Duration;

use tokio::task::JoinSet;
use tracing::{debug, warn};
use zo_common::store::{Conn, LimitStep, Limiter, Store};

use super::{BatchError, Batcher, Op, Reply};

pub(crate) enum LimitOp {
    Admit {
        limiter: Limiter,
        job: String,
        reply: Reply<Duration>,
    },
    Take {
        limiter: String,
        cap: u32,
        member: String,
        until_ms: u64,
        reply: Reply<bool>,
    },
    /// Nobody waits for a give: the batch brings the tasks waiting for the freed slots
    /// forward itself.
    Give {
        limiter: String,
        cap: u32,
        member: String,
    },
}

impl LimitOp {
    pub(super) fn fail(self, why: BatchError) {
        match self {
            LimitOp::Admit { reply, .. } => drop(reply.send(Err(why))),
            LimitOp::Take { reply, .. } => drop(reply.send(Err(why))),
            LimitOp::Give { limiter, .. } => {
                debug!(limiter = %limiter, "could not give a shared slot back ({why}); it frees itself when its lease lapses")
            }
        }
    }
}

impl Batcher {
    /// See [`Store::admit`]: how long `job` (`RUN|IDX|ATTEMPT`) waits for `limiter`.
    pub async fn admit(&self, limiter: &Limiter, job: String) -> Result<Duration, BatchError> {
        self.ask(|reply| Op::Limit(LimitOp::Admit { limiter: limiter.clone(), job, reply })).await
    }

    /// [`Batcher::admit`] by several limiters at once (all in the same batch): per limiter,
    /// in order.
    pub async fn admit_all(&self, limiters: &[Limiter], job: &str) -> Vec<Result<Duration, BatchError>> {
        let mut waiting = Vec::with_capacity(limiters.len());
        for l in limiters {
            let (reply, rx) = tokio::sync::oneshot::channel();
            let sent = self.tx.send(Op::Limit(LimitOp::Admit { limiter: l.clone(), job: job.to_string(), reply }));
            waiting.push(sent.ok().map(|_| rx));
        }
        let mut out = Vec::with_capacity(waiting.len());
        for w in waiting {
            out.push(match w {
                Some(rx) => rx.await.map_err(|_| BatchError::ShuttingDown).and_then(|r| r),
                None => Err(BatchError::ShuttingDown),
            });
        }
        out
    }

    /// Takes one of the limiter's `cap` shared slots for `member` (`RUN|IDX|WORKER`) until
    /// `until_ms` in the next batch's [`Store::limit_step`]; false when all are held.
    pub async fn take_shared_slot(&self, limiter: &str, cap: u32, member: String, until_ms: u64) -> Result<bool, BatchError> {
        self.ask(|reply| Op::Limit(LimitOp::Take { limiter: limiter.to_string(), cap, member, until_ms, reply })).await
    }

    /// Gives a shared slot back in the next batch's [`Store::limit_step`], which
    /// then brings the tasks waiting for it forward; nothing to wait for. Should the batch
    /// be gone, the slot frees itself when its lease lapses.
    pub fn give_shared_slot(&self, limiter: &str, cap: u32, member: String) {
        if self.tx.send(Op::Limit(LimitOp::Give { limiter: limiter.to_string(), cap, member })).is_err() {
            debug!(limiter, "the worker is shutting down: a shared slot frees itself when its lease lapses");
        }
    }
}

/// What one batch asks of one limiter.
#[derive(Default)]
struct Step {
    /// The limiter with its rates (from an admission; slots alone need only its name).
    limiter: Option<Limiter>,
    cap: u32,
    until_ms: u64,
    gives: Vec<String>,
    takes: Vec<(String, Reply<bool>)>,
    admits: Vec<(String, Reply<Duration>)>,
}

/// Spawns one part per limiter: its gives, takes and admissions in one script call.
pub(super) fn spawn(ops: Vec<LimitOp>, conn: &Conn, store: &Store, parts: &mut JoinSet<bool>) {
    let mut steps: HashMap<String, Step> = HashMap::new();
    for op in ops {
        match op {
            LimitOp::Admit { limiter, job, reply } => {
                let step = steps.entry(limiter.name.clone()).or_default();
                step.admits.push((job, reply));
                step.limiter.get_or_insert(limiter);
            }
            LimitOp::Take { limiter, cap, member, until_ms, reply } => {
                let step = steps.entry(limiter).or_default();
                step.cap = step.cap.max(cap);
                step.until_ms = step.until_ms.max(until_ms);
                step.takes.push((member, reply));
            }
            LimitOp::Give { limiter, cap, member } => {
                let step = steps.entry(limiter).or_default();
                step.cap = step.cap.max(cap);
                step.gives.push(member);
            }
        }
    }
    for (name, step) in steps {
        let (mut c, store) = (conn.fork(), store.clone());
        parts.spawn(async move {
            let Step { limiter, cap, until_ms, gives, takes, admits } = step;
            let limiter = limiter.unwrap_or(Limiter { name, rate: Default::default() });
            let (members, take_replies): (Vec<String>, Vec<_>) = takes.into_iter().unzip();
            let (jobs, admit_replies): (Vec<String>, Vec<_>) = admits.into_iter().unzip();
            let (g, m, j) = (refs(&gives), refs(&members), refs(&jobs));
            match store.limit_step(&mut c, &limiter, cap, until_ms, &g, &m, &j).await {
                Ok(LimitStep { waits, taken, waiters }) => {
                    for (reply, w) in admit_replies.into_iter().zip(waits) {
                        let _ = reply.send(Ok(w));
                    }
                    for (reply, t) in take_replies.into_iter().zip(taken) {
                        let _ = reply.send(Ok(t));
                    }
                    if !waiters.is_empty() {
                        crate::limits::wake(&store, &mut c, &waiters).await;
                    }
                    false
                }
                Err(e) => {
                    if !gives.is_empty() {
                        warn!(limiter = %limiter.name, "could not give shared slots back ({e}); they free themselves when their leases lapse");
                    }
                    let broken = e.is_infrastructure();
                    let why = BatchError::Store(std::sync::Arc::new(e));
                    for reply in admit_replies {
                        let _ = reply.send(Err(why.clone()));
                    }
                    for reply in take_replies {
                        let _ = reply.send(Err(why.clone()));
                    }
                    broken
                }
            }
        });
    }
}

fn refs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}
