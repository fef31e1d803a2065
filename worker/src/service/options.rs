//! What a worker is started with ([`WorkerOptions`]) and why it could not start or stopped
//! early ([`WorkerError`]).

use zo_common::catalog::Catalog;
use zo_common::store::StoreError;

use crate::config::WorkerConfig;

/// Where and how this worker runs.
pub struct WorkerOptions {
    pub redis_url: String,
    pub namespace: String,
    pub config: WorkerConfig,
    pub catalog: Catalog,
    /// Serve Prometheus metrics here.
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// Use the CCR instances `zo-worker ccr start` left running instead of starting them.
    pub use_running_ccr: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Config(String),
    /// Something the worker needs outside it is missing (a CCR it was told to use).
    #[error("{0}")]
    Missing(String),
}
