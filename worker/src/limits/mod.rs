//! Limits as one subsystem: rate limits ([`rates`]), shared slots of an instance's
//! `max_concurrent` ([`instance`]), host quotas ([`quotas`]) and admission through all of
//! them ([`admission`]), behind one handle ([`Limits`], in `state.rs`) that takes the store
//! and the limiter batch, not the worker's shared state. A job admits through it, notes its
//! outcome and releases what it held; the batched limiter steps themselves are
//! `batch/limits.rs`.

pub mod admission;
pub mod instance;
mod quotas;
pub mod rates;
mod state;

pub use admission::{Asked, Decision};
pub use instance::{conf_text, InstanceLimits, SharedSlot};
pub use state::{Limiters, Limits};
