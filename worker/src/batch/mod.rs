//! Group commit for the hot path. Every job takes three Redis steps — mark running, record
//! the result, acknowledge the entry — and with many jobs in flight they arrive together. One
//! task collects whatever has queued up and sends it as one script call per run (marks, then
//! results, each still one atomic step) and one XACK/XDEL per stream, concurrently over one
//! multiplexed connection: N jobs cost a few round trips instead of 3N pool checkouts and 3N
//! calls. Order per job is unchanged: a job asks for its ack only after its result is stored.
//! Released dependents are moved from the run's outbox right after the batch that freed them.
//! Rate-limit admissions and shared slots go the same way, one script call for a batch's
//! limiters ([`limits`]).

use std::collections::HashMap;
use std::time::Duration;

use std::sync::Arc;

use crate::redis_health::RedisHealth;
use crate::waiting::{backoff, sleep_or_shutdown};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};
use zo_common::store::{Claim, Conn, Delivery, MarkRunning, Recorded, Store, StoreError, ToMark, ToRecord};

mod error;
mod limiter_calls;
mod limits;

pub use error::BatchError;
use error::Reply;

/// How often acknowledging an entry is tried.
const ACK_TRIES: u32 = 6;

/// At most this many steps go into one batch; the rest wait for the next.
const MAX_BATCH: usize = 1024;

enum Op {
    Mark {
        run: String,
        item: ToMark,
        reply: Reply<MarkRunning>,
    },
    Record {
        run: String,
        item: ToRecord,
        reply: Reply<Recorded>,
    },
    Ack {
        stream: String,
        id: String,
        reply: Reply<()>,
    },
    /// The limiter steps of [`limits`]: admissions and shared slots.
    Limit(limits::LimitOp),
}

/// The claim every mark of this worker uses.
#[derive(Clone)]
pub struct ClaimInfo {
    pub worker: String,
    pub lease: Duration,
    pub max_deliveries: u32,
}

/// Handle for sending steps to the batching task.
#[derive(Clone)]
pub struct Batcher {
    tx: mpsc::UnboundedSender<Op>,
    local: limits::SharedLocal,
}

impl Batcher {
    /// Starts the batching task. It stops taking steps when `stop` fires, finishes those it
    /// has, and returns.
    pub fn start(
        store: Store,
        claim: ClaimInfo,
        health: Arc<RedisHealth>,
        stop: CancellationToken,
    ) -> (Batcher, impl std::future::Future<Output = ()>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let local = limits::SharedLocal::default();
        (Batcher { tx, local: local.clone() }, run(rx, store, claim, local, health, stop))
    }

    async fn ask<T>(&self, op: impl FnOnce(Reply<T>) -> Op) -> Result<T, BatchError> {
        let (reply, rx) = oneshot::channel();
        self.tx.send(op(reply)).map_err(|_| BatchError::ShuttingDown)?;
        rx.await.map_err(|_| BatchError::ShuttingDown)?
    }

    /// See [`Store::mark_running`].
    pub async fn mark(&self, run: &str, item: ToMark) -> Result<MarkRunning, BatchError> {
        self.ask(|reply| Op::Mark { run: run.to_string(), item, reply }).await
    }

    /// See [`Store::record_results`]; dependents it released are enqueued right after.
    pub async fn record(&self, run: &str, item: ToRecord) -> Result<Recorded, BatchError> {
        self.ask(|reply| Op::Record { run: run.to_string(), item, reply }).await
    }

    /// Acknowledges and deletes a handled entry.
    pub async fn ack(&self, stream: &str, id: &str) -> Result<(), BatchError> {
        self.ask(|reply| Op::Ack { stream: stream.to_string(), id: id.to_string(), reply }).await
    }

    /// Acknowledges a delivery, retrying while Redis is unreachable (with the backoff, until
    /// `finished` fires); one that still fails is left pending, and its redelivery is dropped
    /// as a duplicate.
    pub async fn ack_entry(&self, d: &Delivery, finished: &CancellationToken) {
        for attempt in 0..ACK_TRIES {
            match self.ack(&d.stream, &d.id).await {
                Ok(()) => return,
                Err(e) if e.is_transient() => {
                    if sleep_or_shutdown(backoff(attempt), finished).await {
                        break;
                    }
                }
                Err(_) => break,
            }
        }
        crate::metrics::redis_error("ack");
        warn!(entry = %d.id, "could not acknowledge; a redelivery will be dropped as a duplicate");
    }
}

async fn run(
    mut rx: mpsc::UnboundedReceiver<Op>,
    store: Store,
    claim: ClaimInfo,
    local: limits::SharedLocal,
    health: Arc<RedisHealth>,
    stop: CancellationToken,
) {
    let mut conn: Option<Conn> = None;
    let mut closed = false;
    loop {
        let deadline = local.lock().expect("limiter state lock").deadline();
        // `None`: held gives are due (or, with `ended`, every step is done: send what is held).
        let (first, ended) = tokio::select! {
            biased;
            op = rx.recv() => match op {
                Some(op) => (Some(op), false),
                None if deadline.is_none() => return,
                None => (None, true),
            },
            _ = stop.cancelled(), if !closed => {
                // No new steps; those already sent are still carried out.
                rx.close();
                closed = true;
                continue;
            }
            _ = tokio::time::sleep_until(deadline.unwrap_or_else(tokio::time::Instant::now)), if deadline.is_some() => (None, false),
        };
        let mut ops: Vec<Op> = first.into_iter().collect();
        while ops.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(op) => ops.push(op),
                Err(_) => break,
            }
        }
        let c = match &conn {
            Some(c) => c.fork(),
            None => match store.conn().await {
                Ok(c) => {
                    let c = c.detach();
                    let forked = c.fork();
                    conn = Some(c);
                    forked
                }
                Err(e) => {
                    fail_all(ops, BatchError::Store(Arc::new(e)));
                    if ended {
                        // Redis is gone: the held slots lapse with this worker's leases.
                        return;
                    }
                    continue;
                }
            },
        };
        if execute(ops, c, (&store, &claim, &health), &local, deadline.is_some(), ended).await {
            // The connection broke: the next batch opens a new one.
            conn = None;
        }
    }
}

fn fail_all(ops: Vec<Op>, why: BatchError) {
    for op in ops {
        match op {
            Op::Mark { reply, .. } => drop(reply.send(Err(why.clone()))),
            Op::Record { reply, .. } => drop(reply.send(Err(why.clone()))),
            Op::Ack { reply, .. } => drop(reply.send(Err(why.clone()))),
            Op::Limit(op) => op.fail(why.clone()),
        }
    }
}

/// Runs one batch (with the shared slots given back that are due, all of them on `flush`;
/// `holding`: some were held when the batch began); true when the connection failed.
async fn execute(
    ops: Vec<Op>,
    conn: Conn,
    (store, claim, health): (&Store, &ClaimInfo, &Arc<RedisHealth>),
    local: &limits::SharedLocal,
    holding: bool,
    flush: bool,
) -> bool {
    let mut marks: HashMap<String, Vec<(ToMark, Reply<MarkRunning>)>> = HashMap::new();
    let mut records: HashMap<String, Vec<(ToRecord, Reply<Recorded>)>> = HashMap::new();
    let mut acks: HashMap<String, Vec<(String, Reply<()>)>> = HashMap::new();
    let mut limit_ops = Vec::new();
    for op in ops {
        match op {
            Op::Mark { run, item, reply } => marks.entry(run).or_default().push((item, reply)),
            Op::Record { run, item, reply } => records.entry(run).or_default().push((item, reply)),
            Op::Ack { stream, id, reply } => acks.entry(stream).or_default().push((id, reply)),
            Op::Limit(op) => limit_ops.push(op),
        }
    }
    let mut parts = tokio::task::JoinSet::new();
    if !limit_ops.is_empty() || holding {
        limits::spawn(limit_ops, local, flush, &conn, store, &claim.worker, &mut parts);
    }
    for (run, list) in marks {
        let (mut c, store, claim) = (conn.fork(), store.clone(), claim.clone());
        parts.spawn(async move {
            let (items, replies): (Vec<ToMark>, Vec<_>) = list.into_iter().unzip();
            let cl = Claim { worker: &claim.worker, lease: claim.lease, max_deliveries: claim.max_deliveries };
            match store.mark_running(&mut c, &run, &cl, &items).await {
                Ok(tags) => {
                    for (reply, tag) in replies.into_iter().zip(tags) {
                        let _ = reply.send(Ok(tag));
                    }
                    false
                }
                Err(e) => answer_error(replies, e),
            }
        });
    }
    for (run, list) in records {
        let (mut c, store, health) = (conn.fork(), store.clone(), health.clone());
        parts.spawn(async move {
            let (items, replies): (Vec<ToRecord>, Vec<_>) = list.into_iter().unzip();
            match store.record_results(&mut c, &run, &items).await {
                Ok(zo_common::store::Batch { outcomes, mut finished, cascade_left, mut queued, budget_alert, budget_reached }) => {
                    health.wrote();
                    if budget_alert {
                        warn!(run = %run, "budget_alert: the run's spending reached its alert threshold");
                    }
                    if budget_reached {
                        warn!(run = %run, "budget reached: the run starts no more tasks (those not started are cancelled, running ones finish)");
                    }
                    if cascade_left > 0 {
                        // The dependents of failures are settled in chunks; go on with them now.
                        match store.finish_cascade(&mut c, &run).await {
                            Ok(done) => {
                                finished |= done.finished;
                                queued += done.queued;
                            }
                            Err(e) if health.failed(&e, "settling dependents") => {}
                            Err(e) => warn!(run = %run, "settling dependents paused ({e}); upkeep goes on with it"),
                        }
                    }
                    let last = outcomes.len().saturating_sub(1);
                    for (i, (reply, o)) in replies.into_iter().zip(outcomes).enumerate() {
                        // The batch's `finished` belongs to its last result.
                        let o = match o {
                            Recorded::Ok { .. } => Recorded::Ok { finished: finished && i == last },
                            other => other,
                        };
                        let _ = reply.send(Ok(o));
                    }
                    if queued > 0 {
                        if let Err(e) = store.flush_outbox(&mut c, &run).await {
                            if !health.failed(&e, "enqueuing released tasks") {
                                warn!(run = %run, "could not enqueue released tasks now ({e}); they stay in the run's outbox");
                            }
                        }
                    }
                    false
                }
                Err(e) => answer_error(replies, e),
            }
        });
    }
    for (stream, list) in acks {
        let (mut c, store) = (conn.fork(), store.clone());
        parts.spawn(async move {
            let (ids, replies): (Vec<String>, Vec<_>) = list.into_iter().unzip();
            let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
            match store.ack(&mut c, &stream, &refs).await {
                Ok(()) => {
                    for reply in replies {
                        let _ = reply.send(Ok(()));
                    }
                    false
                }
                Err(e) => answer_error(replies, e),
            }
        });
    }
    let mut broken = false;
    while let Some(r) = parts.join_next().await {
        match r {
            Ok(b) => broken |= b,
            Err(e) => debug!("a batch part ended abnormally: {e}"),
        }
    }
    broken
}

/// Sends the error to every waiter; true when it is about the connection.
pub(crate) fn answer_error<T>(replies: Vec<Reply<T>>, e: StoreError) -> bool {
    let broken = e.is_infrastructure();
    let why = BatchError::Store(Arc::new(e));
    for reply in replies {
        let _ = reply.send(Err(why.clone()));
    }
    broken
}
