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

fn run_script(body: &str) -> Script {
    Script::new(&format!("{PRELUDE}\n{SLOTS}\n{BUDGET}\n{body}"))
}

/// A limiter's rate and shared slots, at the head of every limiter script.
const LIMITER_LIB: &str = include_str!("lua/limiter_lib.lua");

fn limiter_script(body: &str) -> Script {
    Script::new(&format!("{LIMITER_LIB}\n{body}"))
}

fn plain_script(body: &str) -> Script {
    Script::new(body)
}

/// The one table of scripts: each static, how it is assembled (`run_script` with the run
/// prelude, `limiter_script` with the limiter library, or `plain_script`) and its file; and
/// [`FILES`], every file of the table, for the header check.
macro_rules! scripts {
    ($($(#[$doc:meta])* $vis:vis $name:ident = $kind:ident($file:literal);)*) => {
        $($(#[$doc])* $vis static $name: LazyLock<Script> = LazyLock::new(|| $kind(include_str!($file)));)*
        /// Every script file of the table, as compiled in.
        #[cfg(test)]
        const FILES: &[&str] = &[$(include_str!($file)),*];
    };
}

scripts! {
    pub(crate) MARK_RUNNING = run_script("lua/mark_running.lua");
    pub(crate) RENEW = run_script("lua/renew.lua");
    pub(crate) RECORD_RESULT = run_script("lua/record_result.lua");
    pub(crate) RELEASE = run_script("lua/release.lua");
    pub(crate) DEFER = run_script("lua/defer.lua");
    pub(crate) PROMOTE = run_script("lua/promote.lua");
    pub(crate) REVIVE = run_script("lua/revive.lua");
    pub(crate) CASCADE = run_script("lua/cascade.lua");
    pub(crate) CANCEL = run_script("lua/cancel.lua");
    pub(crate) APPROVE = run_script("lua/approve.lua");
    pub(crate) NS_SLOTS = limiter_script("lua/ns_slots.lua");
    pub(crate) LIMIT_STEP = limiter_script("lua/limit_step.lua");
    pub(crate) DEBIT = plain_script("lua/debit.lua");
    pub(crate) UNLOCK = plain_script("lua/unlock.lua");
    pub(crate) TRIM_HELD = plain_script("lua/trim_held.lua");
    pub(crate) ARCHIVE_CLAIM = plain_script("lua/archive_claim.lua");
    pub(crate) ARCHIVE_DONE = plain_script("lua/archive_done.lua");
    /// Public for the test that commits a run whose staging key is gone.
    pub COMMIT_RUN = plain_script("lua/commit_run.lua");
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
