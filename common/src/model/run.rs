//! Read models of a run: its counters and, for reports, everything about its tasks. Filled
//! by [`crate::store`], rendered by [`crate::report`].

use super::limits::{Budget, Nanos};
use super::result::TaskResult;
use super::spec::TaskSpec;
use super::vocab::{ErrorClass, TaskState};

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
    /// What its recorded attempts cost so far.
    pub cost: Nanos,
    /// `resource_limits.budget`, if any.
    pub budget: Option<Budget>,
    /// When spending reached the budget's alert threshold.
    pub budget_alerted_ms: Option<u64>,
    /// When and why the run stopped starting tasks (only the budget stops a run this way).
    pub stopped: Option<(StopReason, u64)>,
}

/// Why a run stopped starting tasks before they were done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// It spent its `resource_limits.budget`.
    Budget,
}

impl StopReason {
    pub fn as_str(self) -> &'static str {
        match self {
            StopReason::Budget => "budget",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "budget" => Some(StopReason::Budget),
            _ => None,
        }
    }
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
    /// For skipped tasks: why.
    pub skips: Vec<Option<Skip>>,
    /// Every recorded attempt per task (retried ones and the final result), in attempt order.
    pub history: Vec<Vec<TaskResult>>,
    /// The stages with `approval_required` that the run reached, by name.
    pub stages: Vec<StageState>,
    /// Per task: ms it waited for rate limits after being handed back to its run (waits at
    /// a worker are in each attempt's result).
    pub rate_waits: Vec<u64>,
}

/// Where a stage that needs an approval stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StageStatus {
    /// Its requirements are met; it waits for `zo-submit approve|reject RUN STAGE`.
    Awaiting,
    Approved {
        by: String,
        at_ms: u64,
    },
    Rejected {
        by: String,
        at_ms: u64,
        reason: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StageState {
    pub name: String,
    pub status: StageStatus,
}

/// Why a task was skipped: `class` is [`ErrorClass::Dependency`] (a failure made its trigger
/// rule unmeetable; it counts as failed), [`ErrorClass::Condition`] (its rule or an
/// `on_success`/`on_failure` condition did not hold) or [`ErrorClass::Rejected`] (its stage
/// was rejected); `cause` is the task whose outcome decided it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Skip {
    pub class: ErrorClass,
    pub cause: Option<u32>,
}

impl Skip {
    /// Whether the skip makes the run a failure (exit code 1): only a failure's does.
    pub fn is_failure(&self) -> bool {
        self.class == ErrorClass::Dependency
    }
}

/// One task that succeeded in an earlier run: what estimates learn from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskSample {
    pub task: String,
    pub instance: String,
    pub duration_ms: u64,
    /// What it cost (every attempt), when it was priced.
    pub cost: Option<Nanos>,
    /// Tokens the agent read and wrote (every attempt; reads include cache reads and writes):
    /// a dry run prices them at the file's own prices, never at the run's.
    pub tokens: (u64, u64),
}
