//! Exit codes (documented in the README and `--help`), and how a queue error maps to one.

use zo_common::store::StoreError;

pub const OK: u8 = 0;
pub const TASKS_FAILED: u8 = 1;
pub const INVALID: u8 = 2;
pub const INFRA: u8 = 3;
pub const INTERRUPTED: u8 = 130;

/// Says what went wrong with the queue; its exit code.
pub(crate) fn fail_queue(e: &StoreError) -> u8 {
    eprintln!("zo-submit: {e}");
    // An unknown run is bad input; everything else is Redis or what it holds.
    match e {
        StoreError::NoSuchRun(_) | StoreError::BadUrl { .. } => INVALID,
        _ => INFRA,
    }
}
