//! The one place that speaks Redis. [`Store`] holds the connection pool and the key layout;
//! every operation on queue state is a method of it, taking a [`Conn`] from [`Store::conn`]
//! (so a caller can run several steps over one connection). Split by concern:
//!
//! - [`keys`] — the key layout, built in one place; `scripts` — the Lua scripts (`lua/*.lua`).
//! - `create` — creating a run (staged keys, one commit); `outbox` — moving released jobs
//!   into the streams; `transitions` — every other state change of a task (Lua).
//! - `entry` — the stream-entry codec (written and read only there); `streams` — consumer
//!   groups, reading, reclaiming.
//! - `dead` — dead letters; `read` — run meta, snapshots, events; `workers` — heartbeats and
//!   live workers; `upkeep` — due retries, outboxes and the run index; `limits` — rate
//!   limiters shared by every worker (their own keys, beside the runs'); `history` — the
//!   tasks of recent runs that dry-run estimates learn from; `inspect` — the runs and job
//!   streams the inspection commands list.
//!
//! Every state change of a task is one atomic operation on one run's keys (see
//! ARCHITECTURE.md, "Task lifecycle"). Callers never see a Redis command.

mod conn;
mod create;
mod dead;
mod entry;
mod error;
mod history;
mod inspect;
pub mod keys;
mod limits;
mod outbox;
mod protocol;
mod read;
mod scripts;
mod streams;
mod transitions;
mod upkeep;
mod workers;

pub use conn::{redact_url, Conn, Store};
pub use create::{check_run_id, new_run_id, NewRun, RootBlobs};
pub use dead::DeadLetter;
pub use entry::{Delivery, Job};
pub use error::StoreError;
pub use inspect::{QueueStats, RunFilter};
pub use keys::Keys;
pub use limits::{Admits, LimitAsk, LimitStep, Limiter};
pub use outbox::LocalSpecs;
pub use protocol::{DEFAULT_RETENTION, MIN_REDIS, PROTOCOL};
pub use read::{Event, EventBatch, RunRef, RunningTask};
pub use scripts::COMMIT_RUN;
pub use transitions::{Batch, Cancelled, Cascaded, Claim, Decided, Decision, Deferred, MarkRunning, Recorded, Renewed, ToMark, ToRecord};
pub use upkeep::ArchiveState;
pub use workers::{LiveWorker, WorkerInfo, HEARTBEAT_EVERY, HEARTBEAT_TTL, LIVE_WITHIN};
