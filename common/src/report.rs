//! Reports: the results document (JSON, the seed's shape plus what users need), the terminal
//! dashboard and the Markdown report, all built from a [`RunSnapshot`]. Pure functions: no
//! Redis, no files.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use comfy_table::{presets::UTF8_FULL_CONDENSED, Cell, CellAlignment, Table};
use serde::{Deserialize, Serialize};

use crate::catalog::Catalog;
use crate::model::{rfc3339, Status};
use crate::queue::RunSnapshot;

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
    pub successful: u64,
    pub failed: u64,
    pub timeout: u64,
    pub skipped: u64,
    pub cancelled: u64,
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
    pub successful: u64,
    pub failed: u64,
    pub timeout: u64,
    pub skipped: u64,
    pub cancelled: u64,
    pub success_rate: f64,
    pub average_duration: f64,
    pub input_tokens: u64,
    pub output_tokens: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskReport {
    pub task_name: String,
    pub ccr_instance: String,
    pub status: String,
    /// Seconds.
    pub duration: f64,
    pub output: String,
    pub error: Option<String>,
    pub error_class: Option<String>,
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
    pub priority: String,
    /// Taken over from a worker whose lease lapsed.
    pub reclaimed: bool,
    /// Every attempt that ended, oldest first (earlier failures that were retried included).
    pub attempt_history: Vec<AttemptReport>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttemptReport {
    pub attempt: u32,
    pub status: String,
    pub error_class: Option<String>,
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

fn secs(ms: u64) -> f64 {
    (ms as f64 / 1000.0 * 1000.0).round() / 1000.0
}

fn pct(part: u64, total: u64) -> f64 {
    if total == 0 {
        0.0
    } else {
        (part as f64 * 1000.0 / total as f64).round() / 10.0
    }
}

/// Builds the results document of a run.
pub fn build(snap: &RunSnapshot, catalog: &Catalog) -> ResultsDocument {
    let meta = &snap.meta;
    let end_ms = meta.finished_ms.unwrap_or_else(crate::model::now_ms);
    let mut tasks = Vec::with_capacity(snap.specs.len());
    for (i, spec) in snap.specs.iter().enumerate() {
        let state = snap.states[i].as_str();
        let deps: Vec<String> = spec.deps.iter().map(|&d| snap.specs[d as usize].name.clone()).collect();
        let mut t = TaskReport {
            task_name: spec.name.clone(),
            ccr_instance: spec.instance.clone(),
            status: state.to_string(),
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
            priority: spec.priority.as_str().to_string(),
            reclaimed: false,
            attempt_history: snap.history[i]
                .iter()
                .map(|h| AttemptReport {
                    attempt: h.attempt,
                    status: h.status.as_str().to_string(),
                    error_class: h.error_class.map(|c| c.as_str().to_string()),
                    error: h.error.clone(),
                    worker: h.worker.clone(),
                    duration: secs(h.duration_ms()),
                    timestamp: rfc3339(h.finished_ms),
                })
                .collect(),
        };
        if let Some(r) = &snap.results[i] {
            t.status = r.status.as_str().to_string();
            t.duration = secs(r.duration_ms());
            t.output = r.output.clone();
            t.error = r.error.clone();
            t.error_class = r.error_class.map(|c| c.as_str().to_string());
            t.exit_code = r.exit_code;
            t.timestamp = rfc3339(r.finished_ms);
            t.attempts = r.attempt;
            t.worker = Some(r.worker.clone());
            t.queue_wait = secs(r.queue_wait_ms);
            t.reclaimed = r.reclaimed;
            t.command = r.command.as_ref().map(|c| CommandReport {
                stdout: c.stdout.clone(),
                stderr: c.stderr.clone(),
                exit_code: c.exit_code,
                duration: secs(c.duration_ms),
                truncated: c.truncated,
            });
            if let Some(a) = &r.agent {
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
        } else if state == "cancelled" {
            t.error = Some("cancelled before it started".into());
            t.error_class = Some("cancelled".into());
        } else if state == "skipped" {
            if let Some(by) = snap.skipped_by[i] {
                let cause = &snap.specs[by as usize].name;
                let how = snap.states[by as usize].as_str();
                t.error = Some(format!(
                    "skipped: dependency `{cause}` {}",
                    if how == "skipped" { "was skipped".to_string() } else { format!("ended with status {how}") }
                ));
                t.error_class = Some("dependency".into());
            }
        }
        tasks.push(t);
    }

    let mut by_inst: BTreeMap<String, InstanceSummary> = BTreeMap::new();
    let mut dur_sum: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    let (mut total_ms, mut ran) = (0u64, 0u64);
    let (mut tin, mut tout) = (0u64, 0u64);
    for (i, t) in tasks.iter().enumerate() {
        let e = by_inst.entry(t.ccr_instance.clone()).or_insert_with(|| InstanceSummary {
            model: catalog.get(&t.ccr_instance).map(|c| c.model.clone()).unwrap_or_default(),
            ..Default::default()
        });
        e.total += 1;
        match Status::parse(&t.status) {
            Some(Status::Success) => e.successful += 1,
            Some(Status::Failed) => e.failed += 1,
            Some(Status::Timeout) => e.timeout += 1,
            Some(Status::Skipped) => e.skipped += 1,
            Some(Status::Cancelled) => e.cancelled += 1,
            None => {}
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
        e.success_rate = pct(e.successful, e.total);
        if let Some(&(ms, n)) = dur_sum.get(name) {
            e.average_duration = ms.checked_div(n).map_or(0.0, secs);
        }
    }
    let count = |s: &str| tasks.iter().filter(|t| t.status == s).count() as u64;
    let successful = count("success");
    let summary = Summary {
        timestamp: rfc3339(end_ms),
        run_id: meta.run_id.clone(),
        total_tasks: tasks.len() as u64,
        successful,
        failed: count("failed"),
        timeout: count("timeout"),
        skipped: count("skipped"),
        cancelled: count("cancelled"),
        success_rate: pct(successful, tasks.len() as u64),
        total_duration: secs(total_ms),
        average_duration: total_ms.checked_div(ran).map_or(0.0, secs),
        wall_time: secs(end_ms.saturating_sub(meta.created_ms)),
        input_tokens: tin,
        output_tokens: tout,
    };
    ResultsDocument { run_id: meta.run_id.clone(), task_file: meta.file.clone(), summary, results_by_instance: by_inst, tasks }
}

/// A one-character mark for a task state.
pub fn status_mark(s: &str) -> &'static str {
    match s {
        "success" => "✓",
        "failed" => "✗",
        "timeout" => "⏱",
        "skipped" => "↷",
        "cancelled" => "⊘",
        _ => "…",
    }
}

/// Most tasks listed one per row in the dashboard before it lists only the unsuccessful ones.
const DASHBOARD_TASK_ROWS: usize = 60;

/// The terminal dashboard: summary, results by instance, tasks.
pub fn dashboard(doc: &ResultsDocument) -> String {
    let s = &doc.summary;
    let mut out = String::new();
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED);
    t.set_header(vec![Cell::new("EXECUTION SUMMARY"), Cell::new(format!("run {}", s.run_id))]);
    let row = |label: &str, n: u64| vec![Cell::new(label), Cell::new(format!("{n}  ({:.1}%)", pct(n, s.total_tasks)))];
    t.add_row(vec![Cell::new("Total tasks"), Cell::new(s.total_tasks)]);
    t.add_row(row("Successful", s.successful));
    t.add_row(row("Failed", s.failed));
    t.add_row(row("Timeout", s.timeout));
    if s.skipped > 0 {
        t.add_row(row("Skipped", s.skipped));
    }
    if s.cancelled > 0 {
        t.add_row(row("Cancelled", s.cancelled));
    }
    t.add_row(vec![Cell::new("Wall time"), Cell::new(format!("{:.1}s", s.wall_time))]);
    t.add_row(vec![Cell::new("Total duration"), Cell::new(format!("{:.1}s", s.total_duration))]);
    t.add_row(vec![Cell::new("Avg duration"), Cell::new(format!("{:.1}s", s.average_duration))]);
    if s.input_tokens + s.output_tokens > 0 {
        t.add_row(vec![Cell::new("Tokens in / out"), Cell::new(format!("{} / {}", s.input_tokens, s.output_tokens))]);
    }
    let _ = writeln!(out, "{t}");

    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED);
    t.set_header(vec!["Instance", "Model", "Tasks", "Success", "Failed", "Timeout", "Skipped", "Rate", "Avg", "Tokens in/out"]);
    for (name, e) in &doc.results_by_instance {
        t.add_row(vec![
            Cell::new(name),
            Cell::new(&e.model),
            Cell::new(e.total).set_alignment(CellAlignment::Right),
            Cell::new(e.successful).set_alignment(CellAlignment::Right),
            Cell::new(e.failed).set_alignment(CellAlignment::Right),
            Cell::new(e.timeout).set_alignment(CellAlignment::Right),
            Cell::new(e.skipped).set_alignment(CellAlignment::Right),
            Cell::new(format!("{:.0}%", e.success_rate)).set_alignment(CellAlignment::Right),
            Cell::new(format!("{:.1}s", e.average_duration)).set_alignment(CellAlignment::Right),
            Cell::new(format!("{}/{}", e.input_tokens, e.output_tokens)).set_alignment(CellAlignment::Right),
        ]);
    }
    let _ = writeln!(out, "RESULTS BY INSTANCE\n{t}");

    let all = doc.tasks.len() <= DASHBOARD_TASK_ROWS;
    let shown: Vec<&TaskReport> = doc.tasks.iter().filter(|t| all || t.status != "success").take(DASHBOARD_TASK_ROWS).collect();
    if !shown.is_empty() {
        let mut t = Table::new();
        t.load_preset(UTF8_FULL_CONDENSED);
        t.set_header(vec!["", "Task", "Instance", "Status", "Duration", "Attempts", "Detail"]);
        for r in &shown {
            let detail = r.error.as_deref().map(|e| e.lines().next().unwrap_or("").to_string()).unwrap_or_else(|| one_line(&r.output, 60));
            t.add_row(vec![
                Cell::new(status_mark(&r.status)),
                Cell::new(&r.task_name),
                Cell::new(&r.ccr_instance),
                Cell::new(&r.status),
                Cell::new(format!("{:.1}s", r.duration)).set_alignment(CellAlignment::Right),
                Cell::new(r.attempts).set_alignment(CellAlignment::Right),
                Cell::new(one_line(&detail, 70)),
            ]);
        }
        let title = if all {
            "TASKS".to_string()
        } else {
            format!("TASKS NOT SUCCESSFUL (showing {} of {})", shown.len(), doc.tasks.iter().filter(|t| t.status != "success").count())
        };
        let _ = writeln!(out, "{title}\n{t}");
    }
    out
}

fn one_line(s: &str, max: usize) -> String {
    let flat: String = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() > max {
        format!("{}…", flat.chars().take(max - 1).collect::<String>())
    } else {
        flat
    }
}

/// A fence longer than any run of backticks in `s`, so the content cannot close it.
fn fence(s: &str) -> String {
    let mut longest = 0;
    let mut cur = 0;
    for c in s.chars() {
        if c == '`' {
            cur += 1;
            longest = longest.max(cur);
        } else {
            cur = 0;
        }
    }
    "`".repeat((longest + 1).max(3))
}

fn md_cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

/// The Markdown report: summary, per instance, then every task with its output and errors.
pub fn markdown(doc: &ResultsDocument) -> String {
    let s = &doc.summary;
    let mut m = String::new();
    let _ = writeln!(m, "# Zo Worker Swarm report\n");
    let _ = writeln!(m, "- Run: `{}`\n- Task file: `{}`\n- Finished: {}\n", doc.run_id, doc.task_file, s.timestamp);
    let _ = writeln!(m, "## Summary\n");
    let _ = writeln!(m, "| Metric | Value |\n|---|---|");
    let _ = writeln!(m, "| Total tasks | {} |", s.total_tasks);
    let _ = writeln!(m, "| Successful | {} ({:.1}%) |", s.successful, s.success_rate);
    let _ = writeln!(m, "| Failed | {} |", s.failed);
    let _ = writeln!(m, "| Timeout | {} |", s.timeout);
    let _ = writeln!(m, "| Skipped | {} |", s.skipped);
    let _ = writeln!(m, "| Cancelled | {} |", s.cancelled);
    let _ = writeln!(m, "| Wall time | {:.1}s |", s.wall_time);
    let _ = writeln!(m, "| Total duration | {:.1}s |", s.total_duration);
    let _ = writeln!(m, "| Average duration | {:.1}s |", s.average_duration);
    let _ = writeln!(m, "| Tokens in / out | {} / {} |\n", s.input_tokens, s.output_tokens);
    let _ = writeln!(m, "## Results by instance\n");
    let _ = writeln!(m, "| Instance | Model | Tasks | Success | Failed | Timeout | Skipped | Rate | Avg | Tokens in/out |\n|---|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (name, e) in &doc.results_by_instance {
        let _ = writeln!(
            m,
            "| {} | {} | {} | {} | {} | {} | {} | {:.0}% | {:.1}s | {}/{} |",
            md_cell(name),
            md_cell(&e.model),
            e.total,
            e.successful,
            e.failed,
            e.timeout,
            e.skipped,
            e.success_rate,
            e.average_duration,
            e.input_tokens,
            e.output_tokens
        );
    }
    let _ = writeln!(m, "\n## Tasks\n");
    for t in &doc.tasks {
        let _ = writeln!(m, "### {} {}\n", status_mark(&t.status), md_cell(&t.task_name));
        let _ = writeln!(
            m,
            "- Instance: `{}`\n- Status: **{}**\n- Duration: {:.2}s (queued {:.2}s)",
            t.ccr_instance, t.status, t.duration, t.queue_wait
        );
        if t.attempts > 0 {
            let _ = writeln!(m, "- Attempts: {}", t.attempts);
        }
        if let Some(w) = &t.worker {
            let _ = writeln!(m, "- Worker: `{w}`");
        }
        if let Some(c) = t.exit_code {
            let _ = writeln!(m, "- Exit code: {c}");
        }
        if !t.dependencies.is_empty() {
            let _ = writeln!(m, "- After: {}", t.dependencies.iter().map(|d| format!("`{d}`")).collect::<Vec<_>>().join(", "));
        }
        if t.input_tokens + t.output_tokens > 0 {
            let _ = writeln!(m, "- Tokens in / out: {} / {}", t.input_tokens, t.output_tokens);
        }
        if let Some(d) = &t.description {
            let _ = writeln!(m, "- Description: {}", md_cell(d));
        }
        if let Some(e) = &t.error {
            let f = fence(e);
            let class = t.error_class.as_deref().unwrap_or("error");
            let _ = writeln!(m, "\n**Error** ({class}):\n\n{f}text\n{e}\n{f}");
        }
        if !t.output.is_empty() {
            let f = fence(&t.output);
            let _ = writeln!(m, "\n**Output:**\n\n{f}text\n{}\n{f}", t.output.trim_end_matches('\n'));
        }
        if let Some(c) = &t.command {
            if !c.stderr.trim().is_empty() {
                let f = fence(&c.stderr);
                let _ = writeln!(m, "\n**Command stderr:**\n\n{f}text\n{}\n{f}", c.stderr.trim_end_matches('\n'));
            }
        }
        m.push('\n');
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fence_outgrows_content() {
        assert_eq!(fence("plain"), "```");
        assert_eq!(fence("has ``` inside"), "````");
    }

    #[test]
    fn percentages_round_to_one_decimal() {
        assert_eq!(pct(2, 3), 66.7);
        assert_eq!(pct(0, 0), 0.0);
    }
}
