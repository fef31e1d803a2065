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

use super::vocab::{Priority, RetryPolicy, Simulate};

/// The MessagePack field holding a spec's dependencies. The `REVIVE` script reads it inside
/// Redis (`cmsgpack.unpack(spec).deps`); a test pins the two together.
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
    /// Indices (into the run's tasks) of the tasks this one waits for.
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
            tags: Vec::new(),
            description: None,
            output_file: None,
            simulate: None,
            retry: RetryPolicy::default(),
            priority: Priority::default(),
        }
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
    use crate::model::{Backoff, ErrorClass};

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
        assert_eq!(TaskSpec::decode(&s.encode()).unwrap(), s);
    }

    /// `REVIVE` (store/lua/revive.lua) reads the dependencies out of the encoded spec inside
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
        let lua = include_str!("../store/lua/revive.lua");
        assert!(lua.contains(&format!("['{DEPS_FIELD}']")), "revive.lua must read the `{DEPS_FIELD}` field");
    }
}
