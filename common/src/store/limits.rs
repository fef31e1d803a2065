//! Rate limiters shared by every worker: requests and tokens per minute and the backoff after
//! a rate-limit answer, per instance (or `rate_group`) of the catalog and per model of a run's
//! `resource_limits`. Each limiter's keys carry its own hash tag (`NS:limit:{NAME}`), so
//! admission is one atomic step beside the run's scripts, Cluster-safe; a worker that dies
//! between admission and marking leaks nothing (a reservation is only a place in the order).

use std::time::Duration;

use super::{scripts, Conn, Store, StoreError};
use crate::model::{now_ms, RateLimit};

/// How long an idle limiter's state lives.
const LIMITER_TTL_S: u64 = 24 * 3600;

/// One limiter: its name (an instance, a `rate_group`, or `run:RUN:INSTANCE`) and its limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limiter {
    pub name: String,
    pub rate: RateLimit,
}

impl Limiter {
    /// The limiter of one instance for one run (`resource_limits.models`).
    pub fn for_run(run_id: &str, instance: &str, rate: RateLimit) -> Self {
        Limiter { name: format!("run:{run_id}:{instance}"), rate }
    }
}

/// What one [`Store::limit_step`] answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitStep {
    /// Per job admitted, in order: how long it waits (zero: start now). `None` when the
    /// jobs were counted, not named, and some would wait: ask again naming them.
    pub waits: Option<Vec<Duration>>,
    /// How many of the slots asked for were taken (the first ones asking get them).
    pub taken: u32,
    /// The waiting jobs the slots given back are for.
    pub waiters: Vec<String>,
    /// Whether tasks still wait for one of the limiter's shared slots.
    pub waiting: bool,
    /// Starts granted beyond the counted jobs, to bank (see [`LimitAsk::spare`]).
    pub banked: u32,
}

/// What one batch asks of one limiter's shared slots and rate limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitAsk<'a> {
    /// The limiter's `max_concurrent` (0 when only its rates are asked).
    pub cap: u32,
    /// Until when slots taken are held (Unix ms), unless renewed.
    pub until_ms: u64,
    /// Slots given back.
    pub gives: u32,
    /// Slots wanted.
    pub takes: u32,
    /// Jobs asking the rate limits: a count (admitted only if every one starts now) or the
    /// jobs by name (`RUN|IDX|ATTEMPT`, each answered).
    pub admits: Admits<'a>,
    /// With counted jobs admitted, how many more starts to grant for the worker to bank, if
    /// they too start now (a start limit without a token limit only).
    pub spare: u32,
}

/// Jobs asking a limiter's rates, counted or named.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admits<'a> {
    Count(u32),
    Named(&'a [&'a str]),
}

impl Store {
    /// Everything a batch of `worker`'s asks of its limiters in one script call: per
    /// limiter, shared slots given back and taken, and jobs asking the rate limits; the
    /// answers in the same order. A limit that does not bind costs the same for a batch as
    /// for one task: slots are counted per worker, and counted jobs are admitted at once when
    /// all of them start now. (Each limiter's keys have their own hash tag: on a Cluster,
    /// one call per limiter.)
    pub async fn limit_step(&self, conn: &mut Conn, worker: &str, asks: &[(&Limiter, LimitAsk<'_>)]) -> Result<Vec<LimitStep>, StoreError> {
        let mut inv = scripts::LIMIT_STEP.prepare_invoke();
        inv.arg(now_ms()).arg(LIMITER_TTL_S).arg(worker).arg(asks.len());
        for (lim, ask) in asks {
            let (hash, resv) = self.keys.limiter(&lim.name);
            let (held, waiting) = self.keys.limiter_slots(&lim.name);
            inv.key(hash).key(resv).key(held).key(waiting);
            inv.arg(lim.rate.rpm.unwrap_or(0)).arg(lim.rate.tpm.unwrap_or(0)).arg(ask.cap).arg(ask.until_ms);
            inv.arg(ask.gives).arg(ask.takes);
            match ask.admits {
                Admits::Count(n) => inv.arg(n).arg(0).arg(ask.spare),
                Admits::Named(jobs) => jobs.iter().fold(inv.arg(jobs.len()).arg(jobs.len()).arg(0), |inv, j| inv.arg(*j)),
            };
        }
        type Answer = (i64, Vec<i64>, i64, Vec<String>, i64, i64);
        let answers: Vec<Answer> = inv.invoke_async(conn).await?;
        if answers.len() != asks.len() {
            return Err(StoreError::Corrupt(format!("limit step answered {} of {} limiters", answers.len(), asks.len())));
        }
        asks.iter()
            .zip(answers)
            .map(|((_, ask), (admitted, waits, taken, waiters, waiting, banked))| {
                let waits = match ask.admits {
                    Admits::Named(jobs) if waits.len() != jobs.len() => {
                        return Err(StoreError::Corrupt(format!("limit step answered {} of {} admissions", waits.len(), jobs.len())));
                    }
                    Admits::Named(_) => Some(waits.into_iter().map(|w| Duration::from_millis(w.max(0) as u64)).collect()),
                    Admits::Count(n) => (admitted == 1).then(|| vec![Duration::ZERO; n as usize]),
                };
                let taken = u32::try_from(taken)
                    .ok()
                    .filter(|t| *t <= ask.takes)
                    .ok_or_else(|| StoreError::Corrupt(format!("limit step took {taken} slots of the {} asked for", ask.takes)))?;
                let banked = u32::try_from(banked)
                    .ok()
                    .filter(|b| *b <= ask.spare)
                    .ok_or_else(|| StoreError::Corrupt(format!("limit step banked {banked} starts of the {} asked for", ask.spare)))?;
                Ok(LimitStep { waits, taken, waiters, waiting: waiting == 1, banked })
            })
            .collect()
    }

    /// Extends the shared slots `worker` holds (`count` of them, its running tasks'); false
    /// when they had lapsed meanwhile (they are held again).
    pub async fn renew_shared_slots(
        &self,
        conn: &mut Conn,
        name: &str,
        worker: &str,
        count: u32,
        until_ms: u64,
    ) -> Result<bool, StoreError> {
        let count = count.to_string();
        let r: Vec<i64> = self.ns_slots(name, "renew", 0, until_ms, &[worker, &count]).invoke_async(conn).await?;
        Ok(r.first() == Some(&1))
    }

    /// Queues `job` (`RUN|IDX|ATTEMPT`) for the next free shared slot.
    pub async fn wait_for_shared_slot(&self, conn: &mut Conn, name: &str, job: &str) -> Result<(), StoreError> {
        let _: Vec<i64> = self.ns_slots(name, "wait", 0, 0, &[job]).invoke_async(conn).await?;
        Ok(())
    }

    /// Frees the shared slots whose lease lapsed (a dead worker's); returns the waiting jobs
    /// (`RUN|IDX|ATTEMPT`) the free slots are for, to bring forward. (Slots given back go
    /// through [`Store::limit_step`].)
    pub async fn free_lapsed_shared_slots(&self, conn: &mut Conn, name: &str, cap: u32) -> Result<Vec<String>, StoreError> {
        Ok(self.ns_slots(name, "tick", cap, 0, &[]).invoke_async(conn).await?)
    }

    fn ns_slots(&self, name: &str, op: &str, cap: u32, until_ms: u64, members: &[&str]) -> redis::ScriptInvocation<'static> {
        let (held, waiting) = self.keys.limiter_slots(name);
        let mut inv = scripts::NS_SLOTS.prepare_invoke();
        inv.key(held).key(waiting).arg(op).arg(now_ms()).arg(cap).arg(until_ms);
        for m in members {
            inv.arg(*m);
        }
        inv
    }

    /// A task waiting in its run's delayed set becomes due now (it was handed back to wait for
    /// a shared slot that is free now); false when it is not waiting there any more.
    pub async fn bring_forward(&self, conn: &mut Conn, run_id: &str, idx: u32, attempt: u32) -> Result<bool, StoreError> {
        let n: i64 = redis::cmd("ZADD")
            .arg(self.keys.run(run_id, "delayed"))
            .arg("XX")
            .arg("CH")
            .arg(now_ms())
            .arg(format!("{idx}:{attempt}"))
            .query_async(conn)
            .await?;
        if n > 0 {
            self.promote_due(conn, run_id).await?;
            self.flush_outbox(conn, run_id).await?;
        }
        Ok(n > 0)
    }

    /// Records the limits this worker's catalog gives limiter `name` (`conf`, as text) and
    /// returns the other text a worker recorded before, when it differs (catalogs disagree).
    pub async fn limiter_conf(&self, conn: &mut Conn, name: &str, conf: &str) -> Result<Option<String>, StoreError> {
        let (hash, _) = self.keys.limiter(name);
        let (before, _, _): (Option<String>, i64, i64) = redis::pipe()
            .atomic()
            .hget(&hash, "conf")
            .hset(&hash, "conf", conf)
            .expire(&hash, LIMITER_TTL_S as i64)
            .query_async(conn)
            .await?;
        Ok(before.filter(|b| b != conf))
    }

    /// Tells the run's followers that a running task waits before it starts (`reason`:
    /// `quota`), until `until_ms` at the latest, and why in words.
    pub async fn note_waiting(
        &self,
        conn: &mut Conn,
        run_id: &str,
        idx: u32,
        reason: &str,
        until_ms: u64,
        detail: &str,
    ) -> Result<(), StoreError> {
        let _: String = redis::cmd("XADD")
            .arg(self.keys.run(run_id, "events"))
            .arg("MAXLEN")
            .arg("~")
            .arg(10_000)
            .arg("*")
            .arg("idx")
            .arg(idx)
            .arg("state")
            .arg("running")
            .arg("wait")
            .arg(reason)
            .arg("until")
            .arg(until_ms)
            .arg("detail")
            .arg(detail)
            .query_async(conn)
            .await?;
        Ok(())
    }

    /// When the limiter's backoff after a rate-limit answer ends (Unix ms), if it has one.
    pub async fn backoff_until(&self, conn: &mut Conn, name: &str) -> Result<Option<u64>, StoreError> {
        let (hash, _) = self.keys.limiter(name);
        let until: Option<u64> = redis::cmd("HGET").arg(hash).arg("backoff_until").query_async(conn).await?;
        Ok(until.filter(|&u| u > now_ms()))
    }

    /// After a task: its tokens leave the limiter's bucket; a rate-limit answer backs every
    /// worker off (for `retry_after` when the agent said). Returns the backoff's end (Unix ms).
    pub async fn debit(
        &self,
        conn: &mut Conn,
        lim: &Limiter,
        tokens: u64,
        rate_limited: bool,
        retry_after: Option<Duration>,
    ) -> Result<Option<u64>, StoreError> {
        let (hash, _) = self.keys.limiter(&lim.name);
        let until: u64 = scripts::DEBIT
            .key(hash)
            .arg(now_ms())
            .arg(tokens)
            .arg(lim.rate.tpm.unwrap_or(0))
            .arg(u8::from(rate_limited))
            .arg(retry_after.map_or(0, |d| d.as_millis() as u64))
            .arg(LIMITER_TTL_S)
            .invoke_async(conn)
            .await?;
        Ok(Some(until).filter(|&u| u > 0))
    }
}
