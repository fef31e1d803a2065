//! Read models of a run: its meta counters, a full snapshot for reports, its task states and
//! specs for the live view, its event stream, and cancel requests for running tasks.

use std::collections::HashMap;

use redis::streams::{StreamReadOptions, StreamReadReply};

use super::{Conn, Store, StoreError};
use crate::model::{Budget, ErrorClass, RunMeta, RunSnapshot, Skip, StageState, StageStatus, StopReason, TaskResult, TaskSpec, TaskState};

/// A change the run's event stream reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// The tasks it is about (none for run-wide events).
    pub tasks: Vec<u32>,
    /// Their new state (a retry is `queued` again); `None` for events that change none.
    pub state: Option<TaskState>,
    /// The run has finished.
    pub run_finished: bool,
    /// The task was handed back to wait: why (`rate_limit`, `max_concurrent`) and until when
    /// at the latest (Unix ms).
    pub waits: Option<(String, u64)>,
    /// What it waits for, in words (a quota it is over).
    pub detail: Option<String>,
    /// For a retry: the attempt that failed (the next one is queued).
    pub retry_of: Option<u32>,
}

/// Events read from a run's stream, and where to go on reading.
#[derive(Debug, Clone, Default)]
pub struct EventBatch {
    pub events: Vec<Event>,
    pub last_id: String,
}

/// A run's `meta` hash (non-empty) as its counters and status.
pub(super) fn parse_meta(run_id: &str, h: &HashMap<String, String>) -> RunMeta {
    let num = |k: &str| h.get(k).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    RunMeta {
        run_id: run_id.to_string(),
        file: h.get("file").cloned().unwrap_or_default(),
        name: h.get("name").cloned().unwrap_or_default(),
        total: num("total"),
        done: num("done"),
        running: num("running"),
        success: num("success"),
        failed: num("failed"),
        timeout: num("timeout"),
        skipped: num("skipped"),
        cancelled: num("cancelled"),
        finished: h.get("status").map(String::as_str) == Some("finished"),
        created_ms: num("created_ms"),
        started_ms: h.get("started_ms").and_then(|v| v.parse().ok()),
        finished_ms: h.get("finished_ms").and_then(|v| v.parse().ok()),
        cost: num("cost"),
        budget: Some(num("budget")).filter(|&b| b > 0).map(|max_cost| Budget::from_alert_at(max_cost, num("budget_alert"))),
        budget_alerted_ms: h.get("budget_alerted_ms").and_then(|v| v.parse().ok()),
        stopped: h.get("stopped").and_then(|s| StopReason::parse(s)).map(|r| (r, num("stopped_ms"))),
    }
}

/// A task running now, from its lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunningTask {
    pub idx: u32,
    pub attempt: u32,
    pub worker: String,
    /// When this attempt started (0 for a lease from a worker that did not say).
    pub started_ms: u64,
    /// When its lease lapses unless renewed.
    pub lease_until_ms: u64,
}

/// A `lease` hash value, `WORKER|EXPIRY_MS|STARTED_MS` (`lease_owner` in lua/prelude.lua);
/// leases of protocol 4 workers lack the start.
fn parse_lease(v: &str) -> Option<RunningTask> {
    let mut parts = v.split('|');
    let worker = parts.next()?.to_string();
    let lease_until_ms = parts.next()?.parse().ok()?;
    let started_ms = parts.next().and_then(|s| s.parse().ok()).unwrap_or(0);
    Some(RunningTask { idx: 0, attempt: 0, worker, started_ms, lease_until_ms })
}

/// A task's state as the run's `state` hash spells it; anything else is corrupt data.
fn stored_state(run_id: &str, idx: u32, s: &str) -> Result<TaskState, StoreError> {
    TaskState::parse(s).ok_or_else(|| StoreError::Corrupt(format!("run {run_id}: task {idx} is in unknown state `{s}`")))
}

/// What a run id typed by a user stands for ([`Store::resolve_run`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunRef {
    /// A run of that id, or the one run whose id starts with it, or the newest (`latest`);
    /// an id no run has comes back as it was (the caller says it does not exist).
    Run(String),
    /// Several runs start with it (the newest first, at most 10 named).
    Ambiguous(Vec<String>),
    /// `latest`, but the namespace holds no run.
    NoRuns,
}

impl Store {
    /// Resolves a run id as a user may type it: a whole id, a unique prefix of one, or
    /// `latest` (the newest run of the namespace).
    pub async fn resolve_run(&self, conn: &mut Conn, given: &str) -> Result<RunRef, StoreError> {
        let keys = &self.keys;
        if given == "latest" {
            let newest: Vec<String> = redis::cmd("ZREVRANGE").arg(keys.runs()).arg(0).arg(0).query_async(conn).await?;
            return Ok(newest.into_iter().next().map_or(RunRef::NoRuns, RunRef::Run));
        }
        let exists: bool = redis::cmd("EXISTS").arg(keys.run(given, "meta")).query_async(conn).await?;
        if exists {
            return Ok(RunRef::Run(given.to_string()));
        }
        let all: Vec<String> = redis::cmd("ZREVRANGE").arg(keys.runs()).arg(0).arg(-1).query_async(conn).await?;
        let mut matches: Vec<String> = all.into_iter().filter(|r| r.starts_with(given)).collect();
        Ok(match matches.len() {
            0 => RunRef::Run(given.to_string()),
            1 => RunRef::Run(matches.remove(0)),
            _ => {
                matches.truncate(10);
                RunRef::Ambiguous(matches)
            }
        })
    }

    /// The counters and status of a run.
    pub async fn run_meta(&self, conn: &mut Conn, run_id: &str) -> Result<RunMeta, StoreError> {
        let keys = &self.keys;
        let h: HashMap<String, String> = redis::cmd("HGETALL").arg(keys.run(run_id, "meta")).query_async(conn).await?;
        if h.is_empty() {
            return Err(StoreError::NoSuchRun(run_id.to_string()));
        }
        Ok(parse_meta(run_id, &h))
    }

    /// Everything about a run's tasks, for reports.
    pub async fn snapshot(&self, conn: &mut Conn, run_id: &str) -> Result<RunSnapshot, StoreError> {
        let keys = &self.keys;
        let meta = self.run_meta(conn, run_id).await?;
        type Blobs = HashMap<u32, Vec<u8>>;
        type Named = HashMap<String, Vec<u8>>;
        type Fields = HashMap<String, String>;
        let (spec, state, result, skip, hist, deliveries): (Blobs, HashMap<u32, String>, Blobs, HashMap<u32, String>, Named, Fields) =
            redis::pipe()
                .hgetall(keys.run(run_id, "spec"))
                .hgetall(keys.run(run_id, "state"))
                .hgetall(keys.run(run_id, "result"))
                .hgetall(keys.run(run_id, "skip"))
                .hgetall(keys.run(run_id, "history"))
                .hgetall(keys.run(run_id, "deliveries"))
                .query_async(conn)
                .await?;
        let n = meta.total as usize;
        let mut specs = Vec::with_capacity(n);
        let mut states = Vec::with_capacity(n);
        let mut results = Vec::with_capacity(n);
        let mut skips = Vec::with_capacity(n);
        let mut history: Vec<Vec<TaskResult>> = vec![Vec::new(); n];
        for (k, blob) in &hist {
            let Some(i) = k.split(':').next().and_then(|i| i.parse::<usize>().ok()).filter(|&i| i < n) else { continue };
            let r = TaskResult::decode(blob).map_err(|e| StoreError::Corrupt(format!("run {run_id}: attempt {k}: {e}")))?;
            history[i].push(r);
        }
        for i in 0..n as u32 {
            let blob = spec.get(&i).ok_or_else(|| StoreError::Corrupt(format!("run {run_id}: task {i} has no spec")))?;
            specs.push(TaskSpec::decode(blob).map_err(|e| StoreError::Corrupt(format!("run {run_id}: spec of task {i}: {e}")))?);
            states.push(match state.get(&i) {
                None => TaskState::Waiting,
                Some(s) => stored_state(run_id, i, s)?,
            });
            results.push(match result.get(&i) {
                Some(b) => Some(TaskResult::decode(b).map_err(|e| StoreError::Corrupt(format!("run {run_id}: result of task {i}: {e}")))?),
                None => None,
            });
            skips.push(skip.get(&i).map(|w| parse_skip(w)));
        }
        // `history` holds the attempts that were retried or revived; the final one is the result.
        for (h, r) in history.iter_mut().zip(&results) {
            if let Some(r) = r.as_ref().filter(|r| !h.iter().any(|x| x.attempt == r.attempt)) {
                h.push(r.clone());
            }
            h.sort_by_key(|r| r.attempt);
        }
        // `r:IDX` in `deliveries`: ms a task waited for rate limits, handed back (lua/defer.lua).
        let mut rate_waits = vec![0u64; n];
        for (k, v) in &deliveries {
            if let Some(i) = k.strip_prefix("r:").and_then(|i| i.parse::<usize>().ok()).filter(|&i| i < n) {
                rate_waits[i] = v.parse().unwrap_or(0);
            }
        }
        let stages = self.stages(conn, run_id).await?;
        Ok(RunSnapshot { meta, specs, states, results, skips, history, stages, rate_waits })
    }
}

impl Store {
    /// The state of every task of a run (`total` tasks; missing ones are waiting).
    pub async fn task_states(&self, conn: &mut Conn, run_id: &str, total: usize) -> Result<Vec<TaskState>, StoreError> {
        let state: HashMap<u32, String> = redis::cmd("HGETALL").arg(self.keys.run(run_id, "state")).query_async(conn).await?;
        let mut out = vec![TaskState::Waiting; total];
        for (i, st) in state {
            let st = stored_state(run_id, i, &st)?;
            if let Some(slot) = out.get_mut(i as usize) {
                *slot = st;
            }
        }
        Ok(out)
    }

    /// The specs of a run's tasks, by index.
    pub async fn task_specs(&self, conn: &mut Conn, run_id: &str) -> Result<Vec<TaskSpec>, StoreError> {
        let spec: HashMap<u32, Vec<u8>> = redis::cmd("HGETALL").arg(self.keys.run(run_id, "spec")).query_async(conn).await?;
        let mut out: Vec<Option<TaskSpec>> = vec![None; spec.len()];
        for (i, blob) in spec {
            let s = TaskSpec::decode(&blob).map_err(|e| StoreError::Corrupt(format!("run {run_id}: spec of task {i}: {e}")))?;
            match out.get_mut(i as usize) {
                Some(slot) => *slot = Some(s),
                None => return Err(StoreError::Corrupt(format!("run {run_id}: spec of task {i} beyond its {} tasks", out.len()))),
            }
        }
        Ok(out.into_iter().flatten().collect())
    }

    /// Events of a run after `after` (`"0"`: from the start), waiting up to `block` for one.
    pub async fn read_events(
        &self,
        conn: &mut Conn,
        run_id: &str,
        after: &str,
        block: std::time::Duration,
    ) -> Result<EventBatch, StoreError> {
        let opts = StreamReadOptions::default().count(2000).block(block.as_millis() as usize);
        let reply: Option<StreamReadReply> =
            redis::cmd("XREAD").arg(&opts).arg("STREAMS").arg(self.keys.run(run_id, "events")).arg(after).query_async(conn).await?;
        let mut batch = EventBatch { events: Vec::new(), last_id: after.to_string() };
        for key in reply.map(|r| r.keys).unwrap_or_default() {
            for e in key.ids {
                batch.last_id = e.id.clone();
                let Some(st) = e.get::<String>("state") else { continue };
                // One task (`idx`) or a batch of them (`idxs`, comma-separated).
                let one: Option<u32> = e.get("idx");
                let many: Option<String> = e.get("idxs");
                let tasks = one.into_iter().chain(many.iter().flat_map(|l| l.split(',').filter_map(|i| i.parse().ok()))).collect();
                let (state, run_finished) = match st.as_str() {
                    "retry" => (Some(TaskState::Queued), false),
                    "finished" => (None, true),
                    s => (TaskState::parse(s), false),
                };
                let waits = e.get::<String>("wait").zip(e.get::<u64>("until"));
                let detail = e.get::<String>("detail");
                let retry_of = if st == "retry" { e.get::<u32>("attempt").map(|next| next.saturating_sub(1)) } else { None };
                batch.events.push(Event { tasks, state, run_finished, waits, detail, retry_of });
            }
        }
        Ok(batch)
    }

    /// The state and stored result of each of the given tasks of a run (what a task's
    /// templates read of its dependencies): one round trip.
    pub async fn task_results(
        &self,
        conn: &mut Conn,
        run_id: &str,
        idxs: &[u32],
    ) -> Result<Vec<(TaskState, Option<TaskResult>)>, StoreError> {
        if idxs.is_empty() {
            return Ok(Vec::new());
        }
        let (states, blobs): (Vec<Option<String>>, Vec<Option<Vec<u8>>>) = redis::pipe()
            .cmd("HMGET")
            .arg(self.keys.run(run_id, "state"))
            .arg(idxs)
            .cmd("HMGET")
            .arg(self.keys.run(run_id, "result"))
            .arg(idxs)
            .query_async(conn)
            .await?;
        let mut out = Vec::with_capacity(idxs.len());
        for ((&i, st), blob) in idxs.iter().zip(states).zip(blobs) {
            let state = match st {
                None => TaskState::Waiting,
                Some(s) => stored_state(run_id, i, &s)?,
            };
            let result = match blob {
                Some(b) => Some(TaskResult::decode(&b).map_err(|e| StoreError::Corrupt(format!("run {run_id}: result of task {i}: {e}")))?),
                None => None,
            };
            out.push((state, result));
        }
        Ok(out)
    }

    /// The tasks of a run that are running now: who runs them, since when, which attempt.
    pub async fn running_tasks(&self, conn: &mut Conn, run_id: &str) -> Result<Vec<RunningTask>, StoreError> {
        let leases: HashMap<u32, String> = redis::cmd("HGETALL").arg(self.keys.run(run_id, "lease")).query_async(conn).await?;
        if leases.is_empty() {
            return Ok(Vec::new());
        }
        // The attempts of the leased tasks only (the hash holds one per task of the run).
        let idxs: Vec<u32> = leases.keys().copied().collect();
        let attempts: Vec<Option<u32>> = redis::cmd("HMGET").arg(self.keys.run(run_id, "attempt")).arg(&idxs).query_async(conn).await?;
        let mut out: Vec<RunningTask> = idxs
            .iter()
            .zip(attempts)
            .filter_map(|(&idx, attempt)| {
                let lease = parse_lease(&leases[&idx])?;
                Some(RunningTask { idx, attempt: attempt.unwrap_or(1), ..lease })
            })
            .collect();
        out.sort_by_key(|t| (t.started_ms, t.idx));
        Ok(out)
    }

    /// The stored results of earlier attempts (`history`, `(idx, attempt)`), e.g. the one a
    /// retry follows; missing ones are `None`.
    pub async fn attempt_results(
        &self,
        conn: &mut Conn,
        run_id: &str,
        which: &[(u32, u32)],
    ) -> Result<Vec<Option<TaskResult>>, StoreError> {
        if which.is_empty() {
            return Ok(Vec::new());
        }
        let fields: Vec<String> = which.iter().map(|(i, a)| format!("{i}:{a}")).collect();
        let blobs: Vec<Option<Vec<u8>>> = redis::cmd("HMGET").arg(self.keys.run(run_id, "history")).arg(&fields).query_async(conn).await?;
        blobs
            .into_iter()
            .zip(&fields)
            .map(|(b, f)| {
                b.map(|b| TaskResult::decode(&b).map_err(|e| StoreError::Corrupt(format!("run {run_id}: attempt {f}: {e}")))).transpose()
            })
            .collect()
    }

    /// Which of the given running tasks of a run someone asked to cancel (one HMGET).
    pub async fn cancel_requested(&self, conn: &mut Conn, run_id: &str, idxs: &[u32]) -> Result<Vec<bool>, StoreError> {
        let flags: Vec<Option<String>> = redis::cmd("HMGET").arg(self.keys.run(run_id, "cancel")).arg(idxs).query_async(conn).await?;
        Ok(flags.into_iter().map(|f| f.is_some()).collect())
    }
}

impl Store {
    /// The stages with `approval_required` that a run reached (its `stages` hash), by name.
    pub async fn stages(&self, conn: &mut Conn, run_id: &str) -> Result<Vec<StageState>, StoreError> {
        let h: HashMap<String, String> = redis::cmd("HGETALL").arg(self.keys.run(run_id, "stages")).query_async(conn).await?;
        let mut out: Vec<StageState> = h.into_iter().map(|(name, v)| StageState { name, status: parse_stage(&v) }).collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }
}

/// A `stages` hash value (`awaiting`, `approved|WHO|MS`, `rejected|WHO|MS|REASON`; written by
/// `start_task` in lua/prelude.lua and lua/approve.lua). Anything else reads as awaiting.
pub(super) fn parse_stage(v: &str) -> StageStatus {
    let mut parts = v.splitn(4, '|');
    let kind = parts.next().unwrap_or("");
    let by = parts.next().unwrap_or("").to_string();
    let at_ms = parts.next().and_then(|t| t.parse().ok()).unwrap_or(0);
    match kind {
        "approved" => StageStatus::Approved { by, at_ms },
        "rejected" => StageStatus::Rejected { by, at_ms, reason: parts.next().unwrap_or("").to_string() },
        _ => StageStatus::Awaiting,
    }
}

/// A `skip` hash value (`d:P`, `c:P`, `r:`; see `skip_task` in lua/prelude.lua; `b:` on a
/// task its run's budget cancelled, `spend` in lua/budget.lua). Anything
/// else reads as a failure's skip, so a damaged value never hides a failure.
fn parse_skip(v: &str) -> Skip {
    let (class, cause) = v.split_once(':').unwrap_or(("d", v));
    let class = match class {
        "c" => ErrorClass::Condition,
        "r" => ErrorClass::Rejected,
        "b" => ErrorClass::Budget,
        _ => ErrorClass::Dependency,
    };
    Skip { class, cause: cause.parse().ok() }
}

#[cfg(test)]
mod skip_tests {
    use super::*;

    #[test]
    fn skip_values_read_back() {
        assert_eq!(parse_skip("d:3"), Skip { class: ErrorClass::Dependency, cause: Some(3) });
        assert_eq!(parse_skip("c:12"), Skip { class: ErrorClass::Condition, cause: Some(12) });
        assert_eq!(parse_skip("r:"), Skip { class: ErrorClass::Rejected, cause: None });
        assert_eq!(parse_skip("b:"), Skip { class: ErrorClass::Budget, cause: None });
        assert_eq!(parse_skip("7"), Skip { class: ErrorClass::Dependency, cause: Some(7) });
        assert_eq!(parse_skip("x:?"), Skip { class: ErrorClass::Dependency, cause: None });
    }

    #[test]
    fn leases_read_back() {
        let l = parse_lease("box-12-ab01|1700000005000|1700000000000").unwrap();
        assert_eq!((l.worker.as_str(), l.lease_until_ms, l.started_ms), ("box-12-ab01", 1_700_000_005_000, 1_700_000_000_000));
        assert_eq!(parse_lease("w|5").map(|l| l.started_ms), Some(0));
        assert_eq!(parse_lease("garbage"), None);
    }

    #[test]
    fn stage_values_read_back() {
        assert_eq!(parse_stage("awaiting"), StageStatus::Awaiting);
        assert_eq!(parse_stage("approved|ann@box|17"), StageStatus::Approved { by: "ann@box".into(), at_ms: 17 });
        assert_eq!(
            parse_stage("rejected|bo@h|5|not | now"),
            StageStatus::Rejected { by: "bo@h".into(), at_ms: 5, reason: "not | now".into() }
        );
    }
}
