//! What reading a task file gives: a validated [`TaskFile`], or [`TaskFileError`] with every
//! problem found. Its own file so that the validators and the module that runs them share it
//! without importing each other.

use std::fmt;

use super::pipeline::Stage;
use crate::model::{RunLimits, TaskSpec};
use crate::yaml::YamlError;

/// A validated task file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskFile {
    pub path: String,
    pub name: Option<String>,
    /// The file's `description:` (printed with its plan).
    pub description: Option<String>,
    pub tasks: Vec<TaskSpec>,
    /// Line of each task in its file, for messages.
    pub lines: Vec<u64>,
    /// The stages of a `pipeline:` file (none for a `tasks:` file).
    pub stages: Vec<Stage>,
    /// Its `resource_limits:` (none limits nothing).
    pub limits: RunLimits,
}

impl TaskFile {
    /// Each task's parents (dependencies and `on_success`/`on_failure` edges), for the graph
    /// functions.
    pub fn parents(&self) -> Vec<Vec<u32>> {
        self.tasks.iter().map(|t| t.parents().collect()).collect()
    }
}

/// Every problem found in a task file, each one line with its position.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct TaskFileError(pub Vec<YamlError>);

impl fmt::Display for TaskFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}
