//! Everything a task needs from the worker ([`TaskContext`]) and where each of its steps runs
//! ([`Runner`]): chosen once from the config — on the execution host through its executor,
//! or simulated — so that running a step never asks which (`steps.rs`).

use std::sync::Arc;

use zo_common::catalog::Catalog;

use crate::config::{AgentMode, WorkerConfig};
use crate::exec::Executor;

/// Where a step runs: each kind of executor of the config maps to one.
#[derive(Clone)]
pub enum Runner {
    /// On the execution host, through its executor (`ssh`, `local`).
    Host(Arc<dyn Executor>),
    /// Simulated on the worker (`executor.kind: simulate`, `agent.mode: simulate`): the
    /// task's `simulate:` block says how long it takes and what it answers.
    Simulated,
}

/// Everything a task needs from the worker, shared by all its tasks.
pub struct TaskContext {
    /// Where the command step runs.
    pub command: Runner,
    /// Where the agent step runs: simulated with `agent.mode: simulate`, else where the
    /// command does.
    pub agent: Runner,
    pub agent_command: String,
    pub base_url: String,
    pub api_key: Option<String>,
    /// The CCR `APIKEY` of each supervised instance (wins over `api_key`).
    pub instance_keys: std::collections::HashMap<String, String>,
    pub agent_env: Vec<(String, String)>,
    /// `executor.env` and `executor.pass_env`, resolved: every step of every task gets them.
    pub task_env: Vec<(String, String)>,
    pub workdir: Option<String>,
    pub max_output: usize,
    pub catalog: Catalog,
}

impl TaskContext {
    /// `executor`: the config's (`None`: `executor.kind: simulate`).
    pub fn new(cfg: &WorkerConfig, catalog: Catalog, executor: Option<Arc<dyn Executor>>, api_key: Option<String>) -> Self {
        let command = match executor {
            Some(ex) => Runner::Host(ex),
            None => Runner::Simulated,
        };
        let agent = match cfg.agent.mode {
            AgentMode::Simulate => Runner::Simulated,
            AgentMode::Command => command.clone(),
        };
        TaskContext {
            command,
            agent,
            agent_command: cfg.agent.command.clone(),
            base_url: cfg.agent.base_url.clone(),
            api_key,
            instance_keys: Default::default(),
            agent_env: cfg.agent.env.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            task_env: Vec::new(),
            workdir: cfg.workdir.clone(),
            max_output: cfg.max_output_bytes,
            catalog,
        }
    }

    /// The execution host tasks reach, if any (none when their commands are simulated).
    pub fn host(&self) -> Option<&Arc<dyn Executor>> {
        match &self.command {
            Runner::Host(ex) => Some(ex),
            Runner::Simulated => None,
        }
    }
}
