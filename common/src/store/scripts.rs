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

pub(crate) static MARK_RUNNING: LazyLock<Script> = LazyLock::new(|| run_script(include_str!("lua/mark_running.lua")));
pub(crate) static RENEW: LazyLock<Script> = LazyLock::new(|| run_script(include_str!("lua/renew.lua")));
pub(crate) static RECORD_RESULT: LazyLock<Script> = LazyLock::new(|| run_script(include_str!("lua/record_result.lua")));
pub(crate) static RELEASE: LazyLock<Script> = LazyLock::new(|| run_script(include_str!("lua/release.lua")));
pub(crate) static DEFER: LazyLock<Script> = LazyLock::new(|| run_script(include_str!("lua/defer.lua")));
pub(crate) static PROMOTE: LazyLock<Script> = LazyLock::new(|| run_script(include_str!("lua/promote.lua")));
pub(crate) static REVIVE: LazyLock<Script> = LazyLock::new(|| run_script(include_str!("lua/revive.lua")));
pub(crate) static CASCADE: LazyLock<Script> = LazyLock::new(|| run_script(include_str!("lua/cascade.lua")));
pub(crate) static CANCEL: LazyLock<Script> = LazyLock::new(|| run_script(include_str!("lua/cancel.lua")));
pub(crate) static APPROVE: LazyLock<Script> = LazyLock::new(|| run_script(include_str!("lua/approve.lua")));

/// A limiter's rate and shared slots, at the head of every limiter script.
const LIMITER_LIB: &str = include_str!("lua/limiter_lib.lua");

fn limiter_script(body: &str) -> Script {
    Script::new(&format!("{LIMITER_LIB}\n{body}"))
}

pub(crate) static NS_SLOTS: LazyLock<Script> = LazyLock::new(|| limiter_script(include_str!("lua/ns_slots.lua")));
pub(crate) static LIMIT_STEP: LazyLock<Script> = LazyLock::new(|| limiter_script(include_str!("lua/limit_step.lua")));
pub(crate) static DEBIT: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/debit.lua")));
pub(crate) static UNLOCK: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/unlock.lua")));
pub(crate) static TRIM_HELD: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/trim_held.lua")));
pub(crate) static ARCHIVE_CLAIM: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/archive_claim.lua")));
pub(crate) static ARCHIVE_DONE: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/archive_done.lua")));
/// Public for the test that commits a run whose staging key is gone.
pub static COMMIT_RUN: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/commit_run.lua")));

#[cfg(test)]
mod tests {
    /// Every script file opens with a header that names its KEYS, ARGV and reply.
    #[test]
    fn every_script_has_a_header() {
        let files = [
            include_str!("lua/mark_running.lua"),
            include_str!("lua/renew.lua"),
            include_str!("lua/record_result.lua"),
            include_str!("lua/release.lua"),
            include_str!("lua/defer.lua"),
            include_str!("lua/promote.lua"),
            include_str!("lua/revive.lua"),
            include_str!("lua/cancel.lua"),
            include_str!("lua/approve.lua"),
            include_str!("lua/cascade.lua"),
            include_str!("lua/unlock.lua"),
            include_str!("lua/debit.lua"),
            include_str!("lua/ns_slots.lua"),
            include_str!("lua/limit_step.lua"),
            include_str!("lua/trim_held.lua"),
            include_str!("lua/commit_run.lua"),
            include_str!("lua/archive_claim.lua"),
            include_str!("lua/archive_done.lua"),
        ];
        for f in files {
            let head: Vec<&str> = f.lines().take_while(|l| l.starts_with("--")).collect();
            let first = head.first().copied().unwrap_or("");
            for part in ["-- KEYS:", "-- ARGV:", "-- Returns:"] {
                assert!(head.iter().any(|l| l.starts_with(part)), "{first}: header lacks `{part}`");
            }
        }
    }
}
