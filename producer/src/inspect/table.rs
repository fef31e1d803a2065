//! How the read commands print: pretty JSON, tables fitted to the terminal, and a run's row
//! as `runs` and `show` list it ([`RunRow`]).

use comfy_table::Table;
use serde::Serialize;
use zo_common::model::{now_ms, rfc3339, RunMeta};
use zo_common::report::fit::Col;

use crate::term::stdout;

/// Prints `value` as pretty JSON on stdout.
pub(super) fn print_json<T: Serialize>(value: &T) {
    stdout(&format!("{}\n", serde_json::to_string_pretty(value).expect("serializes")));
}

/// A table fitted to the terminal without wrapping a name or a number (see
/// [`zo_common::report::fit`]): the free-text column is cut, the least useful columns go.
pub(super) fn fit(cols: Vec<Col>, rows: Vec<Vec<String>>) -> Table {
    zo_common::report::fit::fitted(cols, rows, crate::term::stdout_width())
}

/// Runs or a run's summary, as `runs --json` and `show --json` print it.
#[derive(Debug, Serialize)]
pub struct RunRow {
    pub run_id: String,
    /// The task file's `name:` (empty when it has none).
    pub name: String,
    pub task_file: String,
    /// `running` or `finished`.
    pub status: &'static str,
    pub created_at: String,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    /// Seconds from creation to the end (or to now, while it runs).
    pub elapsed: f64,
    pub total_tasks: u64,
    pub done: u64,
    pub running: u64,
    pub successful: u64,
    pub failed: u64,
    pub timeout: u64,
    pub skipped: u64,
    pub cancelled: u64,
    /// Dollars spent so far (absent when nothing priced ran).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cost: Option<f64>,
    /// Why it stopped starting tasks early (`budget`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stopped: Option<&'static str>,
}

impl RunRow {
    pub fn of(m: &RunMeta) -> RunRow {
        let end = if m.finished { m.finished_ms.unwrap_or(m.created_ms) } else { now_ms() };
        RunRow {
            run_id: m.run_id.clone(),
            name: m.name.clone(),
            task_file: m.file.clone(),
            status: if m.finished { "finished" } else { "running" },
            created_at: rfc3339(m.created_ms),
            started_at: m.started_ms.map(rfc3339),
            finished_at: m.finished_ms.filter(|_| m.finished).map(rfc3339),
            elapsed: end.saturating_sub(m.created_ms) as f64 / 1000.0,
            total_tasks: m.total,
            done: m.done,
            running: m.running,
            successful: m.success,
            failed: m.failed,
            timeout: m.timeout,
            skipped: m.skipped,
            cancelled: m.cancelled,
            cost: (m.cost > 0).then(|| zo_common::model::nanos_to_usd(m.cost)),
            stopped: m.stopped.map(|(r, _)| r.as_str()),
        }
    }

    /// An archived run's row, from its document.
    pub fn of_doc(d: &zo_common::report::ResultsDocument) -> RunRow {
        let s = &d.summary;
        let end = zo_common::model::parse_rfc3339(&s.timestamp).unwrap_or(0);
        let created = end.saturating_sub((s.wall_time * 1000.0) as u64);
        RunRow {
            run_id: d.run_id.clone(),
            name: String::new(),
            task_file: d.task_file.clone(),
            status: "finished",
            created_at: rfc3339(created),
            started_at: None,
            finished_at: Some(s.timestamp.clone()),
            elapsed: s.wall_time,
            total_tasks: s.total_tasks,
            done: s.total_tasks,
            running: 0,
            successful: s.counts.successful,
            failed: s.counts.failed,
            timeout: s.counts.timeout,
            skipped: s.counts.skipped,
            cancelled: s.counts.cancelled,
            cost: s.cost,
            stopped: s.budget.as_ref().and_then(|b| b.stopped_at.as_ref()).map(|_| "budget"),
        }
    }

    /// `running 12/40`, `✓ 40/40`, or what did not succeed by kind: `✗ 2 failed, 6 cancelled of 8`.
    pub(super) fn progress(&self) -> String {
        let bad: Vec<String> = [(self.failed, "failed"), (self.timeout, "timed out"), (self.cancelled, "cancelled")]
            .into_iter()
            .filter(|(n, _)| *n > 0)
            .map(|(n, what)| format!("{n} {what}"))
            .collect();
        let mut s = if self.status == "running" {
            format!("running {}/{}", self.done, self.total_tasks)
        } else if bad.is_empty() {
            format!("✓ {}/{}", self.successful, self.total_tasks)
        } else {
            format!("✗ {} of {}", bad.join(", "), self.total_tasks)
        };
        if let Some(why) = self.stopped {
            s.push_str(&format!(" ({why})"));
        }
        s
    }
}
