//! The limiter steps of the hot path, batched like the others: admissions by a rate limiter
//! and the shared slots of an instance's `max_concurrent`, gathered per limiter into one
//! script call each (`ADMIT`, `NS_SLOTS`). With limits set but not binding, a task costs no
//! extra round trip of its own.

use std::collections::HashMap;
use std::time::Duration;

use tokio::task::JoinSet;
use zo_common::store::{Conn, Limiter, Store};

use super::{answer_error, BatchError, Batcher, Op, Reply};

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
    /// The waiters the freed slots are for go to the first give of a batch.
    Give {
        limiter: String,
        cap: u32,
        member: String,
        reply: Reply<Vec<String>>,
    },
}

impl LimitOp {
    pub(super) fn fail(self, why: BatchError) {
        match self {
            LimitOp::Admit { reply, .. } => drop(reply.send(Err(why))),
            LimitOp::Take { reply, .. } => drop(reply.send(Err(why))),
            LimitOp::Give { reply, .. } => drop(reply.send(Err(why))),
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

    /// See [`Store::take_shared_slots`].
    pub async fn take_shared_slot(&self, limiter: &str, cap: u32, member: String, until_ms: u64) -> Result<bool, BatchError> {
        self.ask(|reply| Op::Limit(LimitOp::Take { limiter: limiter.to_string(), cap, member, until_ms, reply })).await
    }

    /// See [`Store::free_shared_slots`]: the waiters to bring forward.
    pub async fn give_shared_slot(&self, limiter: &str, cap: u32, member: String) -> Result<Vec<String>, BatchError> {
        self.ask(|reply| Op::Limit(LimitOp::Give { limiter: limiter.to_string(), cap, member, reply })).await
    }
}

/// Spawns one part per limiter and kind.
pub(super) fn spawn(ops: Vec<LimitOp>, conn: &Conn, store: &Store, parts: &mut JoinSet<bool>) {
    type Admits = (Limiter, Vec<(String, Reply<Duration>)>);
    type Takes = (u64, Vec<(String, Reply<bool>)>);
    type Gives = Vec<(String, Reply<Vec<String>>)>;
    let mut admits: HashMap<String, Admits> = HashMap::new();
    let mut takes: HashMap<(String, u32), Takes> = HashMap::new();
    let mut gives: HashMap<(String, u32), Gives> = HashMap::new();
    for op in ops {
        match op {
            LimitOp::Admit { limiter, job, reply } => {
                admits.entry(limiter.name.clone()).or_insert_with(|| (limiter, Vec::new())).1.push((job, reply))
            }
            LimitOp::Take { limiter, cap, member, until_ms, reply } => {
                let e = takes.entry((limiter, cap)).or_insert((until_ms, Vec::new()));
                e.0 = e.0.max(until_ms);
                e.1.push((member, reply));
            }
            LimitOp::Give { limiter, cap, member, reply } => gives.entry((limiter, cap)).or_default().push((member, reply)),
        }
    }
    for (_, (limiter, list)) in admits {
        let (mut c, store) = (conn.fork(), store.clone());
        parts.spawn(async move {
            let (jobs, replies): (Vec<String>, Vec<_>) = list.into_iter().unzip();
            let refs: Vec<&str> = jobs.iter().map(String::as_str).collect();
            match store.admit(&mut c, &limiter, &refs).await {
                Ok(waits) => {
                    for (reply, w) in replies.into_iter().zip(waits) {
                        let _ = reply.send(Ok(w));
                    }
                    false
                }
                Err(e) => answer_error(replies, e),
            }
        });
    }
    for ((limiter, cap), (until_ms, list)) in takes {
        let (mut c, store) = (conn.fork(), store.clone());
        parts.spawn(async move {
            let (members, replies): (Vec<String>, Vec<_>) = list.into_iter().unzip();
            let refs: Vec<&str> = members.iter().map(String::as_str).collect();
            match store.take_shared_slots(&mut c, &limiter, cap, &refs, until_ms).await {
                Ok(taken) => {
                    for (reply, t) in replies.into_iter().zip(taken) {
                        let _ = reply.send(Ok(t));
                    }
                    false
                }
                Err(e) => answer_error(replies, e),
            }
        });
    }
    for ((limiter, cap), list) in gives {
        let (mut c, store) = (conn.fork(), store.clone());
        parts.spawn(async move {
            let (members, replies): (Vec<String>, Vec<_>) = list.into_iter().unzip();
            let refs: Vec<&str> = members.iter().map(String::as_str).collect();
            match store.free_shared_slots(&mut c, &limiter, cap, &refs).await {
                Ok(mut waiters) => {
                    for reply in replies {
                        let _ = reply.send(Ok(std::mem::take(&mut waiters)));
                    }
                    false
                }
                Err(e) => answer_error(replies, e),
            }
        });
    }
}
