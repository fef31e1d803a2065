//! The shapes serde reads a task file into, before validation: every value that a message may
//! point at keeps its position ([`Sp`]), unknown keys are refused by serde itself.

use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::model::{Backoff, Priority};
use crate::yaml::Pos;

/// A value and where it was written: what validation needs of serde-saphyr's [`Spanned`]
/// (which carries two full locations) at a third of its size — a 100,000-task file holds
/// hundreds of thousands of these while it is checked.
#[derive(Deserialize, Clone)]
#[serde(from = "Spanned<T>", bound(deserialize = "T: Deserialize<'de>"))]
pub(super) struct Sp<T> {
    pub value: T,
    pub referenced: Pos,
}

impl<T> From<Spanned<T>> for Sp<T> {
    fn from(s: Spanned<T>) -> Self {
        Sp { value: s.value, referenced: s.referenced.into() }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFile {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub defaults: Option<RawDefaults>,
    // Boxed: a 100,000-task file would otherwise hold (and regrow) a vector of large structs.
    pub tasks: Option<Sp<Vec<Sp<Box<RawTask>>>>>,
    /// The seed's multi-stage form, instead of `tasks:`.
    pub pipeline: Option<Sp<RawPipeline>>,
    pub resource_limits: Option<Sp<RawLimits>>,
}

/// `resource_limits:`, the seed's block (numbers kept signed and spanned: a zero or negative
/// limit is an error at its position).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLimits {
    pub max_concurrent_tasks: Option<Sp<f64>>,
    pub max_tasks_per_instance: Option<Sp<f64>>,
    #[serde(default)]
    pub models: Vec<Sp<RawModelLimits>>,
    pub budget: Option<Sp<RawBudget>>,
    pub quotas: Option<Sp<RawQuotas>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawModelLimits {
    pub name: Option<Sp<String>>,
    pub max_rpm: Option<Sp<f64>>,
    pub max_tpm: Option<Sp<f64>>,
    pub cost_per_1k_tokens: Option<Sp<f64>>,
    pub cost_per_1k_input: Option<Sp<f64>>,
    pub cost_per_1k_output: Option<Sp<f64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBudget {
    pub max_cost_per_workflow: Option<Sp<f64>>,
    pub alert_threshold: Option<Sp<f64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawQuotas {
    pub max_cpu_percent: Option<Sp<f64>>,
    pub max_memory_gb: Option<Sp<f64>>,
    pub max_disk_gb: Option<Sp<f64>>,
    pub quota_wait: Option<Sp<RawTimeout>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPipeline {
    pub name: Option<String>,
    pub description: Option<String>,
    pub stages: Option<Sp<Vec<Sp<RawStage>>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStage {
    pub name: Option<Sp<String>>,
    /// Accepted as the file's own documentation of the stage; nothing reads it.
    #[allow(dead_code)]
    pub description: Option<String>,
    /// A stage name or a list of them (the seed writes one string).
    pub requires: Option<Sp<OneOrMany>>,
    #[serde(default)]
    pub approval_required: bool,
    #[serde(default)]
    pub tasks: Vec<Sp<Box<RawTask>>>,
}

/// Run-wide defaults that tasks may override.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDefaults {
    pub retry_policy: Option<RawRetry>,
    pub priority: Option<Priority>,
    pub trigger_rule: Option<Sp<String>>,
}

#[derive(Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRetry {
    pub max_retries: Option<Sp<u32>>,
    pub retry_on: Option<Vec<Sp<String>>>,
    pub backoff: Option<Backoff>,
    pub base_delay: Option<Sp<RawTimeout>>,
    pub max_delay: Option<Sp<RawTimeout>>,
    pub jitter: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTask {
    pub name: Option<Sp<String>>,
    pub ccr_instance: Option<Sp<String>>,
    pub command: Option<Sp<String>>,
    pub prompt: Option<Sp<String>>,
    pub timeout: Option<Sp<RawTimeout>>,
    #[serde(default)]
    pub dependencies: Vec<Sp<String>>,
    #[serde(default)]
    pub tags: Vec<String>,
    pub description: Option<String>,
    pub output_file: Option<Sp<String>>,
    // Rare keys stay out of line, so every task does not carry their space.
    pub simulate: Option<Box<Sp<RawSimulate>>>,
    pub retry_policy: Option<Box<RawRetry>>,
    pub priority: Option<Priority>,
    pub trigger_rule: Option<Sp<String>>,
    pub on_success: Option<Vec<Sp<String>>>,
    pub on_failure: Option<Vec<Sp<String>>>,
    pub expect: Option<Box<Sp<RawExpect>>>,
    pub gate: Option<Sp<String>>,
}

/// Text or a list of texts (`contains: "ok"` or `contains: ["a", "b"]`).
#[derive(Deserialize, Clone)]
#[serde(untagged)]
pub(super) enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    pub fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s],
            OneOrMany::Many(v) => v,
        }
    }
}

#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub(super) struct RawExpect {
    pub contains: Option<OneOrMany>,
    pub not_contains: Option<OneOrMany>,
    pub regex: Option<OneOrMany>,
    pub not_regex: Option<OneOrMany>,
    pub min_length: Option<u64>,
    pub max_length: Option<u64>,
    #[serde(default)]
    pub json: bool,
    pub json_schema: Option<serde_json::Value>,
}

#[derive(Deserialize, Clone)]
#[serde(untagged)]
pub(super) enum RawTimeout {
    Int(i64),
    Float(f64),
    Text(String),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSimulate {
    pub duration: Option<Sp<RawTimeout>>,
    #[serde(default)]
    pub fail: bool,
    #[serde(default)]
    pub exit_code: i32,
    pub output: Option<Sp<String>>,
}
