//! What a template sees: each dependency it reads (from its state and stored result),
//! `run.id` and `task.name`.
//!
//! A dependency that has not finished (a `one_*` rule let this task start early) is
//! `pending`, with empty outputs and no exit code; one that did not succeed keeps its status,
//! exit code and whatever output it left; a skipped one never ran (empty outputs).

use std::collections::BTreeMap;

use minijinja::Value;

use crate::checks::output_json;
use crate::model::{TaskResult, TaskState};

/// One dependency as a template reads it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DepInput {
    /// `success`, `failed`, `timeout`, `skipped`, `cancelled`, or `pending`.
    pub status: String,
    pub output: String,
    pub command_output: String,
    pub exit_code: Option<i32>,
}

impl DepInput {
    /// From a dependency's state and (when it has one) its result.
    pub fn from_stored(state: TaskState, result: Option<&TaskResult>) -> Self {
        let Some(status) = state.status() else {
            return DepInput { status: "pending".into(), ..Default::default() };
        };
        let mut d = DepInput { status: status.as_str().into(), ..Default::default() };
        if let Some(r) = result {
            d.output = r.outcome.output.clone();
            d.command_output = r.outcome.command.as_ref().map(|c| c.stdout.clone()).unwrap_or_default();
            d.exit_code = r.outcome.exit_code;
        }
        d
    }
}

/// Everything a task's templates may read.
#[derive(Debug, Clone, Default)]
pub struct Inputs {
    pub run_id: String,
    pub task: String,
    /// Dependency name → (what it left, whether its output is read as JSON).
    pub deps: BTreeMap<String, (DepInput, bool)>,
}

impl Inputs {
    /// The template context. `json` is parsed only for the dependencies read that way, and
    /// is an empty map when the output holds no JSON (reading a field of it is then an error,
    /// unless `| default(…)` gives one).
    pub fn context(&self) -> Value {
        let mut deps = BTreeMap::new();
        for (name, (d, json)) in &self.deps {
            let mut m: BTreeMap<&str, Value> = BTreeMap::new();
            m.insert("status", Value::from(d.status.as_str()));
            m.insert("output", Value::from(d.output.as_str()));
            m.insert("command_output", Value::from(d.command_output.as_str()));
            m.insert("exit_code", d.exit_code.map(Value::from).unwrap_or(Value::from(())));
            if *json {
                // No JSON (or not finished): an empty map, so `| default(…)` can stand in.
                let j = output_json(&d.output).unwrap_or_else(|| serde_json::Value::Object(Default::default()));
                m.insert("json", Value::from(minijinja::value::Serde(j)));
            }
            deps.insert(name.as_str(), Value::from(m));
        }
        let run = BTreeMap::from([("id", Value::from(self.run_id.as_str()))]);
        let task = BTreeMap::from([("name", Value::from(self.task.as_str()))]);
        Value::from(BTreeMap::from([("deps", Value::from(deps)), ("run", Value::from(run)), ("task", Value::from(task))]))
    }

    /// Why a read may have failed: dependencies read as JSON whose output holds none.
    pub fn notes(&self) -> Option<String> {
        let missing: Vec<String> = self
            .deps
            .iter()
            .filter(|(_, (d, json))| *json && output_json(&d.output).is_none())
            .map(|(n, (d, _))| {
                if d.status == "pending" {
                    format!("deps.{n}.json: `{n}` has not finished")
                } else {
                    format!("deps.{n}.json: the output of `{n}` ({}) holds no JSON", d.status)
                }
            })
            .collect();
        (!missing.is_empty()).then(|| missing.join("; "))
    }
}
