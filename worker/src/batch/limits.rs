//! The limiter steps of the hot path, batched like the others: admissions by a rate limiter
//! and the shared slots of an instance's `max_concurrent` (taken and given back), gathered
//! into one script call (`LIMIT_STEP`) per batch for all its limiters. With limits set but not
//! binding, a task costs no round trip of its own, and a batch costs about what one task
//! does: slots are counted per worker, admissions counted (named only when one would wait),
//! and slots given back ride with the next call to their limiter.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use tokio::task::JoinSet;
use tracing::{debug, warn};
use zo_common::store::{Admits, Conn, LimitAsk, LimitStep, Limiter, Store};

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
        until_ms: u64,
        reply: Reply<bool>,
    },
    /// Nobody waits for a give: the batch brings the tasks waiting for the freed slots
    /// forward itself.
    Give {
        limiter: String,
        cap: u32,
    },
}

impl LimitOp {
    pub(super) fn fail(self, why: BatchError) {
        match self {
            LimitOp::Admit { reply, .. } => drop(reply.send(Err(why))),
            LimitOp::Take { reply, .. } => drop(reply.send(Err(why))),
            LimitOp::Give { limiter, .. } => {
                debug!(limiter = %limiter, "could not give a shared slot back ({why}); it frees itself when this worker's leases lapse")
            }
        }
    }
}

impl Batcher {
    /// See [`Store::limit_step`]: how long `job` (`RUN|IDX|ATTEMPT`) waits for `limiter`.
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

    /// Takes one of the limiter's `cap` shared slots for one of this worker's tasks until
    /// `until_ms` in the next batch's [`Store::limit_step`]; false when all are held.
    pub async fn take_shared_slot(&self, limiter: &str, cap: u32, until_ms: u64) -> Result<bool, BatchError> {
        self.ask(|reply| Op::Limit(LimitOp::Take { limiter: limiter.to_string(), cap, until_ms, reply })).await
    }

    /// Gives a shared slot back in the next batch's [`Store::limit_step`], which then brings
    /// the tasks waiting for it forward; nothing to wait for. Should the batch be gone, the
    /// slot frees itself when this worker's leases lapse.
    pub fn give_shared_slot(&self, limiter: &str, cap: u32) {
        if self.tx.send(Op::Limit(LimitOp::Give { limiter: limiter.to_string(), cap })).is_err() {
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
    gives: u32,
    takes: Vec<Reply<bool>>,
    admits: Vec<(String, Reply<Duration>)>,
}

/// How long shared slots given back may wait to ride with the batch's next call to their
/// limiter (a take or an admission) before they go on their own. While tasks wait for that
/// limiter's slots they go at once.
const HOLD_GIVES: Duration = Duration::from_millis(50);

/// How many starts a batch asks for besides its own, to bank (granted only when they start
/// within the same millisecond: a limit of at least 60,000 a minute), and how long a bank
/// lives: starts over any minute pass the limit by at most that share of it (50 ms of 60 s).
const BANK: u32 = 256;
const BANK_TTL: Duration = Duration::from_millis(50);

/// Shared slots given back and not sent yet, per limiter (with its cap and since when): a
/// task of this worker that asks for a slot meanwhile takes one of them, with no call. What
/// the limiters' answers said, for the next batches ([`Answers`]). Nothing but counts: a
/// worker killed meanwhile loses nothing its leases' lapse does not give back.
#[derive(Default)]
pub(super) struct HeldGives {
    held: HashMap<String, Held>,
    answers: Arc<Mutex<Answers>>,
}

/// Slots given back to one limiter and not sent yet.
struct Held {
    cap: u32,
    n: u32,
    since: Instant,
}

/// What the limiters' last answers said: where tasks wait for a slot (gives go at once and
/// are not taken again here), when each limiter last answered (a slot is taken again here
/// only within [`HOLD_GIVES`] of that, so tasks of other workers that came to wait meanwhile
/// are heard of soon), and the starts banked per limiter, until when.
#[derive(Default)]
struct Answers {
    contended: HashSet<String>,
    answered: HashMap<String, Instant>,
    banks: HashMap<String, (u32, Instant)>,
}

impl HeldGives {
    /// When the oldest held give must go.
    pub(super) fn deadline(&self) -> Option<Instant> {
        self.held.values().map(|h| h.since + HOLD_GIVES).min()
    }
}

/// Spawns one part for the batch's limiters: their gives, takes and admissions in one
/// script call (two when some admission would wait: the jobs are then named, each answered).
/// Gives alone wait in `held` for the next call to their limiter (at most [`HOLD_GIVES`]);
/// `flush` sends every held give now (shutdown).
pub(super) fn spawn(
    ops: Vec<LimitOp>,
    held: &mut HeldGives,
    flush: bool,
    conn: &Conn,
    store: &Store,
    worker: &str,
    parts: &mut JoinSet<bool>,
) {
    let mut steps: HashMap<String, Step> = HashMap::new();
    for op in ops {
        match op {
            LimitOp::Admit { limiter, job, reply } => {
                let step = steps.entry(limiter.name.clone()).or_default();
                step.admits.push((job, reply));
                step.limiter.get_or_insert(limiter);
            }
            LimitOp::Take { limiter, cap, until_ms, reply } => {
                let step = steps.entry(limiter).or_default();
                step.cap = step.cap.max(cap);
                step.until_ms = step.until_ms.max(until_ms);
                step.takes.push(reply);
            }
            LimitOp::Give { limiter, cap } => {
                let step = steps.entry(limiter).or_default();
                step.cap = step.cap.max(cap);
                step.gives += 1;
            }
        }
    }
    let now = Instant::now();
    {
        // Nothing below awaits: the answers stay locked only while the batch is sorted out.
        let mut answers = held.answers.lock().expect("limiter answers lock");
        let Answers { contended, answered, banks } = &mut *answers;
        for (name, step) in steps.iter_mut() {
            // A slot given back (in this batch, or held) goes to a task asking for one: it
            // stays counted, now for the task that holds it. Not while tasks wait for the
            // limiter's slots, nor when it has not answered lately (some may have come to).
            let heard = answered.get(name).is_some_and(|t| now.saturating_duration_since(*t) <= HOLD_GIVES);
            if !step.takes.is_empty() && heard && !contended.contains(name) {
                let held_n = held.held.get(name).map_or(0, |h| h.n);
                let m = (step.gives + held_n).min(step.takes.len() as u32);
                let from_batch = m.min(step.gives);
                step.gives -= from_batch;
                if m > from_batch {
                    if let Some(h) = held.held.get_mut(name) {
                        h.n -= m - from_batch;
                        if h.n == 0 {
                            held.held.remove(name);
                        }
                    }
                }
                for reply in step.takes.drain(..m as usize) {
                    let _ = reply.send(Ok(true));
                }
            }
            // Starts banked by an earlier answer admit the batch's jobs, with no call.
            if let Some((n, until)) = banks.get_mut(name) {
                if *until > now && !step.admits.is_empty() && *n as usize >= step.admits.len() {
                    *n -= step.admits.len() as u32;
                    for (_, reply) in step.admits.drain(..) {
                        let _ = reply.send(Ok(Duration::ZERO));
                    }
                }
            }
        }
        // What is left to ask; gives alone are held unless tasks wait for their slots.
        steps.retain(|name, step| {
            if !step.takes.is_empty() || !step.admits.is_empty() {
                return true;
            }
            if step.gives == 0 {
                return false;
            }
            if flush || contended.contains(name) {
                return true;
            }
            let h = held.held.entry(name.clone()).or_insert(Held { cap: step.cap, n: 0, since: now });
            h.cap = h.cap.max(step.cap);
            h.n += step.gives;
            false
        });
        // Held gives ride with this batch's call to their limiter, or go once due.
        let due: Vec<String> = held
            .held
            .iter()
            .filter(|(name, h)| flush || steps.contains_key(*name) || contended.contains(*name) || now >= h.since + HOLD_GIVES)
            .map(|(name, _)| name.clone())
            .collect();
        for name in due {
            if let Some(h) = held.held.remove(&name) {
                let step = steps.entry(name).or_default();
                step.cap = step.cap.max(h.cap);
                step.gives += h.n;
            }
        }
    }
    if steps.is_empty() {
        return;
    }
    let (mut c, store, worker, said) = (conn.fork(), store.clone(), worker.to_string(), held.answers.clone());
    parts.spawn(async move {
        let steps: Vec<(Limiter, Step)> = steps
            .into_iter()
            .map(|(name, mut step)| (step.limiter.take().unwrap_or(Limiter { name, rate: Default::default() }), step))
            .collect();
        let asks: Vec<(&Limiter, LimitAsk)> = steps
            .iter()
            .map(|(l, s)| {
                let bank = !s.admits.is_empty() && l.rate.rpm.is_some() && l.rate.tpm.is_none();
                let ask = LimitAsk {
                    cap: s.cap,
                    until_ms: s.until_ms,
                    gives: s.gives,
                    takes: s.takes.len() as u32,
                    admits: Admits::Count(s.admits.len() as u32),
                    spare: if bank { BANK } else { 0 },
                };
                (l, ask)
            })
            .collect();
        let answers = match store.limit_step(&mut c, &worker, &asks).await {
            Ok(a) => a,
            Err(e) => {
                drop(asks);
                if steps.iter().any(|(_, s)| s.gives > 0) {
                    warn!("could not give shared slots back ({e}); they free themselves when this worker's leases lapse");
                }
                let broken = e.is_infrastructure();
                let why = BatchError::Store(std::sync::Arc::new(e));
                for (_, step) in steps {
                    step.fail(&why);
                }
                return broken;
            }
        };
        drop(asks);
        // Limiters where some job would wait: asked again, naming the jobs (slots are settled).
        let mut waiters = Vec::new();
        let mut again = Vec::new();
        for ((limiter, step), answer) in steps.into_iter().zip(answers) {
            let LimitStep { waits, taken, waiters: w, waiting, banked } = answer;
            {
                let mut a = said.lock().expect("limiter answers lock");
                a.answered.insert(limiter.name.clone(), Instant::now());
                if waiting || (taken as usize) < step.takes.len() {
                    a.contended.insert(limiter.name.clone());
                } else {
                    a.contended.remove(&limiter.name);
                }
                if banked > 0 {
                    let now = Instant::now();
                    let bank = a.banks.entry(limiter.name.clone()).or_insert((0, now));
                    let left = if bank.1 > now { bank.0 } else { 0 };
                    *bank = (left + banked, now + BANK_TTL);
                }
            }
            waiters.extend(w);
            let Step { takes, admits, .. } = step;
            for (k, reply) in takes.into_iter().enumerate() {
                let _ = reply.send(Ok((k as u32) < taken));
            }
            match waits {
                Some(waits) => answer_admits(admits, Ok(waits)),
                None => again.push((limiter, admits)),
            }
        }
        let mut broken = false;
        if !again.is_empty() {
            let names: Vec<Vec<&str>> = again.iter().map(|(_, admits)| admits.iter().map(|(j, _)| j.as_str()).collect()).collect();
            let asks: Vec<(&Limiter, LimitAsk)> = again
                .iter()
                .zip(&names)
                .map(|((l, _), n)| (l, LimitAsk { cap: 0, until_ms: 0, gives: 0, takes: 0, admits: Admits::Named(n), spare: 0 }))
                .collect();
            let answers = store.limit_step(&mut c, &worker, &asks).await;
            drop(asks);
            drop(names);
            match answers {
                Ok(answers) => {
                    for ((_, admits), a) in again.into_iter().zip(answers) {
                        answer_admits(admits, Ok(a.waits.unwrap_or_default()));
                    }
                }
                Err(e) => {
                    broken = e.is_infrastructure();
                    let why = BatchError::Store(std::sync::Arc::new(e));
                    for (_, admits) in again {
                        answer_admits(admits, Err(why.clone()));
                    }
                }
            }
        }
        if !waiters.is_empty() {
            crate::limits::wake(&store, &mut c, &waiters).await;
        }
        broken
    });
}

impl Step {
    fn fail(self, why: &BatchError) {
        for (_, reply) in self.admits {
            let _ = reply.send(Err(why.clone()));
        }
        for reply in self.takes {
            let _ = reply.send(Err(why.clone()));
        }
    }
}

fn answer_admits(admits: Vec<(String, Reply<Duration>)>, waits: Result<Vec<Duration>, BatchError>) {
    match waits {
        Ok(waits) => {
            for ((_, reply), w) in admits.into_iter().zip(waits) {
                let _ = reply.send(Ok(w));
            }
        }
        Err(why) => {
            for (_, reply) in admits {
                let _ = reply.send(Err(why.clone()));
            }
        }
    }
}
