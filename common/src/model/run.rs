//! Read models of a run: its counters and, for reports, everything about its tasks. Filled
//! by [`crate::store`], rendered by [`crate::report`].

use super::result::TaskResult;
use super::spec::TaskSpec;
use super::vocab::TaskState;

/// The counters and status of a run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunMeta {
    pub run_id: String,
    pub file: String,
    pub name: String,
    pub total: u64,
    pub done: u64,
    pub running: u64,
    pub success: u64,
    pub failed: u64,
    pub timeout: u64,
    pub skipped: u64,
    pub cancelled: u64,
    pub finished: bool,
    pub created_ms: u64,
    pub started_ms: Option<u64>,
    pub finished_ms: Option<u64>,
}

/// Everything about a run's tasks, for reports.
#[derive(Debug, Clone)]
pub struct RunSnapshot {
    pub meta: RunMeta,
    /// Specs by task index.
    pub specs: Vec<TaskSpec>,
    /// State per task (same order as `specs`).
    pub states: Vec<TaskState>,
    pub results: Vec<Option<TaskResult>>,
    /// For skipped tasks: the dependency whose failure skipped them.
    pub skipped_by: Vec<Option<u32>>,
    /// Every recorded attempt per task (retried ones and the final result), in attempt order.
    pub history: Vec<Vec<TaskResult>>,
}
