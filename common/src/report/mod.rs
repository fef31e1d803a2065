//! Reports of a run, as pure functions of its snapshot: the results document
//! ([`document`]), the terminal dashboard ([`dashboard()`]), the Markdown report
//! ([`markdown()`]) and the HTML report ([`html()`], with its timeline from [`gantt`]); two
//! runs compared ([`diff`]); searches and stats over many ([`history`]).

mod cells;
mod dashboard;
pub mod diff;
mod document;
pub mod fit;
pub mod gantt;
pub mod history;
mod html;
mod markdown;
mod units;

pub use cells::status_mark;
pub use dashboard::dashboard;
pub use document::{
    build, AgentReport, AttemptReport, BudgetReport, CommandReport, InstanceSummary, ResultsDocument, StageReport, Summary, TaskReport,
};
pub use html::{esc as html_escape, html};
pub use markdown::markdown;

#[cfg(test)]
mod tests {
    use super::units::pct;
    use super::*;
    use crate::model::TaskState;

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
            cost_nanos: None,
            rate_wait_ms: 0,
        };
        let snap = RunSnapshot {
            meta: RunMeta { run_id: "R".into(), file: "t\u{1b}[31m.yaml".into(), total: 1, ..Default::default() },
            specs: vec![TaskSpec { description: Some(evil.into()), ..TaskSpec::new("t", "fast") }],
            states: vec![TaskState::Failed],
            results: vec![Some(result.clone())],
            skips: vec![None],
            stages: Vec::new(),
            history: vec![vec![result]],
            rate_waits: vec![0],
        };
        let doc = build(&snap, &crate::catalog::Catalog::builtin());
        for text in [dashboard(&doc, None), markdown(&doc)] {
            assert!(!text.contains('\u{1b}') && !text.contains('\u{7}'), "{text}");
            assert!(text.contains("\\u{1b}]0;owned"), "{text}");
        }
    }

    /// Cost counts every attempt (a retried one too), per task, per instance and for the run;
    /// an unpriced instance has none.
    #[test]
    fn cost_sums_every_attempt() {
        use crate::model::{Outcome, RunMeta, RunSnapshot, Status, TaskResult, TaskSpec};
        let attempt = |n: u32, status: Status, cost: Option<u64>| TaskResult {
            outcome: Outcome {
                status,
                error_class: None,
                error: None,
                output: String::new(),
                exit_code: Some(0),
                command: None,
                agent: None,
            },
            attempt: n,
            worker: "w".into(),
            started_ms: 0,
            finished_ms: 1000,
            queue_wait_ms: 0,
            reclaimed: false,
            cost_nanos: cost,
            rate_wait_ms: 0,
        };
        let retried = vec![attempt(1, Status::Failed, Some(20_000_000)), attempt(2, Status::Success, Some(25_000_000))];
        let once = vec![attempt(1, Status::Success, Some(5_000_000))];
        let free = vec![attempt(1, Status::Success, None)];
        let snap = RunSnapshot {
            meta: RunMeta { run_id: "R".into(), total: 3, ..Default::default() },
            specs: vec![TaskSpec::new("a", "smart"), TaskSpec::new("b", "smart"), TaskSpec::new("c", "fast")],
            states: vec![TaskState::Success; 3],
            results: vec![retried.last().cloned(), once.last().cloned(), free.last().cloned()],
            skips: vec![None; 3],
            stages: Vec::new(),
            history: vec![retried, once, free],
            rate_waits: vec![0; 3],
        };
        let doc = build(&snap, &crate::catalog::Catalog::builtin());
        assert_eq!(doc.tasks[0].cost, Some(0.045));
        assert_eq!(doc.tasks[0].attempt_history[0].cost, Some(0.02));
        assert_eq!(doc.tasks[2].cost, None);
        assert_eq!(doc.results_by_instance["smart"].cost, Some(0.05));
        assert_eq!(doc.results_by_instance["fast"].cost, None);
        assert_eq!(doc.summary.cost, Some(0.05));
        let md = markdown(&doc);
        assert!(md.contains("| Cost | $0.0500 |"), "{md}");
        assert!(md.contains("| smart | Claude Sonnet 4 (OpenRouter) | 2 | 0/0 | $0.0500 | $0.0250 | 100.0% |"), "{md}");
        assert!(dashboard(&doc, None).contains("$0.0500"));
    }

    #[test]
    fn percentages_round_to_one_decimal() {
        assert_eq!(pct(2, 3), 66.7);
        assert_eq!(pct(0, 0), 0.0);
    }
}

#[cfg(test)]
mod html_tests;
