//! What a task's result must satisfy besides its exit code (`expect:` in a task file): the
//! data; `crate::checks` evaluates it on the worker after the agent.

use serde::{Deserialize, Serialize};

/// The checks of `expect:`. Every one given must hold; an unmet one fails the task with class
/// `validation`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Expect {
    /// Texts the output must contain.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub contains: Vec<String>,
    /// Texts the output must not contain.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_contains: Vec<String>,
    /// Regular expressions (Rust `regex` syntax) that must match somewhere in the output.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub regex: Vec<String>,
    /// Regular expressions that must not match.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_regex: Vec<String>,
    /// Least and most characters in the output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_length: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_length: Option<u64>,
    /// The output must be JSON (whole, or a fenced ```json block).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub json: bool,
    /// The output's JSON must validate against this JSON Schema (kept as JSON text).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub json_schema: Option<String>,
}
