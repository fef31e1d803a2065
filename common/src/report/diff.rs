//! Two runs compared task by task (`zo-submit diff RUN1 RUN2`): for each task name in either
//! run, how it ended in each (status, duration, tokens, cost) and a unified diff of its outputs.

use serde::Serialize;

use super::{ResultsDocument, TaskReport};
use crate::model::TaskState;

/// Context lines around each change of an output diff.
const CONTEXT: usize = 3;

/// How one task ended in one run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Side {
    pub status: TaskState,
    pub duration: f64,
    pub attempts: u32,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cost: Option<f64>,
}

impl Side {
    fn of(t: &TaskReport) -> Side {
        Side {
            status: t.status,
            duration: t.duration,
            attempts: t.attempts,
            input_tokens: t.input_tokens,
            output_tokens: t.output_tokens,
            cost: t.cost,
        }
    }
}

/// One task name across the two runs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TaskDiff {
    pub task_name: String,
    /// Absent when the run has no such task.
    pub a: Option<Side>,
    pub b: Option<Side>,
    /// The status or the output differs.
    pub changed: bool,
    /// Unified diff of the outputs (`a` → `b`), absent when they are equal.
    pub output_diff: Option<String>,
}

/// Both runs, compared.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunDiff {
    pub run_a: String,
    pub run_b: String,
    pub tasks: Vec<TaskDiff>,
}

/// Compares `a` and `b` by task name: `a`'s order first, then tasks only `b` has.
pub fn diff(a: &ResultsDocument, b: &ResultsDocument) -> RunDiff {
    let find = |doc: &'_ ResultsDocument, name: &str| doc.tasks.iter().find(|t| t.task_name == name).cloned();
    let mut names: Vec<&str> = a.tasks.iter().map(|t| t.task_name.as_str()).collect();
    names.extend(b.tasks.iter().map(|t| t.task_name.as_str()).filter(|n| !a.tasks.iter().any(|t| t.task_name == *n)));
    let tasks = names
        .into_iter()
        .map(|name| {
            let (ta, tb) = (find(a, name), find(b, name));
            let (oa, ob) = (ta.as_ref().map_or("", |t| t.output.as_str()), tb.as_ref().map_or("", |t| t.output.as_str()));
            let output_diff = (oa != ob).then(|| {
                similar::TextDiff::from_lines(oa, ob)
                    .unified_diff()
                    .context_radius(CONTEXT)
                    .header(&format!("{}/{name}", a.run_id), &format!("{}/{name}", b.run_id))
                    .to_string()
            });
            let changed = output_diff.is_some() || ta.as_ref().map(|t| t.status) != tb.as_ref().map(|t| t.status);
            TaskDiff { task_name: name.to_string(), a: ta.as_ref().map(Side::of), b: tb.as_ref().map(Side::of), changed, output_diff }
        })
        .collect();
    RunDiff { run_a: a.run_id.clone(), run_b: b.run_id.clone(), tasks }
}
