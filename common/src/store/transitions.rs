//! Every state change of a task after its run is created, each one script call on the run's
//! keys (see ARCHITECTURE.md, "Task lifecycle"): mark running, renew, record results, hand
//! back, promote due retries, cancel, revive; and acknowledging handled stream entries. A reply
//! tag a script may return is mapped here; an unknown one is an error, never a default.

use std::time::Duration;

use super::error::unknown_tag;
use super::keys::Keys;
use super::{scripts, Conn, Store, StoreError};
use crate::model::{now_ms, Nanos, Status};

/// Outcome of marking a task running.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MarkRunning {
    /// The task is ours to run (under a lease).
    Ok,
    /// Ours, but delivered more often than allowed without a result: record it as failed.
    Poison,
    /// Another delivery of this task is running under a live lease.
    AlreadyRunning,
    /// The task already has its final result (a redelivery): drop the job.
    Final,
    /// The job is for an older attempt: drop it.
    Stale,
    /// The run (or the task in it) does not exist: dead-letter it.
    Unknown,
    /// The run is at a concurrency cap (`resource_limits`): the task waits in the run for a
    /// slot and is queued again when one frees; this entry is done with (acknowledge it).
    Parked,
}

impl MarkRunning {
    fn from_tag(tag: &str) -> Result<Self, StoreError> {
        Ok(match tag {
            "ok" => MarkRunning::Ok,
            "poison" => MarkRunning::Poison,
            "running" => MarkRunning::AlreadyRunning,
            "final" => MarkRunning::Final,
            "stale" => MarkRunning::Stale,
            "unknown" => MarkRunning::Unknown,
            "parked" => MarkRunning::Parked,
            other => return Err(unknown_tag("mark-running", other)),
        })
    }
}

/// How a worker claims tasks.
#[derive(Debug, Clone, Copy)]
pub struct Claim<'a> {
    pub worker: &'a str,
    pub lease: Duration,
    pub max_deliveries: u32,
}

/// One task of a batch to mark running.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToMark {
    pub idx: u32,
    pub attempt: u32,
    /// The job was reclaimed from another consumer: take over if that lease lapsed.
    pub takeover: bool,
    /// The task's instance, as its entry says (a per-instance cap counts it there).
    pub instance: String,
}

/// Outcome of a lease renewal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Renewed {
    Ok,
    /// Renewed, and someone asked to cancel the task.
    CancelRequested,
    /// The lease is no longer ours (taken over, or the task ended): stop working on it.
    Lost,
}

/// Outcome of recording a result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    /// Stored as final; `finished` when the run is complete (the dependents it started are
    /// counted in [`Batch::queued`]).
    Ok { finished: bool },
    /// Stored as a failed attempt; the next attempt waits in the run's delayed set.
    Retry,
    /// The task already had a final result; nothing changed.
    Duplicate,
    /// The result is for an attempt that is no longer current; nothing changed.
    Stale,
}

impl Recorded {
    fn from_tag(tag: &str) -> Result<Self, StoreError> {
        Ok(match tag {
            "ok" => Recorded::Ok { finished: false },
            "retry" => Recorded::Retry,
            "dup" => Recorded::Duplicate,
            "stale" => Recorded::Stale,
            other => return Err(unknown_tag("record-result", other)),
        })
    }
}

/// What recording a batch of results did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    /// One per result, in order.
    pub outcomes: Vec<Recorded>,
    /// The batch finished the run.
    pub finished: bool,
    /// Entries of the run's cascade still to do: go on with [`Store::continue_cascade`]
    /// (upkeep does too, should the recorder die).
    pub cascade_left: u64,
    /// Tasks the batch started (successes' dependents, trigger rules that fired): in the
    /// outbox, for [`Store::flush_outbox`].
    pub queued: u32,
    /// The batch's spending raised the run's budget alert.
    pub budget_alert: bool,
    /// The batch's spending reached the run's budget: the run stopped starting tasks.
    pub budget_reached: bool,
}

/// An operator's decision on a stage that waits for approval.
#[derive(Debug, Clone, Copy)]
pub enum Decision<'a> {
    Approve,
    Reject { reason: &'a str },
}

/// What [`Store::decide_stage`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decided {
    /// Recorded: `tasks` started (approve) or skipped (reject); `queued` in the outbox.
    Done { tasks: u32, finished: bool, queued: u32 },
    /// The stage is not awaiting approval (nothing changed): never reached (`None`), or
    /// decided already.
    NotAwaiting(Option<crate::model::StageStatus>),
}

/// What one or more cascade chunks did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Cascaded {
    /// Entries still in the run's cascade list.
    pub left: u64,
    /// This finished the run.
    pub finished: bool,
    /// Tasks it started (trigger rules that fired), in the outbox.
    pub queued: u32,
}

/// One result of a batch to record.
#[derive(Debug, Clone)]
pub struct ToRecord {
    pub idx: u32,
    pub attempt: u32,
    pub status: Status,
    /// The encoded [`crate::model::TaskResult`].
    pub blob: Vec<u8>,
    /// A failure that is retried: the next attempt becomes due after this long.
    pub retry_in: Option<Duration>,
    /// What the attempt's tokens cost (0 without a price): added to the run's spending.
    pub cost: Nanos,
    /// The task's instance, as its entry says (a per-instance cap counts it there).
    pub instance: String,
}

/// What handing a task back to wait for a rate limit did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deferred {
    /// Queued again for later; `waited`: time counted after rate-limit answers so far.
    Ok { waited: Duration },
    /// Not ours any more (lease lost, or the task ended): nothing changed.
    NotOurs,
    /// Counting this wait would pass the maximum: nothing changed; record the failure.
    OverMax,
}

/// What a cancel did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cancelled {
    /// Tasks that had not started and are now cancelled.
    pub cancelled: u64,
    /// Running tasks whose workers were asked to stop them.
    pub flagged: u64,
    pub finished: bool,
    /// Dependents of a cancelled task that its cancellation started (`all_done`,
    /// `one_failed`, …), in the outbox.
    pub queued: u32,
}

/// A script's `NORUN` error (the run has no `meta`: it expired, or Redis lost it) is the run
/// being gone; every other error stays as it is.
fn gone(e: redis::RedisError, run_id: &str) -> StoreError {
    if e.code() == Some("NORUN") {
        StoreError::NoSuchRun(run_id.to_string())
    } else {
        e.into()
    }
}

fn invoke<'a>(script: &'a redis::Script, keys: &Keys, run_id: &str) -> redis::ScriptInvocation<'a> {
    let mut inv = script.prepare_invoke();
    for k in keys.run_keys(run_id) {
        inv.key(k);
    }
    inv
}

impl Store {
    /// Atomically moves each task from `queued` (its attempt) to `running` under a lease, or
    /// takes over a running task whose lease lapsed (`takeover`); one script call for the
    /// batch. One outcome per item, in order.
    pub async fn mark_running(
        &self,
        conn: &mut Conn,
        run_id: &str,
        claim: &Claim<'_>,
        items: &[ToMark],
    ) -> Result<Vec<MarkRunning>, StoreError> {
        let mut inv = invoke(&scripts::MARK_RUNNING, &self.keys, run_id);
        inv.arg(claim.worker).arg(now_ms()).arg(claim.lease.as_millis() as u64).arg(claim.max_deliveries);
        for it in items {
            inv.arg(it.idx).arg(it.attempt).arg(if it.takeover { "1" } else { "0" }).arg(&it.instance);
        }
        let tags: Vec<String> = inv.invoke_async(conn).await?;
        if tags.len() != items.len() {
            return Err(StoreError::Corrupt(format!("mark-running script answered {} of {} tasks", tags.len(), items.len())));
        }
        tags.iter().map(|t| MarkRunning::from_tag(t)).collect()
    }

    /// Extends the lease of a running task held by `worker`.
    pub async fn renew(
        &self,
        conn: &mut Conn,
        run_id: &str,
        idx: u32,
        attempt: u32,
        worker: &str,
        lease: Duration,
    ) -> Result<Renewed, StoreError> {
        let r: i64 = invoke(&scripts::RENEW, &self.keys, run_id)
            .arg(idx)
            .arg(attempt)
            .arg(worker)
            .arg(now_ms())
            .arg(lease.as_millis() as u64)
            .invoke_async(conn)
            .await?;
        match r {
            1 => Ok(Renewed::Ok),
            2 => Ok(Renewed::CancelRequested),
            0 => Ok(Renewed::Lost),
            other => Err(unknown_tag("renew", &other.to_string())),
        }
    }

    /// Atomically stores results (once per attempt), one script call for the batch. With
    /// `retry_in`, a failure schedules the next attempt instead of ending the task. A final
    /// result updates the counters, releases dependents whose dependencies all succeeded and
    /// skips those of a failed task (a long cascade in chunks: see [`Batch::cascade_left`]).
    /// One outcome per item, in order (their `finished` is false).
    pub async fn record_results(&self, conn: &mut Conn, run_id: &str, items: &[ToRecord]) -> Result<Batch, StoreError> {
        let mut inv = invoke(&scripts::RECORD_RESULT, &self.keys, run_id);
        inv.arg(now_ms());
        for it in items {
            inv.arg(it.idx)
                .arg(it.attempt)
                .arg(it.status.as_str())
                .arg(&it.blob)
                .arg(it.retry_in.map_or(-1i64, |d| d.as_millis() as i64))
                .arg(it.cost)
                .arg(&it.instance);
        }
        let (tags, finished, cascade_left, queued, news): (Vec<String>, u32, u64, u32, String) =
            inv.invoke_async(conn).await.map_err(|e| gone(e, run_id))?;
        if tags.len() != items.len() {
            return Err(StoreError::Corrupt(format!("record script answered {} of {} results", tags.len(), items.len())));
        }
        let outcomes = tags.iter().map(|tag| Recorded::from_tag(tag)).collect::<Result<_, _>>()?;
        let budget_alert = news.split(',').any(|n| n == "budget_alert");
        let budget_reached = news.split(',').any(|n| n == "budget_reached");
        Ok(Batch { outcomes, finished: finished == 1, cascade_left, queued, budget_alert, budget_reached })
    }

    /// Goes on settling the dependents of final tasks where an earlier call stopped (one
    /// chunk of at most 2,000 per call, so Redis serves others in between).
    /// Cheap when there is nothing to do.
    pub async fn continue_cascade(&self, conn: &mut Conn, run_id: &str) -> Result<Cascaded, StoreError> {
        let (left, finished, queued): (u64, u32, u32) =
            invoke(&scripts::CASCADE, &self.keys, run_id).arg(now_ms()).invoke_async(conn).await?;
        Ok(Cascaded { left, finished: finished == 1, queued })
    }

    /// [`Store::continue_cascade`] until nothing is left (each chunk its own script call);
    /// `left` is then 0.
    pub async fn finish_cascade(&self, conn: &mut Conn, run_id: &str) -> Result<Cascaded, StoreError> {
        let mut all = Cascaded::default();
        loop {
            let c = self.continue_cascade(conn, run_id).await?;
            all.finished |= c.finished;
            all.queued += c.queued;
            if c.left == 0 {
                return Ok(all);
            }
        }
    }

    /// Acknowledges and deletes handled entries of one stream (one round trip).
    pub async fn ack(&self, conn: &mut Conn, stream: &str, ids: &[&str]) -> Result<(), StoreError> {
        redis::pipe().xack(stream, self.keys.group(), ids).ignore().xdel(stream, ids).ignore().query_async::<()>(conn).await?;
        Ok(())
    }

    /// Hands a running task back to the queue at once (worker shutdown). True when handed back.
    pub async fn release(&self, conn: &mut Conn, run_id: &str, idx: u32, attempt: u32, worker: &str) -> Result<bool, StoreError> {
        let r: i64 =
            invoke(&scripts::RELEASE, &self.keys, run_id).arg(idx).arg(attempt).arg(worker).arg(now_ms()).invoke_async(conn).await?;
        Ok(r == 1)
    }

    /// Hands a running task back to wait for a rate limit until `due_ms` (same attempt, via
    /// the delayed set). `counted`: time to count against `max` (after a rate-limit answer;
    /// zero for a wait for its turn). See [`Deferred`].
    #[allow(clippy::too_many_arguments)]
    pub async fn defer(
        &self,
        conn: &mut Conn,
        run_id: &str,
        idx: u32,
        attempt: u32,
        worker: &str,
        due_ms: u64,
        counted: Duration,
        max: Duration,
        reason: &str,
    ) -> Result<Deferred, StoreError> {
        let r: i64 = invoke(&scripts::DEFER, &self.keys, run_id)
            .arg(idx)
            .arg(attempt)
            .arg(worker)
            .arg(now_ms())
            .arg(due_ms)
            .arg(counted.as_millis() as u64)
            .arg(max.as_millis() as u64)
            .arg(reason)
            .invoke_async(conn)
            .await?;
        Ok(match r {
            -1 => Deferred::NotOurs,
            -2 => Deferred::OverMax,
            n if n >= 0 => Deferred::Ok { waited: Duration::from_millis(n as u64) },
            n => return Err(StoreError::Corrupt(format!("defer script answered {n}"))),
        })
    }

    /// Moves due retries of a run to its outbox, and in a capped run gives the slots of lapsed
    /// leases to parked tasks; returns how many went to the outbox.
    pub async fn promote_due(&self, conn: &mut Conn, run_id: &str) -> Result<u64, StoreError> {
        invoke(&scripts::PROMOTE, &self.keys, run_id).arg(now_ms()).invoke_async(conn).await.map_err(|e| gone(e, run_id))
    }

    /// Cancels a whole run (`idx` = None) or one task (its dependents are skipped).
    pub async fn cancel(&self, conn: &mut Conn, run_id: &str, idx: Option<u32>) -> Result<Cancelled, StoreError> {
        let (c, f, fin, queued): (i64, u64, u32, u32) = invoke(&scripts::CANCEL, &self.keys, run_id)
            .arg(idx.map(|i| i.to_string()).unwrap_or_default())
            .arg(now_ms())
            .invoke_async(conn)
            .await
            .map_err(|e| gone(e, run_id))?;
        if c < 0 {
            return Err(StoreError::NoSuchRun(run_id.to_string()));
        }
        Ok(Cancelled { cancelled: c as u64, flagged: f, finished: fin == 1, queued })
    }

    /// Approves or rejects a stage that waits for approval, as `who` (user@host, or an API
    /// token's name), in one atomic step.
    pub async fn decide_stage(
        &self,
        conn: &mut Conn,
        run_id: &str,
        stage: &str,
        decision: Decision<'_>,
        who: &str,
    ) -> Result<Decided, StoreError> {
        let (verdict, reason) = match decision {
            Decision::Approve => ("approve", ""),
            Decision::Reject { reason } => ("reject", reason),
        };
        let reply: Vec<redis::Value> = invoke(&scripts::APPROVE, &self.keys, run_id)
            .arg(stage)
            .arg(verdict)
            .arg(who)
            .arg(now_ms())
            .arg(reason)
            .invoke_async(conn)
            .await
            .map_err(|e| gone(e, run_id))?;
        let num = |v: Option<&redis::Value>| -> u32 { v.and_then(|v| redis::from_redis_value::<u32>(v.clone()).ok()).unwrap_or(0) };
        match reply.first().map(|v| redis::from_redis_value::<i64>(v.clone())) {
            Some(Ok(1)) => Ok(Decided::Done { tasks: num(reply.get(1)), finished: num(reply.get(2)) == 1, queued: num(reply.get(3)) }),
            Some(Ok(0)) => {
                let s: String = reply.get(1).and_then(|v| redis::from_redis_value(v.clone()).ok()).unwrap_or_default();
                Ok(Decided::NotAwaiting(if s.is_empty() { None } else { Some(super::read::parse_stage(&s)) }))
            }
            _ => Err(unknown_tag("approve", &format!("{reply:?}"))),
        }
    }

    /// Runs a failed task again (a new attempt), un-skipping what it skipped; `None` when the
    /// task is not failed, timed out or cancelled.
    pub async fn revive(&self, conn: &mut Conn, run_id: &str, idx: u32) -> Result<Option<u32>, StoreError> {
        let n: u32 =
            invoke(&scripts::REVIVE, &self.keys, run_id).arg(idx).arg(now_ms()).invoke_async(conn).await.map_err(|e| gone(e, run_id))?;
        if n == 0 {
            return Ok(None);
        }
        let _: i64 = redis::cmd("SADD").arg(self.keys.active()).arg(run_id).query_async(conn).await?;
        self.flush_outbox(conn, run_id).await?;
        Ok(Some(n))
    }
}
