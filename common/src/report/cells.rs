//! Cells every report shows alike: the budget line, the results-by-instance table's columns
//! and rows, a task state's mark, and free text cut to one line.

use super::document::{BudgetReport, InstanceSummary};
use super::units::usd;
use crate::model::TaskState;

/// What became of a run's budget, in one line: `$4.12 of $5.00 spent; alert at 80% (12:00:03)`,
/// and when it stopped the run, how many tasks that cancelled.
pub(crate) fn budget_line(b: &BudgetReport) -> String {
    let mut line = format!("{} of {} spent", usd(b.spent), usd(b.max_cost));
    if let Some(at) = &b.alerted_at {
        line.push_str(&format!("; alert at {:.0}% ({at})", b.alert_threshold * 100.0));
    }
    if let Some(at) = &b.stopped_at {
        line.push_str(&format!("; budget reached at {at}: no task started after that, {} cancelled", b.cancelled_tasks));
    }
    line
}

/// The columns of the results-by-instance table, as every report shows them.
pub(crate) const INSTANCE_COLUMNS: [&str; 11] =
    ["Instance", "Model", "Tasks", "Success", "Failed", "Timeout", "Skipped", "Cancelled", "Rate", "Avg", "Tokens in/out"];

/// One instance's row of that table (text as is: each report escapes it its own way).
pub(crate) fn instance_cells(name: &str, e: &InstanceSummary) -> [String; 11] {
    [
        name.to_string(),
        e.model.clone(),
        e.total.to_string(),
        e.counts.successful.to_string(),
        e.counts.failed.to_string(),
        e.counts.timeout.to_string(),
        e.counts.skipped.to_string(),
        e.counts.cancelled.to_string(),
        format!("{:.0}%", e.success_rate),
        format!("{:.1}s", e.average_duration),
        format!("{}/{}", e.input_tokens, e.output_tokens),
    ]
}

/// A one-character mark for a task state.
pub fn status_mark(s: TaskState) -> &'static str {
    match s {
        TaskState::Success => "✓",
        TaskState::Failed => "✗",
        TaskState::Timeout => "⏱",
        TaskState::Skipped => "↷",
        TaskState::Cancelled => "⊘",
        TaskState::AwaitingApproval => "⏸",
        TaskState::Waiting | TaskState::Queued | TaskState::Running => "…",
    }
}

/// `s` on one line of at most `max` characters, white space folded, control characters
/// escaped.
pub(crate) fn one_line(s: &str, max: usize) -> String {
    let flat: String = s.split_whitespace().collect::<Vec<_>>().join(" ");
    let flat = crate::text::escape_line(&flat).into_owned();
    if flat.chars().count() > max {
        format!("{}…", flat.chars().take(max - 1).collect::<String>())
    } else {
        flat
    }
}
