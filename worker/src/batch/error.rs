//! Why a batched step did not happen, and how its answer travels back.

use std::sync::Arc;

use tokio::sync::oneshot;
use zo_common::store::StoreError;

/// Why a batched step did not happen. The store's error keeps its class, so a caller retries
/// only what may succeed next time.
#[derive(Debug, Clone, thiserror::Error)]
pub enum BatchError {
    #[error("{0}")]
    Store(Arc<StoreError>),
    #[error("the worker is shutting down")]
    ShuttingDown,
}

impl BatchError {
    /// The Redis error behind it, if any.
    pub fn store(&self) -> Option<&StoreError> {
        match self {
            BatchError::Store(e) => Some(e),
            BatchError::ShuttingDown => None,
        }
    }

    /// True when trying again may succeed (Redis was unreachable or the connection broke).
    pub fn is_transient(&self) -> bool {
        match self {
            BatchError::Store(e) => e.is_infrastructure(),
            BatchError::ShuttingDown => false,
        }
    }
}

pub(crate) type Reply<T> = oneshot::Sender<Result<T, BatchError>>;
