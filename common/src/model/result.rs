//! What a worker records for one attempt of one task: the [`Outcome`] of executing it (also
//! what the executor returns), stamped with attempt, worker and times in a [`TaskResult`].

use serde::{Deserialize, Serialize};

use super::limits::{Nanos, Price};
use super::vocab::{ErrorClass, Status};

/// What the task's shell command did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandOutcome {
    pub stdout: String,
    pub stderr: String,
    pub exit_code: Option<i32>,
    pub duration_ms: u64,
    /// Output beyond the worker's capture limit was dropped.
    #[serde(default)]
    pub truncated: bool,
}

/// What the agent (`claude -p …`) answered.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentOutcome {
    pub is_error: bool,
    pub exit_code: Option<i32>,
    pub api_error_status: Option<i64>,
    pub num_turns: Option<u64>,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cache_read_tokens: u64,
    pub cache_creation_tokens: u64,
    pub duration_ms: u64,
    pub stderr: String,
    /// The agent answered without JSON (a plain-text agent command).
    #[serde(default)]
    pub raw_text: bool,
}

/// How one execution of a task ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcome {
    pub status: Status,
    pub error_class: Option<ErrorClass>,
    pub error: Option<String>,
    /// The agent's answer, or the command's stdout for a task without a prompt.
    pub output: String,
    /// The command's exit code, or the agent's for a task without a command.
    pub exit_code: Option<i32>,
    pub command: Option<CommandOutcome>,
    pub agent: Option<AgentOutcome>,
}

impl Outcome {
    /// A failure of class `class`: status timeout or cancelled for those classes, else failed.
    pub fn fail(class: ErrorClass, error: String) -> Self {
        let status = match class {
            ErrorClass::Timeout => Status::Timeout,
            ErrorClass::Cancelled => Status::Cancelled,
            _ => Status::Failed,
        };
        Outcome { status, error_class: Some(class), error: Some(error), output: String::new(), exit_code: None, command: None, agent: None }
    }

    /// What its tokens cost at `price`: every input token (prompt, command output, cache reads
    /// and writes) at the input price, answers at the output price. The agent's own
    /// `total_cost_usd` is not used: it prices every model as Claude.
    pub fn cost(&self, price: Price) -> Nanos {
        self.agent.as_ref().map_or(0, |a| price.cost(a.input_tokens + a.cache_read_tokens + a.cache_creation_tokens, a.output_tokens))
    }

    /// A job delivered too often without a result (its workers kept dying).
    pub fn poison(max_deliveries: u32) -> Self {
        Outcome::fail(
            ErrorClass::Poison,
            format!("delivered more than {max_deliveries} times without a result; the workers running it kept stopping"),
        )
    }
}

/// The result a worker records for one attempt of one task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskResult {
    pub outcome: Outcome,
    pub attempt: u32,
    pub worker: String,
    /// Unix milliseconds.
    pub started_ms: u64,
    pub finished_ms: u64,
    /// Time between the job entering its stream and a worker starting it.
    pub queue_wait_ms: u64,
    /// This worker took the task over from one whose lease lapsed (it died or hung).
    #[serde(default)]
    pub reclaimed: bool,
    /// What the attempt's tokens cost at the task's price (none without a price).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost_nanos: Option<Nanos>,
    /// Time the attempt waited at its start for rate limits (on its worker).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub rate_wait_ms: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl TaskResult {
    pub fn encode(&self) -> Vec<u8> {
        rmp_serde::to_vec_named(self).expect("result serializes")
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, rmp_serde::decode::Error> {
        rmp_serde::from_slice(bytes)
    }

    pub fn status(&self) -> Status {
        self.outcome.status
    }

    pub fn duration_ms(&self) -> u64 {
        self.finished_ms.saturating_sub(self.started_ms)
    }
}
