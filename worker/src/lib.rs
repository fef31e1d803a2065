//! `zo-worker`: takes jobs from the Redis streams of the instances it serves, runs each task's
//! command and agent on the execution host (over SSH, locally, or simulated) and records the
//! result atomically before acknowledging the job.
//!
//! - [`config`] — the worker's YAML config.
//! - [`ccr`] — Claude Code Router instances: configs, supervision, the `ccr` commands.
//! - [`secrets`] — API keys from Bitwarden (`bws`), the environment or `.env`.
//! - [`exec`] — executors (`ssh`, `local`) behind one trait, and the wrapper protocol.
//! - [`task`] — one task from command to agent to outcome.
//! - [`templates`] — a task's `${{ … }}` rendered from its dependencies' stored results.
//! - [`service`] — the loops (read, reclaim, lease, upkeep, heartbeat) and shutdown.
//! - [`shared`] — what every loop and job shares; [`waiting`] — sleeps and backoff that
//!   listen for shutdown.
//! - [`job`] — one delivery from entry to acknowledgement, and the guard of what it holds.
//! - [`batch`] — group commit of the hot path's Redis steps (mark, record, ack).
//! - [`limits`] — rate limits, shared slots, host quotas and admission, behind `Limits`.
//! - [`waiters`] — how a job is known to the limiters, and waking waiting jobs.
//! - [`cli`] — the `ccr` and `secrets` commands.
//! - [`metrics`] — Prometheus metrics at `--metrics-addr`.
//! - [`preflight`] — start-up checks of what tasks will need (`ccr`, the host, bash, the agent).
//!
//! The worker speaks to Redis only through `zo_common::store`.

/// `--version` and what heartbeats announce: the package version and the git commit built.
pub const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (", env!("ZO_GIT_COMMIT"), ")");

pub mod batch;
pub mod ccr;
pub mod cli;
pub mod config;
pub mod exec;
pub mod job;
pub mod limits;
pub mod metrics;
pub mod preflight;
pub mod redis_health;
pub mod secrets;
pub mod service;
pub mod shared;
pub mod task;
pub mod templates;
pub mod waiters;
pub mod waiting;
