//! The words every part of the system shares: how urgent a task is, how it is retried, why it
//! failed, where it stands in its lifecycle and how it ended. Pure data with their wire names
//! (`as_str`/`parse` are the only place a state is spelled out in Rust; the Lua scripts use
//! the same spellings).

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// How urgently an instance's backlog should run a task.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    High,
    #[default]
    Medium,
    Low,
}

impl Priority {
    /// Highest first: the order a worker reads its streams in.
    pub const ALL: [Priority; 3] = [Priority::High, Priority::Medium, Priority::Low];

    pub fn is_default(&self) -> bool {
        *self == Priority::Medium
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Priority::High => "high",
            Priority::Medium => "medium",
            Priority::Low => "low",
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backoff {
    #[default]
    Exponential,
    Fixed,
}

/// When and how often a failed task is tried again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetryPolicy {
    pub max_retries: u32,
    pub retry_on: Vec<ErrorClass>,
    pub backoff: Backoff,
    pub base_delay_ms: u64,
    pub max_delay_ms: u64,
    pub jitter: bool,
}

impl Default for RetryPolicy {
    /// Network and rate-limit errors are retried (3 times, 2 s doubling to 60 s, jittered);
    /// failing commands, model errors and timeouts are not.
    fn default() -> Self {
        RetryPolicy {
            max_retries: 3,
            retry_on: vec![ErrorClass::Network, ErrorClass::RateLimit],
            backoff: Backoff::Exponential,
            base_delay_ms: 2000,
            max_delay_ms: 60_000,
            jitter: true,
        }
    }
}

impl RetryPolicy {
    /// True for the policy a task gets when its file says nothing.
    pub fn is_default(&self) -> bool {
        static DEFAULT: std::sync::LazyLock<RetryPolicy> = std::sync::LazyLock::new(RetryPolicy::default);
        *self == *DEFAULT
    }

    /// Whether attempt `attempt` (1-based) that failed with `class` gets another try.
    pub fn retries(&self, class: ErrorClass, attempt: u32) -> bool {
        attempt <= self.max_retries && self.retry_on.contains(&class)
    }

    /// The wait before the attempt after `attempt`; `unit` in [0, 1) draws the jitter.
    pub fn delay(&self, attempt: u32, unit: f64) -> Duration {
        let base = match self.backoff {
            Backoff::Fixed => self.base_delay_ms,
            Backoff::Exponential => self.base_delay_ms.saturating_mul(1u64 << attempt.saturating_sub(1).min(30)),
        }
        .min(self.max_delay_ms);
        let ms = if self.jitter { base / 2 + ((base / 2) as f64 * unit.clamp(0.0, 1.0)) as u64 } else { base };
        Duration::from_millis(ms)
    }
}

/// What a simulated run of the task does (used by the `simulate` agent and executor).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Simulate {
    /// How long the simulated work takes.
    pub duration_ms: u64,
    /// The simulated agent answers with an error.
    pub fail: bool,
    /// Exit code of the simulated command (only with the `simulate` executor).
    pub exit_code: i32,
    /// The simulated answer text (for a task without a prompt: its simulated command's
    /// stdout); a labelled synthetic answer when absent.
    pub output: Option<String>,
}

/// When a task with dependencies may start, over how its `dependencies` ended — Airflow's
/// trigger rules with Airflow's meanings. For a rule, a dependency *succeeded*, *failed*
/// (failed, timeout, cancelled, or skipped because of a failure) or was *skipped* (its
/// condition did not hold). `common::rules` evaluates them; `store/lua/prelude.lua` does the
/// same inside Redis.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TriggerRule {
    /// Every dependency succeeded (today's behaviour).
    #[default]
    AllSuccess,
    AllFailed,
    AllDone,
    AllSkipped,
    /// Fires as soon as one dependency succeeded, without waiting for the others.
    OneSuccess,
    OneFailed,
    /// One succeeded or failed.
    OneDone,
    /// All done, none failed (skipped ones are fine).
    NoneFailed,
    NoneFailedMinOneSuccess,
    NoneSkipped,
}

impl TriggerRule {
    pub const ALL: [TriggerRule; 10] = [
        TriggerRule::AllSuccess,
        TriggerRule::AllFailed,
        TriggerRule::AllDone,
        TriggerRule::AllSkipped,
        TriggerRule::OneSuccess,
        TriggerRule::OneFailed,
        TriggerRule::OneDone,
        TriggerRule::NoneFailed,
        TriggerRule::NoneFailedMinOneSuccess,
        TriggerRule::NoneSkipped,
    ];

    /// The spelling in task files, in the results and inside Redis (one per rule).
    pub fn as_str(self) -> &'static str {
        match self {
            TriggerRule::AllSuccess => "all_success",
            TriggerRule::AllFailed => "all_failed",
            TriggerRule::AllDone => "all_done",
            TriggerRule::AllSkipped => "all_skipped",
            TriggerRule::OneSuccess => "one_success",
            TriggerRule::OneFailed => "one_failed",
            TriggerRule::OneDone => "one_done",
            TriggerRule::NoneFailed => "none_failed",
            TriggerRule::NoneFailedMinOneSuccess => "none_failed_min_one_success",
            TriggerRule::NoneSkipped => "none_skipped",
        }
    }

    pub fn parse(s: &str) -> Option<TriggerRule> {
        TriggerRule::ALL.into_iter().find(|r| r.as_str() == s)
    }

    pub fn is_default(&self) -> bool {
        *self == TriggerRule::AllSuccess
    }
}

/// What an `on_success` / `on_failure` edge asks of the task that names its target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum When {
    Succeeded,
    Failed,
}

/// An edge from `on_success`/`on_failure`: the target waits for task `on` and runs only if it
/// ended as `when` says (besides its own dependencies and trigger rule).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Condition {
    pub on: u32,
    pub when: When,
}

/// How the tasks a task waits for see it once it is final.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ParentOutcome {
    Succeeded,
    /// Failed, timed out, cancelled, or skipped because of a failure.
    Failed,
    /// Skipped because its condition did not hold (or its stage was rejected).
    Skipped,
}

/// How a task ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Success,
    Failed,
    Timeout,
    Skipped,
    Cancelled,
}

impl Status {
    pub const ALL: [Status; 5] = [Status::Success, Status::Failed, Status::Timeout, Status::Skipped, Status::Cancelled];

    pub fn as_str(self) -> &'static str {
        self.state().as_str()
    }

    pub fn parse(s: &str) -> Option<Status> {
        TaskState::parse(s).and_then(TaskState::status)
    }

    /// The lifecycle state a task with this status is in.
    pub fn state(self) -> TaskState {
        match self {
            Status::Success => TaskState::Success,
            Status::Failed => TaskState::Failed,
            Status::Timeout => TaskState::Timeout,
            Status::Skipped => TaskState::Skipped,
            Status::Cancelled => TaskState::Cancelled,
        }
    }
}

/// Where a task stands (the run's `state` hash holds these spellings; see ARCHITECTURE.md,
/// "Task lifecycle").
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskState {
    /// Dependencies not yet done.
    #[default]
    Waiting,
    /// Released: in the outbox, a job stream or the delayed set.
    Queued,
    /// Held by a worker under a lease.
    Running,
    /// Its rule holds, but its stage waits for `zo-submit approve RUN STAGE`.
    AwaitingApproval,
    Success,
    Failed,
    Timeout,
    Skipped,
    Cancelled,
}

impl TaskState {
    pub const ALL: [TaskState; 9] = [
        TaskState::Waiting,
        TaskState::Queued,
        TaskState::Running,
        TaskState::AwaitingApproval,
        TaskState::Success,
        TaskState::Failed,
        TaskState::Timeout,
        TaskState::Skipped,
        TaskState::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::Waiting => "waiting",
            TaskState::Queued => "queued",
            TaskState::Running => "running",
            TaskState::AwaitingApproval => "awaiting_approval",
            TaskState::Success => "success",
            TaskState::Failed => "failed",
            TaskState::Timeout => "timeout",
            TaskState::Skipped => "skipped",
            TaskState::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<TaskState> {
        TaskState::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// The final status, for a state that is final.
    pub fn status(self) -> Option<Status> {
        Some(match self {
            TaskState::Success => Status::Success,
            TaskState::Failed => Status::Failed,
            TaskState::Timeout => Status::Timeout,
            TaskState::Skipped => Status::Skipped,
            TaskState::Cancelled => Status::Cancelled,
            TaskState::Waiting | TaskState::Queued | TaskState::Running | TaskState::AwaitingApproval => return None,
        })
    }

    pub fn is_final(self) -> bool {
        self.status().is_some()
    }
}

/// Why a task did not succeed; drives retries (network and rate limits are worth retrying,
/// a failing command is not).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorClass {
    Network,
    Timeout,
    Command,
    Model,
    RateLimit,
    Config,
    Cancelled,
    /// Skipped: a dependency's failure made its trigger rule unmeetable (Airflow's
    /// `upstream_failed`); counts as failed for its own dependents.
    Dependency,
    /// Skipped: its condition was not met (a trigger rule or an `on_success`/`on_failure`
    /// edge that did not hold, a branch not taken); counts as skipped for its dependents.
    Condition,
    /// Skipped: its stage was rejected by an operator.
    Rejected,
    /// Its output failed an `expect:` check.
    Validation,
    /// Its output did not pass its `gate:`.
    Gate,
    /// A `${{ … }}` template could not be rendered from its dependencies' results (e.g. a
    /// JSON field an output lacks).
    Template,
    /// Delivered again and again without a result: the workers running it kept dying.
    Poison,
    /// Cancelled before it started: its run spent its `resource_limits.budget`.
    Budget,
    /// Its execution host stayed over the run's `resource_limits.quotas` for `quota_wait`.
    Quota,
}

impl ErrorClass {
    /// Names accepted in `retry_on` (the seed's `network_error` style works too).
    pub const RETRY_NAMES: [&'static str; 10] =
        ["network", "timeout", "command", "model", "rate_limit", "config", "validation", "gate", "template", "quota"];

    pub fn parse_retry_name(s: &str) -> Option<ErrorClass> {
        Some(match s.trim().strip_suffix("_error").unwrap_or(s.trim()) {
            "network" => ErrorClass::Network,
            "timeout" => ErrorClass::Timeout,
            "command" => ErrorClass::Command,
            "model" => ErrorClass::Model,
            "rate_limit" => ErrorClass::RateLimit,
            "config" => ErrorClass::Config,
            "validation" => ErrorClass::Validation,
            "gate" => ErrorClass::Gate,
            "template" => ErrorClass::Template,
            "quota" => ErrorClass::Quota,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorClass::Network => "network",
            ErrorClass::Timeout => "timeout",
            ErrorClass::Command => "command",
            ErrorClass::Model => "model",
            ErrorClass::RateLimit => "rate_limit",
            ErrorClass::Config => "config",
            ErrorClass::Cancelled => "cancelled",
            ErrorClass::Dependency => "dependency",
            ErrorClass::Condition => "condition",
            ErrorClass::Rejected => "rejected",
            ErrorClass::Validation => "validation",
            ErrorClass::Gate => "gate",
            ErrorClass::Template => "template",
            ErrorClass::Poison => "poison",
            ErrorClass::Budget => "budget",
            ErrorClass::Quota => "quota",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_spell_and_parse_back() {
        for s in TaskState::ALL {
            assert_eq!(TaskState::parse(s.as_str()), Some(s));
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        }
        for st in Status::ALL {
            assert_eq!(Status::parse(st.as_str()), Some(st));
            assert!(st.state().is_final());
        }
        assert_eq!(Status::parse("running"), None);
        assert!(!TaskState::Running.is_final());
    }
}
