//! A task as the queue carries it: validated from the task file, stored in its run (`spec`
//! hash, by index) and in the payload of its stream entries. MessagePack with named fields, so
//! that the format can evolve; fields at their default are left out of the encoding (a
//! decoder fills them in), which keeps a typical spec under a third of its full size.
//!
//! The run id, the task's index and the attempt are not part of the spec: the stream entry
//! carries them as readable fields (see [`crate::store`]'s entry codec), the run's hashes key
//! specs by index.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::expect::Expect;
use super::limits::{Price, Quotas, RateLimit};
use super::vocab::{Condition, Priority, RetryPolicy, Simulate, TriggerRule};

/// The MessagePack field holding a spec's dependencies. `REVIVE` reads it inside Redis
/// (`reevaluate` in prelude.lua: `cmsgpack.unpack(spec).deps`); a test pins the two together.
pub const DEPS_FIELD: &str = "deps";

/// A task's timeout when its file names none (5 minutes, the seed's).
pub const DEFAULT_TIMEOUT_MS: u64 = 300_000;

/// One validated task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskSpec {
    pub name: String,
    pub instance: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
    pub timeout_ms: u64,
    /// Indices (into the run's tasks) of its `dependencies`, what its trigger rule reads.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deps: Vec<u32>,
    /// When it may start, over how its `deps` ended.
    #[serde(default, skip_serializing_if = "TriggerRule::is_default")]
    pub trigger_rule: TriggerRule,
    /// Edges from other tasks' `on_success`/`on_failure`: it also waits for these, and runs
    /// only if each ended as asked.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_file: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub simulate: Option<Simulate>,
    /// Checks its output must pass (`expect:`); boxed, as most tasks have none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect: Option<Box<Expect>>,
    /// The seed's `gate:`, as written (parsed by `crate::checks::Gate` at validation and on
    /// the worker).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gate: Option<String>,
    /// The `pipeline:` stage it belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage: Option<String>,
    /// Its stage has `approval_required`: once its rule holds it waits in
    /// `awaiting_approval` until the stage is approved (or rejected).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub needs_approval: bool,
    /// The dependencies its `${{ … }}` templates read (see `crate::template`), fetched by
    /// the worker just before it runs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inputs: Vec<Input>,
    /// What its instance's tokens cost in this run (`resource_limits.models`, else the
    /// catalog); the worker prices each attempt with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub price: Option<Price>,
    /// The run's rate limit for its instance (`resource_limits.models`), shared by the run's
    /// tasks on that instance over every worker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<RateLimit>,
    /// The run's `resource_limits.quotas`: the worker waits for the execution host to be
    /// under them before starting the task.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quotas: Option<Quotas>,
    #[serde(default, skip_serializing_if = "RetryPolicy::is_default")]
    pub retry: RetryPolicy,
    #[serde(default, skip_serializing_if = "Priority::is_default")]
    pub priority: Priority,
}

/// A dependency read by a task's templates: the name they use and its index in the run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Input {
    pub name: String,
    pub task: u32,
    /// Its output is read as JSON (`deps.NAME.json…`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub json: bool,
}

impl TaskSpec {
    /// A task of `instance` with nothing to do yet: no command or prompt, the default timeout,
    /// no dependencies, default retry policy and priority.
    pub fn new(name: impl Into<String>, instance: impl Into<String>) -> Self {
        TaskSpec {
            name: name.into(),
            instance: instance.into(),
            command: None,
            prompt: None,
            timeout_ms: DEFAULT_TIMEOUT_MS,
            deps: Vec::new(),
            trigger_rule: TriggerRule::default(),
            conditions: Vec::new(),
            tags: Vec::new(),
            description: None,
            output_file: None,
            simulate: None,
            expect: None,
            gate: None,
            stage: None,
            needs_approval: false,
            inputs: Vec::new(),
            price: None,
            rate: None,
            quotas: None,
            retry: RetryPolicy::default(),
            priority: Priority::default(),
        }
    }

    /// Every task this one waits for: its dependencies, then its conditions' tasks not among
    /// them (each once) — the edges of the run's graph.
    pub fn parents(&self) -> impl Iterator<Item = u32> + '_ {
        let extra = self
            .conditions
            .iter()
            .map(|c| c.on)
            .enumerate()
            .filter(move |&(k, on)| !self.deps.contains(&on) && !self.conditions[..k].iter().any(|c| c.on == on));
        self.deps.iter().copied().chain(extra.map(|(_, on)| on))
    }

    /// Whether it waits for nothing (a root of the graph).
    pub fn is_root(&self) -> bool {
        self.deps.is_empty() && self.conditions.is_empty()
    }

    /// Whether it starts the plain way: every dependency succeeded, no condition.
    pub fn plain_rule(&self) -> bool {
        self.trigger_rule.is_default() && self.conditions.is_empty()
    }

    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }

    pub fn encode(&self) -> Vec<u8> {
        rmp_serde::to_vec_named(self).expect("task spec serializes")
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, rmp_serde::decode::Error> {
        rmp_serde::from_slice(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Backoff, ErrorClass, Expect, When};

    fn plain() -> TaskSpec {
        TaskSpec { prompt: Some("p".into()), ..TaskSpec::new("t5", "fast") }
    }

    #[test]
    fn defaults_are_left_out_and_come_back() {
        let s = plain();
        let blob = s.encode();
        assert!(blob.len() < 64, "a spec with defaults only encodes in {} bytes", blob.len());
        assert_eq!(TaskSpec::decode(&blob).unwrap(), s);
    }

    #[test]
    fn every_field_set_round_trips() {
        let s = TaskSpec {
            command: Some("echo hi".into()),
            deps: vec![1, 2],
            trigger_rule: TriggerRule::OneFailed,
            conditions: vec![Condition { on: 0, when: When::Failed }],
            tags: vec!["a".into()],
            description: Some("d".into()),
            output_file: Some("out.md".into()),
            simulate: Some(Simulate { duration_ms: 5, fail: true, exit_code: 2, output: Some("x".into()) }),
            expect: Some(Box::new(Expect {
                contains: vec!["a".into()],
                regex: vec!["^b".into()],
                min_length: Some(3),
                json: true,
                json_schema: Some("{\"type\": \"object\"}".into()),
                ..Expect::default()
            })),
            gate: Some("score > 8".into()),
            stage: Some("Production".into()),
            needs_approval: true,
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
        assert_eq!(TaskSpec::decode(&s.encode()).unwrap(), s);
    }

    #[test]
    fn parents_are_dependencies_then_conditions_each_once() {
        let s = TaskSpec {
            deps: vec![4, 2],
            conditions: vec![
                Condition { on: 2, when: When::Succeeded },
                Condition { on: 7, when: When::Failed },
                Condition { on: 7, when: When::Succeeded },
            ],
            ..plain()
        };
        assert_eq!(s.parents().collect::<Vec<_>>(), vec![4, 2, 7]);
        assert!(!s.is_root() && !s.plain_rule());
        assert!(plain().is_root() && plain().plain_rule());
    }

    /// `REVIVE` (store/lua/prelude.lua's `reevaluate`) reads the dependencies out of the encoded spec inside
    /// Redis: the field's name and shape (an array of integers, absent when empty) are pinned.
    #[test]
    fn revive_reads_the_deps_field() {
        #[derive(Deserialize)]
        struct Deps {
            deps: Option<Vec<u32>>,
        }
        let s = TaskSpec { deps: vec![3, 7], ..plain() };
        let d: Deps = rmp_serde::from_slice(&s.encode()).unwrap();
        assert_eq!(d.deps, Some(vec![3, 7]));
        let none: Deps = rmp_serde::from_slice(&plain().encode()).unwrap();
        assert_eq!(none.deps, None);
        let lua = include_str!("../store/lua/prelude.lua");
        assert!(lua.contains(&format!("['{DEPS_FIELD}']")), "prelude.lua must read the `{DEPS_FIELD}` field");
    }
}
