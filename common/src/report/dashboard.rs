//! The terminal dashboard: summary, results by instance, tasks.

use std::fmt::Write as _;

use comfy_table::{presets::UTF8_FULL_CONDENSED, Cell, ContentArrangement, Table};

use super::cells::{budget_line, one_line, status_mark};
use super::document::{ResultsDocument, TaskReport};
use super::fit::{fitted, Col};
use super::units::{pct, usd};
use crate::model::TaskState;
use crate::text::escape_line;

/// Most tasks listed one per row in the dashboard before it lists only the unsuccessful ones.
const DASHBOARD_TASK_ROWS: usize = 60;

/// A table at most `width` columns wide (cells wrap), or as wide as its content.
fn table(width: Option<u16>) -> Table {
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED);
    if let Some(w) = width {
        t.set_content_arrangement(ContentArrangement::Dynamic).set_width(w);
    }
    t
}

/// The terminal dashboard: summary, results by instance, tasks; every table at most `width`
/// columns wide when given (the terminal's).
pub fn dashboard(doc: &ResultsDocument, width: Option<u16>) -> String {
    let s = &doc.summary;
    let mut out = String::new();
    let mut t = table(width);
    t.set_header(vec![Cell::new("EXECUTION SUMMARY"), Cell::new(format!("run {}", s.run_id))]);
    let row = |label: &str, n: u64| vec![Cell::new(label), Cell::new(format!("{n}  ({:.1}%)", pct(n, s.total_tasks)))];
    t.add_row(vec![Cell::new("Total tasks"), Cell::new(s.total_tasks)]);
    t.add_row(row("Successful", s.counts.successful));
    t.add_row(row("Failed", s.counts.failed));
    t.add_row(row("Timeout", s.counts.timeout));
    if s.counts.skipped > 0 {
        t.add_row(row("Skipped", s.counts.skipped));
    }
    if s.counts.cancelled > 0 {
        t.add_row(row("Cancelled", s.counts.cancelled));
    }
    t.add_row(vec![Cell::new("Wall time"), Cell::new(format!("{:.1}s", s.wall_time))]);
    t.add_row(vec![Cell::new("Total duration"), Cell::new(format!("{:.1}s", s.total_duration))]);
    t.add_row(vec![Cell::new("Avg duration"), Cell::new(format!("{:.1}s", s.average_duration))]);
    if s.input_tokens + s.output_tokens > 0 {
        t.add_row(vec![Cell::new("Tokens in / out"), Cell::new(format!("{} / {}", s.input_tokens, s.output_tokens))]);
    }
    if let Some(c) = s.cost {
        t.add_row(vec![Cell::new("Cost"), Cell::new(usd(c))]);
    }
    if let Some(b) = &s.budget {
        t.add_row(vec![Cell::new("Budget"), Cell::new(budget_line(b))]);
    }
    let _ = writeln!(out, "{t}");

    let t = instance_table(doc, width);
    let _ = writeln!(out, "RESULTS BY INSTANCE\n{t}");

    out.push_str(&task_table(doc, width));
    out
}

/// RESULTS BY INSTANCE: counts, rate, average, tokens and cost of each instance.
fn instance_table(doc: &ResultsDocument, width: Option<u16>) -> Table {
    let priced = doc.results_by_instance.values().any(|e| e.cost.is_some());
    // Cancelled only when a task was: the table stays within 80 columns otherwise.
    let cancelled = doc.results_by_instance.values().any(|e| e.counts.cancelled > 0);
    // Narrow terminals lose the model first, then tokens, average, skipped, rate, timeouts.
    let mut cols = vec![
        Col::keep("Instance"),
        Col::keep("Model").droppable(0),
        Col::num("Tasks"),
        Col::num("OK"),
        Col::num("Failed"),
        Col::num("Timeout").droppable(5),
        Col::num("Skipped").droppable(3),
    ];
    if cancelled {
        cols.push(Col::num("Cancelled"));
    }
    cols.extend([Col::num("Rate").droppable(4), Col::num("Avg").droppable(2), Col::num("Tokens in/out").droppable(1)]);
    if priced {
        cols.push(Col::num("Cost"));
    }
    let mut rows = Vec::new();
    for (name, e) in &doc.results_by_instance {
        let mut row = vec![
            escape_line(name).into_owned(),
            escape_line(&e.model).into_owned(),
            e.total.to_string(),
            e.counts.successful.to_string(),
            e.counts.failed.to_string(),
            e.counts.timeout.to_string(),
            e.counts.skipped.to_string(),
        ];
        if cancelled {
            row.push(e.counts.cancelled.to_string());
        }
        row.extend([
            format!("{:.0}%", e.success_rate),
            format!("{:.1}s", e.average_duration),
            format!("{}/{}", e.input_tokens, e.output_tokens),
        ]);
        if priced {
            row.push(e.cost.map_or_else(|| "-".to_string(), usd));
        }
        rows.push(row);
    }
    fitted(cols, rows, width)
}

/// TASKS: every task (up to DASHBOARD_TASK_ROWS), or only the unsuccessful ones of a big run.
fn task_table(doc: &ResultsDocument, width: Option<u16>) -> String {
    let mut out = String::new();
    let all = doc.tasks.len() <= DASHBOARD_TASK_ROWS;
    let shown: Vec<&TaskReport> = doc.tasks.iter().filter(|t| all || t.status != TaskState::Success).take(DASHBOARD_TASK_ROWS).collect();
    if !shown.is_empty() {
        let cols = vec![
            Col::keep(""),
            Col::keep("Task"),
            // The mark says the status: the word goes before the instance.
            Col::keep("Instance").droppable(2),
            Col::keep("Status").droppable(1),
            Col::num("Duration"),
            Col::num("Attempts").droppable(0),
            Col::free("Detail"),
        ];
        let rows = shown
            .iter()
            .map(|r| {
                // Names, errors and outputs are untrusted: one line each, control characters escaped.
                let detail =
                    r.error.as_deref().map(|e| one_line(e.lines().next().unwrap_or(""), 70)).unwrap_or_else(|| one_line(&r.output, 60));
                vec![
                    status_mark(r.status).to_string(),
                    escape_line(&r.task_name).into_owned(),
                    escape_line(&r.ccr_instance).into_owned(),
                    r.status.as_str().to_string(),
                    format!("{:.1}s", r.duration),
                    r.attempts.to_string(),
                    detail,
                ]
            })
            .collect();
        let t = fitted(cols, rows, width);
        let title = if all {
            "TASKS".to_string()
        } else {
            format!(
                "TASKS NOT SUCCESSFUL (showing {} of {})",
                shown.len(),
                doc.tasks.iter().filter(|t| t.status != TaskState::Success).count()
            )
        };
        let _ = writeln!(out, "{title}\n{t}");
    }
    out
}
