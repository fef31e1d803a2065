//! Creating a run: every key staged under another name, then one script renames them into
//! place, so a run appears whole or not at all.

use std::time::Duration;

use super::conn::send_while_building;
use super::keys::Keys;
use super::{scripts, Conn, Store, StoreError};
use crate::model::{now_ms, RunLimits, TaskSpec, TaskState, When};

/// Longest run id accepted from a user.
const MAX_RUN_ID: usize = 64;

/// Checks a run id a user typed before it goes into any key: letters, digits, `-`, `_`, `.`,
/// at most 64 (ids zo-submit makes look like `20261201-203724-3fa2`).
pub fn check_run_id(id: &str) -> Result<(), String> {
    let shown: String = id.chars().take(40).flat_map(char::escape_default).collect();
    if id.is_empty() || id.len() > MAX_RUN_ID || !id.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')) {
        return Err(format!(
            "`{shown}{}` is not a run id; run ids look like 20261201-203724-3fa2 (letters, digits, `-`, `_`, `.`, at most {MAX_RUN_ID}); `zo-submit --detach` prints them",
            if id.chars().count() > 40 { "…" } else { "" }
        ));
    }
    Ok(())
}

/// A new run id: creation time plus randomness, sortable and readable.
pub fn new_run_id() -> String {
    let t = time::OffsetDateTime::now_utc();
    let fmt = time::macros::format_description!("[year][month][day]-[hour][minute][second]");
    format!("{}-{:04x}", t.format(&fmt).unwrap_or_default(), rand::random::<u16>())
}

/// What the producer knows about a run when creating it.
pub struct NewRun<'a> {
    pub run_id: &'a str,
    pub file: &'a str,
    pub name: Option<&'a str>,
    pub specs: &'a [TaskSpec],
    pub retention: Duration,
    /// Its `resource_limits` (concurrency caps go to `meta` and `slotinfo`).
    pub limits: &'a RunLimits,
}

/// Tasks per pipeline while a run is created: bounds the memory a large run needs.
const CREATE_CHUNK: usize = 2000;

/// How long the staging keys of a run being created live if the producer dies before
/// committing them.
const STAGING_TTL_S: u64 = 3600;

/// The run keys [`create_run`] writes (besides `meta`), each first under a staging name.
const CREATED_KEYS: [&str; 9] = ["spec", "state", "attempt", "pending", "children", "rules", "stages", "outbox", "slotinfo"];

/// A task's entry in the run's `rules` hash, read by `rule_of` in `lua/prelude.lua`:
/// `RULE|DEPS|CONDS|P:w,…` — its trigger rule, how many dependencies the rule reads, how many
/// conditions it has, and per condition the task and what it must do (`s` succeed, `f` fail;
/// upper case when that task is one of its dependencies too). `None` for a task on the fast
/// path (every dependency must succeed, no condition), which keeps a plain count in `pending`.
pub(crate) fn rule_entry(s: &TaskSpec) -> Option<String> {
    if !has_rule_entry(s) {
        return None;
    }
    let conds: Vec<String> = s
        .conditions
        .iter()
        .map(|c| {
            let w = match c.when {
                When::Succeeded => 's',
                When::Failed => 'f',
            };
            let w = if s.deps.contains(&c.on) { w.to_ascii_uppercase() } else { w };
            format!("{}:{w}", c.on)
        })
        .collect();
    Some(format!("{}|{}|{}|{}", s.trigger_rule.as_str(), s.deps.len(), s.conditions.len(), conds.join(",")))
}

/// Whether [`rule_entry`] writes an entry for the task.
fn has_rule_entry(s: &TaskSpec) -> bool {
    !s.plain_rule() && !s.is_root()
}

/// Stages whose tasks wait for an approval from the start (they have roots).
fn awaiting_stages(specs: &[TaskSpec]) -> Vec<&str> {
    let mut awaiting: Vec<&str> = Vec::new();
    for s in specs.iter().filter(|s| s.is_root() && s.needs_approval) {
        if let Some(st) = s.stage.as_deref().filter(|st| !awaiting.contains(st)) {
            awaiting.push(st);
        }
    }
    awaiting
}

/// Where a task starts: a root is queued (or awaits its stage's approval), others wait.
fn initial_state(s: &TaskSpec) -> TaskState {
    match (s.is_root(), s.needs_approval) {
        (true, false) => TaskState::Queued,
        (true, true) => TaskState::AwaitingApproval,
        (false, _) => TaskState::Waiting,
    }
}

/// A job spec encoded for its stream entry, kept from [`create_run`] so the first flush does
/// not encode it again.
pub type RootBlobs = Vec<(u32, Vec<u8>)>;

/// Creates every key of a run, all or nothing, roots in the outbox, and returns the roots'
/// encoded specs (for [`Store::flush_outbox_with`]). The keys are streamed to Redis under staging
/// names (`…:new:spec` and so on, expiring after [`STAGING_TTL_S`]) in pipelines of
/// [`CREATE_CHUNK`] tasks — Redis stores one chunk while the next is encoded, and a
/// 100,000-task run never sits in memory as one command buffer — and then one script renames
/// them into place and writes `meta`: until then nothing of the run is visible, and a producer
/// that dies half-way leaves only staging keys that expire.
impl Store {
    pub async fn create_run(&self, conn: &mut Conn, run: &NewRun<'_>) -> Result<RootBlobs, StoreError> {
        create_run(conn, &self.keys, run).await
    }
}

async fn create_run(conn: &mut Conn, keys: &Keys, run: &NewRun<'_>) -> Result<RootBlobs, StoreError> {
    let created = stage_and_commit(conn, keys, run).await;
    if created.is_err() {
        // Whatever was staged goes (it would expire anyway); a committed run has none left.
        let mut del = redis::cmd("DEL");
        for s in CREATED_KEYS {
            del.arg(staging_key(keys, run.run_id, s));
        }
        let _ = del.query_async::<()>(conn).await;
    }
    let (now, roots) = created?;
    // Shared index keys are written by single commands, outside the run's script (one slot).
    redis::pipe().zadd(keys.runs(), run.run_id, now).ignore().sadd(keys.active(), run.run_id).ignore().query_async::<()>(conn).await?;
    Ok(roots)
}

/// Adds an HSET of `fields` to `key` unless there are none; says whether it did.
fn hset_some<V: redis::ToRedisArgs>(p: &mut redis::Pipeline, key: &str, fields: &[(u32, V)]) -> bool {
    if !fields.is_empty() {
        p.hset_multiple(key, fields).ignore();
    }
    !fields.is_empty()
}

/// Where [`create_run`] stages one of a run's keys.
fn staging_key(keys: &Keys, run_id: &str, suffix: &str) -> String {
    keys.run(run_id, &format!("new:{suffix}"))
}

/// The two steps of [`create_run`]; returns the creation time and the roots' blobs.
async fn stage_and_commit(conn: &mut Conn, keys: &Keys, run: &NewRun<'_>) -> Result<(u64, RootBlobs), StoreError> {
    let (now, written, roots) = stage_run(conn, keys, run).await?;
    let mut commit = scripts::COMMIT_RUN.prepare_invoke();
    commit.key(keys.run(run.run_id, "meta"));
    for s in &written {
        commit.key(staging_key(keys, run.run_id, s));
    }
    for s in &written {
        commit.key(keys.run(run.run_id, s));
    }
    let with_rules = run.specs.iter().filter(|s| has_rule_entry(s) || s.needs_approval).count();
    let cap = |c: Option<u32>| c.map_or_else(|| "0".to_string(), |n| n.to_string());
    let budget = run.limits.budget;
    let meta: [(&str, String); 19] = [
        ("run_id", run.run_id.to_string()),
        ("file", run.file.to_string()),
        ("name", run.name.unwrap_or("").to_string()),
        ("total", run.specs.len().to_string()),
        ("done", "0".into()),
        ("running", "0".into()),
        ("success", "0".into()),
        ("failed", "0".into()),
        ("timeout", "0".into()),
        ("skipped", "0".into()),
        ("cancelled", "0".into()),
        ("status", "running".into()),
        ("created_ms", now.to_string()),
        ("retention_s", run.retention.as_secs().to_string()),
        // Tasks with an entry in `rules`: none lets the scripts skip looking.
        ("rules", with_rules.to_string()),
        // Concurrency caps, read by slots.lua (0: none).
        ("cap_all", cap(run.limits.max_concurrent_tasks)),
        ("cap_inst", cap(run.limits.max_tasks_per_instance)),
        // The budget and the spending that raises its alert, nano-dollars (0: none), read by budget.lua.
        ("budget", budget.map_or(0, |b| b.max_cost).to_string()),
        ("budget_alert", budget.map_or(0, |b| b.alert_at()).to_string()),
    ];
    for (f, v) in &meta {
        commit.arg(*f).arg(v);
    }
    let committed: i64 = commit.invoke_async(conn).await?;
    if committed != 1 {
        return Err(StoreError::Corrupt(format!("run {} already exists; nothing was changed (submit again for a new run id)", run.run_id)));
    }
    Ok((now, roots))
}

/// Writes the staging keys of [`create_run`]: chunks are encoded while Redis stores the one
/// before. Returns the creation time, the keys written (suffixes) and the roots' blobs.
async fn stage_run(conn: &mut Conn, keys: &Keys, run: &NewRun<'_>) -> Result<(u64, Vec<&'static str>, RootBlobs), StoreError> {
    let staging: Vec<String> = CREATED_KEYS.iter().map(|s| staging_key(keys, run.run_id, s)).collect();
    let n = run.specs.len();
    let mut children: Vec<Vec<u32>> = vec![Vec::new(); n];
    for (i, s) in run.specs.iter().enumerate() {
        for d in s.parents() {
            children[d as usize].push(i as u32);
        }
    }
    let now = now_ms();
    let at = |s: &str| CREATED_KEYS.iter().position(|c| *c == s).expect("a created key");
    let mut written = [false; CREATED_KEYS.len()];
    let mut roots: RootBlobs = Vec::new();
    let pipes = run.specs.chunks(CREATE_CHUNK).enumerate().map(|(c, chunk)| {
        let first = (c * CREATE_CHUNK) as u32;
        // (index, spec) of this chunk's tasks.
        let chunk: Vec<(u32, &TaskSpec)> = chunk.iter().enumerate().map(|(i, s)| (first + i as u32, s)).collect();
        let mut p = redis::pipe();
        let before = written;
        if c == 0 {
            // Start clean should an earlier attempt with this run id have left staging keys.
            p.del(&staging).ignore();
        }
        let blobs: Vec<Vec<u8>> = chunk.iter().map(|(_, s)| s.encode()).collect();
        let spec: Vec<(u32, &[u8])> = chunk.iter().zip(&blobs).map(|((i, _), b)| (*i, b.as_slice())).collect();
        written[at("spec")] |= hset_some(&mut p, &staging[at("spec")], &spec);
        let init: Vec<TaskState> = chunk.iter().map(|(_, s)| initial_state(s)).collect();
        let queued = |k: usize| init[k] == TaskState::Queued;
        let state: Vec<(u32, &str)> = chunk.iter().zip(&init).map(|((i, _), st)| (*i, st.as_str())).collect();
        written[at("state")] |= hset_some(&mut p, &staging[at("state")], &state);
        let attempt: Vec<(u32, u32)> = chunk.iter().enumerate().map(|(k, (i, _))| (*i, u32::from(queued(k)))).collect();
        written[at("attempt")] |= hset_some(&mut p, &staging[at("attempt")], &attempt);
        let pending: Vec<(u32, usize)> =
            chunk.iter().filter(|(_, s)| !s.is_root() && s.plain_rule()).map(|(i, s)| (*i, s.deps.len())).collect();
        written[at("pending")] |= hset_some(&mut p, &staging[at("pending")], &pending);
        let mut rules: Vec<(String, String)> = chunk.iter().filter_map(|(i, s)| rule_entry(s).map(|r| (i.to_string(), r))).collect();
        for (i, s) in &chunk {
            if let Some(st) = s.stage.as_ref().filter(|_| s.needs_approval) {
                rules.push((format!("a:{i}"), st.clone()));
            }
        }
        if !rules.is_empty() {
            p.hset_multiple(&staging[at("rules")], &rules).ignore();
            written[at("rules")] = true;
        }
        let stages: Vec<(&str, &str)> =
            if c == 0 { awaiting_stages(run.specs).into_iter().map(|st| (st, "awaiting")).collect() } else { Vec::new() };
        if !stages.is_empty() {
            p.hset_multiple(&staging[at("stages")], &stages).ignore();
            written[at("stages")] = true;
        }
        if run.limits.max_tasks_per_instance.is_some() {
            // Per-instance caps count slots by instance: each task's, read by slots.lua.
            let inst: Vec<(String, &str)> = chunk.iter().map(|(i, s)| (format!("i:{i}"), s.instance.as_str())).collect();
            p.hset_multiple(&staging[at("slotinfo")], &inst).ignore();
            written[at("slotinfo")] = true;
        }
        let ch: Vec<(u32, String)> = chunk
            .iter()
            .filter(|(i, _)| !children[*i as usize].is_empty())
            .map(|(i, _)| (*i, children[*i as usize].iter().map(u32::to_string).collect::<Vec<_>>().join(",")))
            .collect();
        written[at("children")] |= hset_some(&mut p, &staging[at("children")], &ch);
        let root_entries: Vec<String> = chunk.iter().enumerate().filter(|&(k, _)| queued(k)).map(|(_, (i, _))| format!("{i}:1")).collect();
        if !root_entries.is_empty() {
            p.rpush(&staging[at("outbox")], root_entries).ignore();
            written[at("outbox")] = true;
        }
        // A chunk that creates a staging key also sets its expiry (later writes keep it),
        // in one MULTI: a producer killed mid-write leaves no staging key without one.
        let mut creates = false;
        for (i, key) in staging.iter().enumerate() {
            if written[i] && !before[i] {
                p.expire(key, STAGING_TTL_S as i64).ignore();
                creates = true;
            }
        }
        if creates {
            p.atomic();
        }
        roots.extend(chunk.iter().zip(blobs).enumerate().filter(|&(k, _)| queued(k)).map(|(_, ((i, _), b))| (*i, b)));
        Ok(p)
    });
    send_while_building(conn, pipes).await?;
    let written = CREATED_KEYS.iter().zip(written).filter(|(_, w)| *w).map(|(s, _)| *s).collect();
    Ok((now, written, roots))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_ids_are_checked() {
        assert!(check_run_id(&new_run_id()).is_ok());
        for bad in ["", "*", "a b", "{x}", "x\u{1b}]0;t", &"9".repeat(65)] {
            assert!(check_run_id(bad).is_err(), "{bad:?}");
        }
        assert!(check_run_id("*").unwrap_err().contains("is not a run id"));
    }

    #[test]
    fn rule_entries_name_the_rule_and_every_condition() {
        use crate::model::{Condition, TriggerRule};
        let plain = TaskSpec { deps: vec![0], ..TaskSpec::new("t", "fast") };
        assert_eq!(rule_entry(&plain), None);
        let root = TaskSpec { trigger_rule: TriggerRule::AllDone, ..TaskSpec::new("t", "fast") };
        assert_eq!(rule_entry(&root), None, "a root starts at once whatever its rule");
        let s = TaskSpec {
            deps: vec![0, 2],
            trigger_rule: TriggerRule::OneFailed,
            conditions: vec![Condition { on: 2, when: When::Succeeded }, Condition { on: 5, when: When::Failed }],
            ..TaskSpec::new("t", "fast")
        };
        assert_eq!(rule_entry(&s).as_deref(), Some("one_failed|2|2|2:S,5:f"));
    }
}
