//! Shared core of Zo Worker Swarm, used by `zo-submit` (producer) and `zo-worker`.
//!
//! - [`taskfile`] — parse and validate task files, with `file:line:col` errors.
//! - [`plan`] — dependency batches, cycle detection, the printed plan.
//! - [`catalog`] — the model instances (name, CCR port, model).
//! - [`model`] — job specs and results as they travel through Redis.
//! - [`keys`] — the Redis key layout, in one place.
//! - [`queue`] — every Redis operation that changes a task's state (Lua scripts).
//! - [`scripts`] — the Lua scripts, one per state transition.
//! - [`report`] — the results document, the dashboard and the Markdown report.
//!
//! `common` knows nothing of SSH, processes or terminals.

pub mod catalog;
pub mod keys;
pub mod model;
pub mod plan;
pub mod queue;
pub mod report;
pub mod scripts;
pub mod taskfile;
pub mod yaml;
