//! What travels through Redis: the job spec of a task (MessagePack, named fields so that it
//! can evolve) and the result a worker records for it.

use serde::{Deserialize, Serialize};

use crate::taskfile::{Priority, RetryPolicy, Simulate, TaskFile, TaskSpec};

/// A task as stored in its run and carried by its stream entry. Fields at their default are
/// left out of the encoding (a decoder fills them in), which keeps a typical spec under a third
/// of its full size: less for Redis to store and move, and for workers to decode.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobSpec {
    pub run_id: String,
    pub idx: u32,
    pub name: String,
    pub instance: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
    pub timeout_ms: u64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deps: Vec<u32>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_file: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub simulate: Option<Simulate>,
    #[serde(default, skip_serializing_if = "RetryPolicy::is_default")]
    pub retry: RetryPolicy,
    #[serde(default, skip_serializing_if = "Priority::is_default")]
    pub priority: Priority,
}

impl JobSpec {
    pub fn from_file(run_id: &str, file: &TaskFile) -> Vec<JobSpec> {
        Self::from_tasks(run_id, file.tasks.clone())
    }

    /// Like [`JobSpec::from_file`], taking the tasks over (no copies of their text).
    pub fn from_tasks(run_id: &str, tasks: Vec<TaskSpec>) -> Vec<JobSpec> {
        tasks
            .into_iter()
            .enumerate()
            .map(|(i, t)| JobSpec {
                run_id: run_id.to_string(),
                idx: i as u32,
                name: t.name,
                instance: t.instance,
                command: t.command,
                prompt: t.prompt,
                timeout_ms: t.timeout.as_millis() as u64,
                deps: t.deps.iter().map(|&d| d as u32).collect(),
                tags: t.tags,
                description: t.description,
                output_file: t.output_file,
                simulate: t.simulate,
                retry: t.retry,
                priority: t.priority,
            })
            .collect()
    }

    pub fn encode(&self) -> Vec<u8> {
        rmp_serde::to_vec_named(self).expect("job spec serializes")
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, rmp_serde::decode::Error> {
        rmp_serde::from_slice(bytes)
    }
}

/// Final status of a task.
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
        match self {
            Status::Success => "success",
            Status::Failed => "failed",
            Status::Timeout => "timeout",
            Status::Skipped => "skipped",
            Status::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<Status> {
        Status::ALL.into_iter().find(|st| st.as_str() == s)
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
    Dependency,
    /// Delivered again and again without a result: the workers running it kept dying.
    Poison,
}

impl ErrorClass {
    /// Names accepted in `retry_on` (the seed's `network_error` style works too).
    pub const RETRY_NAMES: [&'static str; 6] = ["network", "timeout", "command", "model", "rate_limit", "config"];

    pub fn parse_retry_name(s: &str) -> Option<ErrorClass> {
        Some(match s.trim().strip_suffix("_error").unwrap_or(s.trim()) {
            "network" => ErrorClass::Network,
            "timeout" => ErrorClass::Timeout,
            "command" => ErrorClass::Command,
            "model" => ErrorClass::Model,
            "rate_limit" => ErrorClass::RateLimit,
            "config" => ErrorClass::Config,
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
            ErrorClass::Poison => "poison",
        }
    }
}

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

/// The result a worker records for one attempt of one task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskResult {
    pub status: Status,
    pub error_class: Option<ErrorClass>,
    pub error: Option<String>,
    /// The agent's answer, or the command's stdout for a task without a prompt.
    pub output: String,
    /// The command's exit code, or the agent's for a task without a command.
    pub exit_code: Option<i32>,
    pub command: Option<CommandOutcome>,
    pub agent: Option<AgentOutcome>,
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
}

impl TaskResult {
    pub fn encode(&self) -> Vec<u8> {
        rmp_serde::to_vec_named(self).expect("result serializes")
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, rmp_serde::decode::Error> {
        rmp_serde::from_slice(bytes)
    }

    pub fn duration_ms(&self) -> u64 {
        self.finished_ms.saturating_sub(self.started_ms)
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// RFC 3339 UTC timestamp of a Unix-milliseconds instant.
pub fn rfc3339(ms: u64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000).unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    t.format(&time::format_description::well_known::Rfc3339).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::taskfile::Backoff;

    fn plain() -> JobSpec {
        JobSpec {
            run_id: "20261124-085612-0230".into(),
            idx: 5,
            name: "t5".into(),
            instance: "fast".into(),
            command: None,
            prompt: Some("p".into()),
            timeout_ms: 300_000,
            deps: vec![],
            tags: vec![],
            description: None,
            output_file: None,
            simulate: None,
            retry: RetryPolicy::default(),
            priority: Priority::Medium,
        }
    }

    #[test]
    fn defaults_are_left_out_and_come_back() {
        let s = plain();
        let blob = s.encode();
        assert!(blob.len() < 100, "a spec with defaults only encodes in {} bytes", blob.len());
        assert_eq!(JobSpec::decode(&blob).unwrap(), s);
    }

    #[test]
    fn every_field_set_round_trips() {
        let s = JobSpec {
            command: Some("echo hi".into()),
            deps: vec![1, 2],
            tags: vec!["a".into()],
            description: Some("d".into()),
            output_file: Some("out.md".into()),
            simulate: Some(Simulate { duration_ms: 5, fail: true, exit_code: 2, output: Some("x".into()) }),
            retry: RetryPolicy {
                max_retries: 0,
                retry_on: vec![ErrorClass::Timeout],
                backoff: Backoff::Fixed,
                base_delay_ms: 1,
                max_delay_ms: 2,
                jitter: false,
            },
            priority: Priority::High,
            ..plain()
        };
        let back = JobSpec::decode(&s.encode()).unwrap();
        assert_eq!(back, s);
        // A spec written with every field (as earlier versions did) still decodes.
        #[derive(Serialize)]
        struct Full<'a> {
            run_id: &'a str,
            idx: u32,
            name: &'a str,
            instance: &'a str,
            command: Option<&'a str>,
            prompt: Option<&'a str>,
            timeout_ms: u64,
            deps: Vec<u32>,
            tags: Vec<String>,
            description: Option<String>,
            output_file: Option<String>,
            simulate: Option<Simulate>,
            retry: RetryPolicy,
            priority: Priority,
        }
        let p = plain();
        let full = Full {
            run_id: &p.run_id,
            idx: p.idx,
            name: &p.name,
            instance: &p.instance,
            command: None,
            prompt: Some("p"),
            timeout_ms: p.timeout_ms,
            deps: vec![],
            tags: vec![],
            description: None,
            output_file: None,
            simulate: None,
            retry: RetryPolicy::default(),
            priority: Priority::Medium,
        };
        assert_eq!(JobSpec::decode(&rmp_serde::to_vec_named(&full).unwrap()).unwrap(), p);
    }
}
