//! Shared core of Zo Worker Swarm, used by `zo-submit` (producer) and `zo-worker`.
//!
//! - [`model`] — the vocabulary: task specs, states, statuses, error classes, results, read
//!   models of a run. Depends on nothing else here.
//! - [`yaml`] — YAML reading with `file:line:col` errors.
//! - [`checks`] — `expect:` and `gate:` over a task's output, and the JSON it carries.
//! - [`catalog`] — the model instances (name, CCR port, model, namespace-wide limits and prices).
//! - [`graph`] — cycles, layers and children over dependency index lists.
//! - [`rules`] — trigger rules and `on_success`/`on_failure` conditions as pure functions.
//! - [`taskfile`] — parse and validate task files, every problem at once.
//! - [`template`] — `${{ … }}` in commands and prompts: checked at plan time, rendered on the
//!   worker from the dependencies' results, values reaching bash as data only.
//! - [`plan`] — the printed plan.
//! - [`estimate`] — dry-run estimates of a run's duration and cost from earlier runs.
//! - [`store`] — the one place that speaks Redis: connection, key layout, Lua scripts, run
//!   creation, outbox, state transitions, the stream-entry codec, dead letters, read models.
//! - [`report`] — the results document, the dashboard and the Markdown report.
//! - [`text`] — untrusted text made safe for terminals and reports.
//! - [`files`] — atomic file writes; [`archive`] — finished runs' documents kept as files.
//!
//! `common` knows nothing of SSH, processes or terminals; only [`store`] knows Redis.

pub mod archive;
pub mod catalog;
pub mod checks;
pub mod estimate;
pub mod files;
pub mod graph;
pub mod model;
pub mod plan;
pub mod report;
pub mod rules;
pub mod store;
pub mod taskfile;
pub mod template;
pub mod text;
pub mod yaml;
