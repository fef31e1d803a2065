//! The Lua scripts, one file each under `lua/` with a header naming its KEYS, ARGV and reply.
//! Run scripts take all keys of one run (in [`super::keys::RUN_KEY_SUFFIXES`] order) and begin
//! with `lua/prelude.lua`, `lua/slots.lua` (concurrency caps) and `lua/budget.lua` (cancelling,
//! the budget), which name the keys and holds the shared helpers (walking
//! dependents, releasing and skipping them, finishing the run): each is one atomic step on
//! one run, i.e. one Cluster slot.

use std::sync::LazyLock;

use redis::Script;

const PRELUDE: &str = include_str!("lua/prelude.lua");
/// The concurrency slots of capped runs, after the prelude in every run script.
const SLOTS: &str = include_str!("lua/slots.lua");
/// Cancelling tasks and the run's budget, after the slots.
const BUDGET: &str = include_str!("lua/budget.lua");

fn with_run_prelude(body: &str) -> Script {
    Script::new(&format!("{PRELUDE}\n{SLOTS}\n{BUDGET}\n{body}"))
}

/// A limiter's rate and shared slots, at the head of every limiter script.
const LIMITER_LIB: &str = include_str!("lua/limiter_lib.lua");

fn with_limiter_lib(body: &str) -> Script {
    Script::new(&format!("{LIMITER_LIB}\n{body}"))
}

fn alone(body: &str) -> Script {
    Script::new(body)
}

/// The one table of scripts: each static, how it is assembled (`with_run_prelude`,
/// `with_limiter_lib`, or `alone`) and its file; and [`FILES`], every file of the table, for
/// the header check.
macro_rules! scripts {
    ($($(#[$doc:meta])* $vis:vis $name:ident = $kind:ident($file:literal);)*) => {
        $($(#[$doc])* $vis static $name: LazyLock<Script> = LazyLock::new(|| $kind(include_str!($file)));)*
        /// Every script file of the table, as compiled in.
        #[cfg(test)]
        const FILES: &[&str] = &[$(include_str!($file)),*];
    };
}

scripts! {
    pub(crate) MARK_RUNNING = with_run_prelude("lua/mark_running.lua");
    pub(crate) RENEW = with_run_prelude("lua/renew.lua");
    pub(crate) RECORD_RESULT = with_run_prelude("lua/record_result.lua");
    pub(crate) RELEASE = with_run_prelude("lua/release.lua");
    pub(crate) DEFER = with_run_prelude("lua/defer.lua");
    pub(crate) PROMOTE = with_run_prelude("lua/promote.lua");
    pub(crate) REVIVE = with_run_prelude("lua/revive.lua");
    pub(crate) CASCADE = with_run_prelude("lua/cascade.lua");
    pub(crate) CANCEL = with_run_prelude("lua/cancel.lua");
    pub(crate) APPROVE = with_run_prelude("lua/approve.lua");
    pub(crate) NS_SLOTS = with_limiter_lib("lua/ns_slots.lua");
    pub(crate) LIMIT_STEP = with_limiter_lib("lua/limit_step.lua");
    pub(crate) DEBIT = alone("lua/debit.lua");
    pub(crate) UNLOCK = alone("lua/unlock.lua");
    pub(crate) TRIM_HELD = alone("lua/trim_held.lua");
    pub(crate) ARCHIVE_CLAIM = alone("lua/archive_claim.lua");
    pub(crate) ARCHIVE_DONE = alone("lua/archive_done.lua");
    /// Public for the test that commits a run whose staging key is gone.
    pub COMMIT_RUN = alone("lua/commit_run.lua");
}

#[cfg(test)]
mod tests {
    /// Every script file opens with a header that names its KEYS, ARGV and reply.
    #[test]
    fn every_script_has_a_header() {
        let files = super::FILES;
        assert!(files.len() > 10, "the table is read");
        for f in files {
            let head: Vec<&str> = f.lines().take_while(|l| l.starts_with("--")).collect();
            let first = head.first().copied().unwrap_or("");
            for part in ["-- KEYS:", "-- ARGV:", "-- Returns:"] {
                assert!(head.iter().any(|l| l.starts_with(part)), "{first}: header lacks `{part}`");
            }
        }
    }
}
