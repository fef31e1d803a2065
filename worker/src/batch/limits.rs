//! The limiter steps of the hot path, batched like the others: admissions by a rate limiter
//! and the shared slots of an instance's `max_concurrent` (taken and given back), gathered
//! into one script call (`LIMIT_STEP`) per batch for all its limiters. With limits set but not
//! binding, a task costs no round trip of its own, and a batch costs about what one task
//! does: slots are counted per worker, admissions counted (named only when one would wait),
//! and slots given back ride with the next call to their limiter. What the limiters' last
//! answers allow ([`Local`]: starts banked, slots given back and not sent yet) is spent by
//! the task that asks, before anything is sent to the batch: such a task costs a lock.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use tokio::task::JoinSet;
use tracing::{debug, warn};
use zo_common::store::{Admits, Conn, LimitAsk, LimitStep, Limiter, Store};

use super::error::{BatchError, Reply};

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
    /// A give is held in [`Local`] where there was none: the batch looks at when it is due.
    Wake,
}

impl LimitOp {
    pub(super) fn fail(self, why: BatchError) {
        match self {
            LimitOp::Admit { reply, .. } => drop(reply.send(Err(why))),
            LimitOp::Take { reply, .. } => drop(reply.send(Err(why))),
            LimitOp::Give { limiter, .. } => {
                debug!(limiter = %limiter, "could not give a shared slot back ({why}); it frees itself when this worker's leases lapse")
            }
            LimitOp::Wake => {}
        }
    }
}

/// Whether [`Local::hold_give`] held a give.
pub(super) enum Held {
    /// Held, beside others already due at the same time or earlier.
    Already,
    /// Held, the first for its limiter: the batch must learn when it is due.
    First,
    /// Not held: tasks wait for the limiter's slots.
    No,
}

/// Admissions waiting for an answer: each job's key and where its wait goes.
type Admissions = Vec<(String, Reply<Duration>)>;

/// What one batch asks of one limiter.
#[derive(Default)]
struct Step {
    /// The limiter with its rates (from an admission; slots alone need only its name).
    limiter: Option<Limiter>,
    cap: u32,
    until_ms: u64,
    gives: u32,
    takes: Vec<Reply<bool>>,
    admits: Admissions,
}

/// How long shared slots given back may be kept for this worker's next tasks, or wait to ride
/// with the batch's next take from their limiter, before they go on their own. While tasks
/// wait for that limiter's slots they go at once.
const HOLD_GIVES: Duration = Duration::from_millis(50);

/// How many starts a batch asks for besides its own, to bank (granted only when they start
/// within the same millisecond: a limit of at least 60,000 a minute), and how long a bank
/// lives: starts over any minute pass the limit by at most that share of it (50 ms of 60 s).
const BANK: u32 = 1024;
const BANK_TTL: Duration = Duration::from_millis(50);

/// What this worker's limiters allow between calls, shared by its jobs and its batch
/// (locked briefly, never across an await). Shared slots given back and not sent yet, per
/// limiter (with its cap and since when): a task of this worker that asks for a slot
/// meanwhile takes one of them, with no call. What the limiters' last answers said: where
/// tasks wait for a slot (gives go at once and are not taken again here), when each limiter
/// last answered (a slot is taken again here only within [`HOLD_GIVES`] of that, so tasks of
/// other workers that came to wait meanwhile are heard of soon), and the starts banked per
/// limiter, until when. Nothing but counts: a worker killed meanwhile loses nothing its
/// leases' lapse does not give back.
#[derive(Default)]
pub(crate) struct Local {
    held: HashMap<String, HeldGives>,
    contended: HashSet<String>,
    answered: HashMap<String, Instant>,
    banks: HashMap<String, (u32, Instant)>,
    /// When limiters not heard of lately were last forgotten.
    pruned: Option<Instant>,
}

/// Past how many limiters [`Local::note_answer`] forgets those not heard of for
/// [`FORGET_AFTER`] (a run's own limiter lives as long as the run).
const FORGET_PAST: usize = 256;
const FORGET_AFTER: Duration = Duration::from_secs(60);

pub(crate) type SharedLocal = Arc<Mutex<Local>>;

/// Slots given back to one limiter and not sent yet.
struct HeldGives {
    cap: u32,
    n: u32,
    since: Instant,
}

impl Local {
    /// When the oldest held give must go.
    pub(super) fn deadline(&self) -> Option<Instant> {
        self.held.values().map(|h| h.since + HOLD_GIVES).min()
    }

    /// Whether a slot given back is held here and may be taken: nobody waits for the
    /// limiter's slots and it answered lately.
    pub(super) fn may_take_held(&self, name: &str, now: Instant) -> bool {
        let heard = self.answered.get(name).is_some_and(|t| now.saturating_duration_since(*t) <= HOLD_GIVES);
        heard && !self.contended.contains(name) && self.held.contains_key(name)
    }

    /// Takes a slot given back and held here, when [`Local::may_take_held`].
    pub(super) fn take_held(&mut self, name: &str, now: Instant) -> bool {
        if !self.may_take_held(name, now) {
            return false;
        }
        let Some(h) = self.held.get_mut(name) else { return false };
        h.n -= 1;
        if h.n == 0 {
            self.held.remove(name);
        }
        true
    }

    /// How many starts are banked for the limiter now.
    pub(super) fn banked(&self, name: &str, now: Instant) -> u32 {
        self.banks.get(name).map_or(0, |&(n, until)| if until > now { n } else { 0 })
    }

    /// Spends a start banked for the limiter, if one is left.
    pub(super) fn spend_bank(&mut self, name: &str, now: Instant) -> bool {
        match self.banks.get_mut(name) {
            Some((n, until)) if *until > now && *n > 0 => {
                *n -= 1;
                true
            }
            _ => false,
        }
    }

    /// Notes a limiter's answer: whether tasks wait for its slots, and the starts it banked.
    /// Limiters that have not answered for a minute (a finished run's) are forgotten, at most
    /// once a second: the state stays as small as the limiters in use.
    pub(super) fn note_answer(&mut self, name: &str, contended: bool, banked: u32, now: Instant) {
        self.answered.insert(name.to_string(), now);
        if contended {
            self.contended.insert(name.to_string());
        } else {
            self.contended.remove(name);
        }
        if banked > 0 {
            let bank = self.banks.entry(name.to_string()).or_insert((0, now));
            let left = if bank.1 > now { bank.0 } else { 0 };
            *bank = (left + banked, now + BANK_TTL);
        }
        if self.answered.len() > FORGET_PAST && self.pruned.is_none_or(|t| now.saturating_duration_since(t) >= Duration::from_secs(1)) {
            self.pruned = Some(now);
            self.answered.retain(|_, t| now.saturating_duration_since(*t) < FORGET_AFTER);
            let answered = &self.answered;
            self.contended.retain(|n| answered.contains_key(n));
            self.banks.retain(|_, (_, until)| *until > now);
        }
    }

    /// Holds a slot given back, unless tasks wait for the limiter's slots.
    pub(super) fn hold_give(&mut self, name: &str, cap: u32, now: Instant) -> Held {
        if self.contended.contains(name) {
            return Held::No;
        }
        match self.held.get_mut(name) {
            Some(h) => {
                h.cap = h.cap.max(cap);
                h.n += 1;
                Held::Already
            }
            None => {
                self.held.insert(name.to_string(), HeldGives { cap, n: 1, since: now });
                Held::First
            }
        }
    }
}

/// Spawns one part for the batch's limiters: their gives, takes and admissions in one
/// script call (two when some admission would wait: the jobs are then named, each answered).
/// Gives held in `local` ride with the next call to their limiter, or go on their own once
/// [`HOLD_GIVES`] old; `flush` sends every held give now (shutdown).
pub(super) fn spawn(
    ops: Vec<LimitOp>,
    local: &SharedLocal,
    flush: bool,
    conn: &Conn,
    store: &Store,
    worker: &str,
    parts: &mut JoinSet<bool>,
) {
    let mut steps = gather(ops);
    settle_locally(&mut steps, local, flush, Instant::now());
    if steps.is_empty() {
        return;
    }
    let (c, store, worker, said) = (conn.fork(), store.clone(), worker.to_string(), local.clone());
    parts.spawn(send(steps, c, store, worker, said));
}

/// The batch's limiter steps, one per limiter.
fn gather(ops: Vec<LimitOp>) -> HashMap<String, Step> {
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
            LimitOp::Wake => {}
        }
    }
    steps
}

/// Serves what `local` allows with no call (slots given back, banked starts) and adds the
/// held gives that are due; steps left with nothing to send are dropped. Nothing here awaits:
/// the state stays locked only while the batch is sorted out.
fn settle_locally(steps: &mut HashMap<String, Step>, local: &SharedLocal, flush: bool, now: Instant) {
    let mut local = local.lock().expect("limiter state lock");
    for (name, step) in steps.iter_mut() {
        // What was given back or banked since these tasks asked serves them, with no call.
        while !step.takes.is_empty() && local.take_held(name, now) {
            let _ = step.takes.pop().map(|reply| reply.send(Ok(true)));
        }
        while !step.admits.is_empty() && local.spend_bank(name, now) {
            let _ = step.admits.pop().map(|(_, reply)| reply.send(Ok(Duration::ZERO)));
        }
    }
    steps.retain(|_, step| !step.takes.is_empty() || !step.admits.is_empty() || step.gives > 0);
    // Held gives go once due, at once while tasks wait for their slots, and with this batch's
    // takes from their limiter (counted against this worker's own). Not with an admission
    // alone: kept here, they serve this worker's next tasks with no call.
    let Local { held, contended, .. } = &mut *local;
    let due: Vec<String> = held
        .iter()
        .filter(|(name, h)| {
            flush || now >= h.since + HOLD_GIVES || contended.contains(*name) || steps.get(*name).is_some_and(|s| !s.takes.is_empty())
        })
        .map(|(name, _)| name.clone())
        .collect();
    for name in due {
        if let Some(h) = held.remove(&name) {
            let step = steps.entry(name).or_default();
            step.cap = step.cap.max(h.cap);
            step.gives += h.n;
        }
    }
}

/// Sends the steps in one `LIMIT_STEP` call and answers every task; limiters where some job
/// would wait are asked again with the jobs named ([`ask_named`]); tasks waiting for freed
/// slots are brought forward. True when the connection broke.
async fn send(steps: HashMap<String, Step>, mut c: Conn, store: Store, worker: String, said: SharedLocal) -> bool {
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
    let mut waiters = Vec::new();
    let mut again = Vec::new();
    for ((limiter, step), answer) in steps.into_iter().zip(answers) {
        let LimitStep { waits, taken, waiters: w, waiting, banked } = answer;
        let contended = waiting || (taken as usize) < step.takes.len();
        said.lock().expect("limiter state lock").note_answer(&limiter.name, contended, banked, Instant::now());
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
    let broken = !again.is_empty() && ask_named(again, &mut c, &store, &worker).await;
    if !waiters.is_empty() {
        crate::waiters::wake(&store, &mut c, &waiters).await;
    }
    broken
}

/// Limiters where some job would wait, asked again naming the jobs (slots are settled by
/// then); each job answered with its own wait. True when the connection broke.
async fn ask_named(again: Vec<(Limiter, Admissions)>, c: &mut Conn, store: &Store, worker: &str) -> bool {
    let names: Vec<Vec<&str>> = again.iter().map(|(_, admits)| admits.iter().map(|(j, _)| j.as_str()).collect()).collect();
    let asks: Vec<(&Limiter, LimitAsk)> = again
        .iter()
        .zip(&names)
        .map(|((l, _), n)| (l, LimitAsk { cap: 0, until_ms: 0, gives: 0, takes: 0, admits: Admits::Named(n), spare: 0 }))
        .collect();
    let answers = store.limit_step(c, worker, &asks).await;
    drop(asks);
    drop(names);
    match answers {
        Ok(answers) => {
            for ((_, admits), a) in again.into_iter().zip(answers) {
                answer_admits(admits, Ok(a.waits.unwrap_or_default()));
            }
            false
        }
        Err(e) => {
            let broken = e.is_infrastructure();
            let why = BatchError::Store(std::sync::Arc::new(e));
            for (_, admits) in again {
                answer_admits(admits, Err(why.clone()));
            }
            broken
        }
    }
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

fn answer_admits(admits: Admissions, waits: Result<Vec<Duration>, BatchError>) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limiters_not_heard_of_for_a_minute_are_forgotten() {
        // The clock is the caller's: "a minute later" is an instant ahead of now, so the test
        // needs no minute of uptime (an instant before boot cannot be made).
        let old = Instant::now();
        let now = old + FORGET_AFTER + Duration::from_secs(1);
        let mut local = Local::default();
        for k in 0..=FORGET_PAST {
            local.note_answer(&format!("run-{k}"), true, 5, old);
        }
        assert_eq!(local.answered.len(), FORGET_PAST + 1, "pruning looks only at what is old by then");
        local.note_answer("live", true, 3, now);
        assert_eq!(local.answered.keys().collect::<Vec<_>>(), vec!["live"]);
        assert_eq!(local.contended.iter().collect::<Vec<_>>(), vec!["live"]);
        assert_eq!(local.banks.keys().collect::<Vec<_>>(), vec!["live"], "expired banks go too");
        assert_eq!(local.banked("live", now), 3);
        // A live limiter answered without contention stops being contended.
        local.note_answer("live", false, 0, now);
        assert!(local.contended.is_empty());
    }

    #[test]
    fn a_held_give_is_taken_only_while_heard_and_uncontended() {
        let now = Instant::now();
        let mut local = Local::default();
        assert!(matches!(local.hold_give("fast", 2, now), Held::First));
        assert!(matches!(local.hold_give("fast", 2, now), Held::Already));
        assert!(!local.take_held("fast", now), "never answered: other workers' waiters are unknown");
        local.note_answer("fast", false, 0, now);
        assert!(local.take_held("fast", now) && local.take_held("fast", now));
        assert!(!local.take_held("fast", now), "both taken");
        assert!(local.held.is_empty());
        local.note_answer("fast", true, 0, now);
        assert!(matches!(local.hold_give("fast", 2, now), Held::No), "tasks wait: the give goes at once");
    }
}
