//! Reports of a run, as pure functions of its snapshot: the results document
//! ([`document`]), the terminal dashboard ([`dashboard()`]) and the Markdown report
//! ([`markdown()`]).

mod dashboard;
mod document;
mod markdown;

pub use dashboard::dashboard;
pub use document::{build, AgentReport, AttemptReport, CommandReport, InstanceSummary, ResultsDocument, StageReport, Summary, TaskReport};
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Escape sequences in a task's output or name reach neither the dashboard nor the report.
    #[test]
    fn terminal_escapes_in_output_are_shown_not_run() {
        use crate::model::{Outcome, RunMeta, RunSnapshot, Status, TaskResult, TaskSpec};
        let evil = "\u{1b}]0;owned\u{7}\u{1b}[2Jdone";
        let result = TaskResult {
            outcome: Outcome {
                status: Status::Failed,
                error_class: None,
                error: Some(evil.into()),
                output: evil.into(),
                exit_code: Some(1),
                command: None,
                agent: None,
            },
            attempt: 1,
            worker: "w".into(),
            started_ms: 0,
            finished_ms: 1,
            queue_wait_ms: 0,
            reclaimed: false,
        };
        let snap = RunSnapshot {
            meta: RunMeta { run_id: "R".into(), file: "t\u{1b}[31m.yaml".into(), total: 1, ..Default::default() },
            specs: vec![TaskSpec { description: Some(evil.into()), ..TaskSpec::new("t", "fast") }],
            states: vec![TaskState::Failed],
            results: vec![Some(result.clone())],
            skips: vec![None],
            stages: Vec::new(),
            history: vec![vec![result]],
        };
        let doc = build(&snap, &crate::catalog::Catalog::builtin());
        for text in [dashboard(&doc), markdown(&doc)] {
            assert!(!text.contains('\u{1b}') && !text.contains('\u{7}'), "{text}");
            assert!(text.contains("\\u{1b}]0;owned"), "{text}");
        }
    }

    #[test]
    fn percentages_round_to_one_decimal() {
        assert_eq!(pct(2, 3), 66.7);
        assert_eq!(pct(0, 0), 0.0);
    }
}
