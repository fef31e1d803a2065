//! The results document of a run (the seed's JSON shape: `summary`, `results_by_instance`,
//! `tasks[]`) built from a [`RunSnapshot`].

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{pct, secs};
use crate::catalog::Catalog;
use crate::model::{rfc3339, Counts, ErrorClass, Priority, RunSnapshot, Status, TaskState};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResultsDocument {
    pub run_id: String,
    pub task_file: String,
    pub summary: Summary,
    pub results_by_instance: BTreeMap<String, InstanceSummary>,
    pub tasks: Vec<TaskReport>,
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
    pub attempts: u32,
    pub worker: Option<String>,
    /// Seconds between the job entering its queue and a worker starting it.
    pub queue_wait: f64,
    pub dependencies: Vec<String>,
    pub tags: Vec<String>,
    pub description: Option<String>,
    pub output_file: Option<String>,
    pub command: Option<CommandReport>,
    pub agent: Option<AgentReport>,
    pub input_tokens: u64,
    pub output_tokens: u64,
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
pub struct AgentReport {
    pub is_error: bool,
    pub exit_code: Option<i32>,
    pub api_error_status: Option<i64>,
    pub num_turns: Option<u64>,
    pub duration: f64,
    pub stderr: String,
}

/// Builds the results document of a run.
pub fn build(snap: &RunSnapshot, catalog: &Catalog) -> ResultsDocument {
    let meta = &snap.meta;
    let end_ms = meta.finished_ms.unwrap_or_else(crate::model::now_ms);
    let mut tasks = Vec::with_capacity(snap.specs.len());
    for (i, spec) in snap.specs.iter().enumerate() {
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
            attempts: 0,
            worker: None,
            queue_wait: 0.0,
            dependencies: deps,
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
                })
                .collect(),
        };
        if let Some(r) = &snap.results[i] {
            let o = &r.outcome;
            t.status = o.status.state();
            t.duration = secs(r.duration_ms());
            t.output = o.output.clone();
            t.error = o.error.clone();
            t.error_class = o.error_class;
            t.exit_code = o.exit_code;
            t.timestamp = rfc3339(r.finished_ms);
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
            t.error = Some("cancelled before it started".into());
            t.error_class = Some(ErrorClass::Cancelled);
        } else if state == TaskState::Skipped {
            if let Some(by) = snap.skipped_by[i] {
                let cause = &snap.specs[by as usize].name;
                let how = snap.states[by as usize];
                t.error = Some(format!(
                    "skipped: dependency `{cause}` {}",
                    if how == TaskState::Skipped { "was skipped".to_string() } else { format!("ended with status {}", how.as_str()) }
                ));
                t.error_class = Some(ErrorClass::Dependency);
            }
        }
        tasks.push(t);
    }

    let mut by_inst: BTreeMap<String, InstanceSummary> = BTreeMap::new();
    let mut dur_sum: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    let (mut total_ms, mut ran) = (0u64, 0u64);
    let (mut tin, mut tout) = (0u64, 0u64);
    let mut counts = Counts::default();
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
        if let Some(&(ms, n)) = dur_sum.get(name) {
            e.average_duration = ms.checked_div(n).map_or(0.0, secs);
        }
    }
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
    };
    ResultsDocument { run_id: meta.run_id.clone(), task_file: meta.file.clone(), summary, results_by_instance: by_inst, tasks }
}
