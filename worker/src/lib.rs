//! `zo-worker`: takes jobs from the Redis streams of the instances it serves, runs each task's
//! command and agent on the execution host (over SSH, locally, or simulated) and records the
//! result atomically before acknowledging the job.
//!
//! - [`config`] — the worker's YAML config.
//! - [`ccr`] — Claude Code Router instances: configs, supervision, the `ccr` commands.
//! - [`secrets`] — API keys from Bitwarden (`bws`), the environment or `.env`.
//! - [`exec`] — executors (`ssh`, `local`) behind one trait, and the wrapper protocol.
//! - [`task`] — one task from command to agent to outcome.
//! - [`service`] — read loops, job handling, shutdown.
//! - [`batch`] — group commit of the hot path's Redis steps (mark, record, ack).

pub mod batch;
pub mod ccr;
pub mod config;
pub mod exec;
pub mod secrets;
pub mod service;
pub mod task;
