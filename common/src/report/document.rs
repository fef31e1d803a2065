//! The results document of a run (the seed's JSON shape: `summary`, `results_by_instance`,
//! `tasks[]`) built from a [`RunSnapshot`].

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::units::{pct, secs};
use crate::catalog::Catalog;
use crate::model::{
    format_usd, nanos_to_usd, rfc3339, Counts, ErrorClass, Nanos, Priority, RunSnapshot, Skip, StageStatus, Status, TaskResult, TaskState,
    TriggerRule, When,
};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResultsDocument {
    pub run_id: String,
    pub task_file: String,
    pub summary: Summary,
    pub results_by_instance: BTreeMap<String, InstanceSummary>,
    /// Stages with `approval_required` that the run reached: who decided, when.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stages: Vec<StageReport>,
    pub tasks: Vec<TaskReport>,
}

/// A stage that waited for an approval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageReport {
    pub name: String,
    /// `awaiting_approval`, `approved` or `rejected`.
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub timestamp: String,
    pub run_id: String,
    pub total_tasks: u64,
    /// `successful, failed, timeout, skipped, cancelled`.
    #[serde(flatten)]
    pub counts: Counts,
    /// Percent of tasks that succeeded.
    pub success_rate: f64,
    /// Sum of task durations, seconds.
    pub total_duration: f64,
    /// Mean duration of tasks that ran, seconds.
    pub average_duration: f64,
    /// From submission to the last result, seconds.
    pub wall_time: f64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// Dollars spent: every attempt of every task at its price (absent when no task has a price).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost: Option<f64>,
    /// The run's `resource_limits.budget` and what became of it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget: Option<BudgetReport>,
}

/// A run's budget: its limit, what was spent, when the alert fired and whether it stopped
/// the run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BudgetReport {
    /// Dollars.
    pub max_cost: f64,
    /// Share of `max_cost` that raises the alert.
    pub alert_threshold: f64,
    /// Dollars the recorded attempts cost (what the budget counts).
    pub spent: f64,
    /// When spending reached the threshold (the `budget_alert` event).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alerted_at: Option<String>,
    /// When spending reached the budget: no task started after this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped_at: Option<String>,
    /// Tasks cancelled because the budget was spent.
    pub cancelled_tasks: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct InstanceSummary {
    pub model: String,
    pub total: u64,
    #[serde(flatten)]
    pub counts: Counts,
    pub success_rate: f64,
    pub average_duration: f64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// Dollars spent on this instance (absent without a price).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskReport {
    pub task_name: String,
    pub ccr_instance: String,
    pub status: TaskState,
    /// Seconds.
    pub duration: f64,
    pub output: String,
    pub error: Option<String>,
    pub error_class: Option<ErrorClass>,
    pub exit_code: Option<i32>,
    pub timestamp: String,
    /// When its last attempt started (RFC 3339); absent for a task that never ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    pub attempts: u32,
    pub worker: Option<String>,
    /// Seconds between the job entering its queue and a worker starting it.
    pub queue_wait: f64,
    pub dependencies: Vec<String>,
    /// Its `pipeline:` stage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage: Option<String>,
    /// When it may start over its dependencies (left out when `all_success`).
    #[serde(default, skip_serializing_if = "TriggerRule::is_default")]
    pub trigger_rule: TriggerRule,
    /// `on_success`/`on_failure` edges naming it: which task, and how that task must end.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<ConditionReport>,
    pub tags: Vec<String>,
    pub description: Option<String>,
    pub output_file: Option<String>,
    pub command: Option<CommandReport>,
    pub agent: Option<AgentReport>,
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// Dollars its attempts cost, retried ones included (absent without a price).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost: Option<f64>,
    /// Seconds it waited for rate limits (its turn, or a backoff after a rate-limit answer),
    /// over every attempt.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub rate_limit_wait: f64,
    pub priority: Priority,
    /// Taken over from a worker whose lease lapsed.
    pub reclaimed: bool,
    /// Every attempt that ended, oldest first (earlier failures that were retried included).
    pub attempt_history: Vec<AttemptReport>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttemptReport {
    pub attempt: u32,
    pub status: Status,
    pub error_class: Option<ErrorClass>,
    pub error: Option<String>,
    pub worker: String,
    pub duration: f64,
    pub timestamp: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CommandReport {
    pub stdout: String,
    pub stderr: String,
    pub exit_code: Option<i32>,
    pub duration: f64,
    pub truncated: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConditionReport {
    pub task: String,
    pub when: When,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentReport {
    pub is_error: bool,
    pub exit_code: Option<i32>,
    pub api_error_status: Option<i64>,
    pub num_turns: Option<u64>,
    pub duration: f64,
    pub stderr: String,
}

/// Why task `i` was skipped, in words (names and rules from the task file).
fn skip_reason(snap: &RunSnapshot, i: usize, skip: &Skip) -> String {
    let spec = &snap.specs[i];
    if skip.class == ErrorClass::Rejected {
        let stage = spec.stage.as_deref().unwrap_or("?");
        return match snap.stages.iter().find(|s| s.name == stage).map(|s| &s.status) {
            Some(StageStatus::Rejected { by, at_ms, reason }) => format!(
                "skipped: stage `{stage}` was rejected by {by} at {}{}",
                rfc3339(*at_ms),
                if reason.is_empty() { String::new() } else { format!(": {reason}") }
            ),
            _ => format!("skipped: stage `{stage}` was rejected"),
        };
    }
    let Some(cause) = skip.cause.filter(|&c| (c as usize) < snap.specs.len()) else {
        return "skipped".into();
    };
    let name = &snap.specs[cause as usize].name;
    let how = match snap.states[cause as usize] {
        TaskState::Skipped => "was skipped".to_string(),
        st => format!("ended with status {}", st.as_str()),
    };
    if let Some(c) = spec.conditions.iter().find(|c| c.on == cause && skip.class == ErrorClass::Condition) {
        let (list, when) = match c.when {
            When::Succeeded => ("on_success", "succeeds"),
            When::Failed => ("on_failure", "fails"),
        };
        return format!("skipped: condition not met: it runs when `{name}` {when} (`{list}`), and `{name}` {how}");
    }
    if spec.trigger_rule.is_default() && skip.class == ErrorClass::Dependency {
        return format!("skipped: dependency `{name}` {how}");
    }
    format!("skipped: trigger rule {} can no longer be met: dependency `{name}` {how}", spec.trigger_rule.as_str())
}

impl TaskReport {
    /// It counts against the run: failed, timed out, cancelled, or skipped because of a
    /// failure or the budget (not a condition that did not hold, nor a rejected stage).
    pub fn is_failure(&self) -> bool {
        match self.status {
            TaskState::Failed | TaskState::Timeout | TaskState::Cancelled => true,
            TaskState::Skipped => !matches!(self.error_class, Some(ErrorClass::Condition | ErrorClass::Rejected)),
            _ => false,
        }
    }
}

impl ResultsDocument {
    /// Whether the run succeeded (exit code 0): every task succeeded or was skipped because its
    /// condition did not hold (a branch not taken, a rejected stage). A failure, a timeout, a
    /// cancellation or a skip caused by a failure makes it fail.
    pub fn succeeded(&self) -> bool {
        self.tasks.iter().all(|t| {
            t.status == TaskState::Success
                || (t.status == TaskState::Skipped && matches!(t.error_class, Some(ErrorClass::Condition | ErrorClass::Rejected)))
        })
    }
}

fn is_zero(x: &f64) -> bool {
    *x == 0.0
}

/// What a task's attempts cost, when any of them was priced.
fn task_cost(attempts: &[TaskResult]) -> Option<Nanos> {
    attempts.iter().filter_map(|a| a.cost_nanos).reduce(|a, b| a.saturating_add(b))
}

/// Builds the results document of a run.
pub fn build(snap: &RunSnapshot, catalog: &Catalog) -> ResultsDocument {
    let meta = &snap.meta;
    let end_ms = meta.finished_ms.unwrap_or_else(crate::model::now_ms);
    let (tasks, costs): (Vec<TaskReport>, Vec<Option<Nanos>>) = (0..snap.specs.len()).map(|i| task_report(snap, i, end_ms)).unzip();
    let Totals { by_inst, counts, total_ms, ran, tin, tout, run_cost } = totals(snap, &tasks, &costs, catalog);
    let summary = Summary {
        timestamp: rfc3339(end_ms),
        run_id: meta.run_id.clone(),
        total_tasks: tasks.len() as u64,
        counts,
        success_rate: pct(counts.successful, tasks.len() as u64),
        total_duration: secs(total_ms),
        average_duration: total_ms.checked_div(ran).map_or(0.0, secs),
        wall_time: secs(end_ms.saturating_sub(meta.created_ms)),
        input_tokens: tin,
        output_tokens: tout,
        cost: run_cost.map(nanos_to_usd),
        budget: budget_report(snap),
    };
    let stages = stage_reports(snap);
    ResultsDocument { run_id: meta.run_id.clone(), task_file: meta.file.clone(), summary, results_by_instance: by_inst, stages, tasks }
}

/// One task's report, and what it cost (every attempt).
fn task_report(snap: &RunSnapshot, i: usize, end_ms: u64) -> (TaskReport, Option<Nanos>) {
    let meta = &snap.meta;
    let spec = &snap.specs[i];
    let state = snap.states[i];
    let deps: Vec<String> = spec.deps.iter().map(|&d| snap.specs[d as usize].name.clone()).collect();
    let mut t = TaskReport {
        task_name: spec.name.clone(),
        ccr_instance: spec.instance.clone(),
        status: state,
        duration: 0.0,
        output: String::new(),
        error: None,
        error_class: None,
        exit_code: None,
        timestamp: rfc3339(end_ms),
        started_at: None,
        attempts: 0,
        worker: None,
        queue_wait: 0.0,
        dependencies: deps,
        stage: spec.stage.clone(),
        trigger_rule: spec.trigger_rule,
        conditions: spec
            .conditions
            .iter()
            .map(|c| ConditionReport { task: snap.specs[c.on as usize].name.clone(), when: c.when })
            .collect(),
        tags: spec.tags.clone(),
        description: spec.description.clone(),
        output_file: spec.output_file.clone(),
        command: None,
        agent: None,
        input_tokens: 0,
        output_tokens: 0,
        priority: spec.priority,
        reclaimed: false,
        attempt_history: snap.history[i]
            .iter()
            .map(|h| AttemptReport {
                attempt: h.attempt,
                status: h.outcome.status,
                error_class: h.outcome.error_class,
                error: h.outcome.error.clone(),
                worker: h.worker.clone(),
                duration: secs(h.duration_ms()),
                timestamp: rfc3339(h.finished_ms),
                cost: h.cost_nanos.map(nanos_to_usd),
            })
            .collect(),
        cost: None,
        rate_limit_wait: 0.0,
    };
    let cost = task_cost(&snap.history[i]);
    t.rate_limit_wait = secs(snap.rate_waits.get(i).copied().unwrap_or(0) + snap.history[i].iter().map(|a| a.rate_wait_ms).sum::<u64>());
    t.cost = cost.map(nanos_to_usd);
    if let Some(r) = &snap.results[i] {
        let o = &r.outcome;
        t.status = o.status.state();
        t.duration = secs(r.duration_ms());
        t.output = o.output.clone();
        t.error = o.error.clone();
        t.error_class = o.error_class;
        t.exit_code = o.exit_code;
        t.timestamp = rfc3339(r.finished_ms);
        t.started_at = Some(rfc3339(r.started_ms));
        t.attempts = r.attempt;
        t.worker = Some(r.worker.clone());
        t.queue_wait = secs(r.queue_wait_ms);
        t.reclaimed = r.reclaimed;
        t.command = o.command.as_ref().map(|c| CommandReport {
            stdout: c.stdout.clone(),
            stderr: c.stderr.clone(),
            exit_code: c.exit_code,
            duration: secs(c.duration_ms),
            truncated: c.truncated,
        });
        if let Some(a) = &o.agent {
            t.input_tokens = a.input_tokens;
            t.output_tokens = a.output_tokens;
            t.agent = Some(AgentReport {
                is_error: a.is_error,
                exit_code: a.exit_code,
                api_error_status: a.api_error_status,
                num_turns: a.num_turns,
                duration: secs(a.duration_ms),
                stderr: a.stderr.clone(),
            });
        }
    } else if state == TaskState::Cancelled {
        match (snap.skips[i].map(|s| s.class), meta.budget) {
            (Some(ErrorClass::Budget), Some(b)) => {
                t.error = Some(format!(
                    "cancelled before it started: the run spent its budget ({} of {})",
                    format_usd(meta.cost),
                    format_usd(b.max_cost)
                ));
                t.error_class = Some(ErrorClass::Budget);
            }
            _ => {
                t.error = Some("cancelled before it started".into());
                t.error_class = Some(ErrorClass::Cancelled);
            }
        }
    } else if state == TaskState::Skipped {
        if let Some(skip) = snap.skips[i] {
            t.error = Some(skip_reason(snap, i, &skip));
            t.error_class = Some(skip.class);
        }
    }
    (t, cost)
}

/// Sums over the tasks: per instance, and for the run.
struct Totals {
    by_inst: BTreeMap<String, InstanceSummary>,
    counts: Counts,
    total_ms: u64,
    ran: u64,
    tin: u64,
    tout: u64,
    run_cost: Option<Nanos>,
}

fn totals(snap: &RunSnapshot, tasks: &[TaskReport], costs: &[Option<Nanos>], catalog: &Catalog) -> Totals {
    let mut by_inst: BTreeMap<String, InstanceSummary> = BTreeMap::new();
    let mut dur_sum: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    let (mut total_ms, mut ran) = (0u64, 0u64);
    let (mut tin, mut tout) = (0u64, 0u64);
    let mut counts = Counts::default();
    let mut inst_cost: BTreeMap<String, Nanos> = BTreeMap::new();
    let mut run_cost: Option<Nanos> = None;
    for (i, t) in tasks.iter().enumerate() {
        let e = by_inst.entry(t.ccr_instance.clone()).or_insert_with(|| InstanceSummary {
            model: catalog.get(&t.ccr_instance).map(|c| c.model.clone()).unwrap_or_default(),
            ..Default::default()
        });
        e.total += 1;
        if let Some(s) = t.status.status() {
            e.counts.add(s);
            counts.add(s);
        }
        e.input_tokens += t.input_tokens;
        e.output_tokens += t.output_tokens;
        if let Some(c) = costs[i] {
            *inst_cost.entry(t.ccr_instance.clone()).or_default() += c;
            run_cost = Some(run_cost.unwrap_or(0) + c);
        }
        tin += t.input_tokens;
        tout += t.output_tokens;
        if let Some(r) = &snap.results[i] {
            let d = dur_sum.entry(t.ccr_instance.clone()).or_default();
            d.0 += r.duration_ms();
            d.1 += 1;
            total_ms += r.duration_ms();
            ran += 1;
        }
    }
    for (name, e) in by_inst.iter_mut() {
        e.success_rate = pct(e.counts.successful, e.total);
        e.cost = inst_cost.get(name).copied().map(nanos_to_usd);
        if let Some(&(ms, n)) = dur_sum.get(name) {
            e.average_duration = ms.checked_div(n).map_or(0.0, secs);
        }
    }
    Totals { by_inst, counts, total_ms, ran, tin, tout, run_cost }
}

/// The run's budget, what it spent, when it alerted and stopped, and what that cancelled.
fn budget_report(snap: &RunSnapshot) -> Option<BudgetReport> {
    let meta = &snap.meta;
    meta.budget.map(|b| BudgetReport {
        max_cost: nanos_to_usd(b.max_cost),
        alert_threshold: b.alert_ppm as f64 / 1e6,
        spent: nanos_to_usd(meta.cost),
        alerted_at: meta.budget_alerted_ms.map(rfc3339),
        stopped_at: meta.stopped.map(|(_, ms)| rfc3339(ms)),
        cancelled_tasks: snap
            .skips
            .iter()
            .zip(&snap.states)
            .filter(|(k, st)| **st == TaskState::Cancelled && k.is_some_and(|k| k.class == ErrorClass::Budget))
            .count() as u64,
    })
}

/// Each stage of a `pipeline:` run with its approval.
fn stage_reports(snap: &RunSnapshot) -> Vec<StageReport> {
    snap.stages
        .iter()
        .map(|s| {
            let (status, by, at, reason) = match &s.status {
                StageStatus::Awaiting => ("awaiting_approval", None, None, None),
                StageStatus::Approved { by, at_ms } => ("approved", Some(by.clone()), Some(rfc3339(*at_ms)), None),
                StageStatus::Rejected { by, at_ms, reason } => {
                    ("rejected", Some(by.clone()), Some(rfc3339(*at_ms)), Some(reason.clone()).filter(|r| !r.is_empty()))
                }
            };
            StageReport { name: s.name.clone(), status: status.into(), by, at, reason }
        })
        .collect()
}
