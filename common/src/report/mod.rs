//! Reports of a run, as pure functions of its snapshot: the results document
//! ([`document`]), the terminal dashboard ([`dashboard()`]) and the Markdown report
//! ([`markdown()`]).

mod dashboard;
mod document;
mod markdown;

pub use dashboard::dashboard;
pub use document::{build, AgentReport, AttemptReport, CommandReport, InstanceSummary, ResultsDocument, Summary, TaskReport};
pub use markdown::markdown;

use crate::model::TaskState;

pub(crate) fn secs(ms: u64) -> f64 {
    (ms as f64 / 1000.0 * 1000.0).round() / 1000.0
}

pub(crate) fn pct(part: u64, total: u64) -> f64 {
    if total == 0 {
        0.0
    } else {
        (part as f64 * 1000.0 / total as f64).round() / 10.0
    }
}

/// A one-character mark for a task state.
pub fn status_mark(s: TaskState) -> &'static str {
    match s {
        TaskState::Success => "✓",
        TaskState::Failed => "✗",
        TaskState::Timeout => "⏱",
        TaskState::Skipped => "↷",
        TaskState::Cancelled => "⊘",
        TaskState::Waiting | TaskState::Queued | TaskState::Running => "…",
    }
}

pub(crate) fn one_line(s: &str, max: usize) -> String {
    let flat: String = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() > max {
        format!("{}…", flat.chars().take(max - 1).collect::<String>())
    } else {
        flat
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentages_round_to_one_decimal() {
        assert_eq!(pct(2, 3), 66.7);
        assert_eq!(pct(0, 0), 0.0);
    }
}
