//! The Redis key layout, built in one place.
//!
//! Everything lives under a namespace (default `zo`). Keys of one run carry the run id as a
//! hash tag (`zo:run:{RUN}:…`), so every multi-key script touches one run, i.e. one Cluster
//! slot. The three priority streams of an instance share the instance as their hash tag
//! (`zo:jobs:{INSTANCE}…`), so one XREADGROUP reads all three in one slot. Other shared keys
//! (dead letters, the run index, worker heartbeats) are touched by single-key commands only.
//!
//! | key | type | what |
//! |---|---|---|
//! | `NS:jobs:{INSTANCE}` | stream | jobs for one model instance (priority medium); group `NS-workers` |
//! | `NS:jobs:{INSTANCE}:high`, `…:low` | stream | the same for priorities high and low |
//! | `NS:dead` | stream | dead-lettered entries with their reason |
//! | `NS:runs` | zset | run ids by creation time (ms) |
//! | `NS:workers` | zset | worker ids by last heartbeat (ms) |
//! | `NS:worker:ID` | string | worker info (JSON: id, pid, instances, executor, protocol), expires without heartbeat |
//! | `NS:run:{R}:meta` | hash | run counters and status |
//! | `NS:run:{R}:spec` | hash | idx → task spec (MessagePack) |
//! | `NS:run:{R}:state` | hash | idx → waiting/queued/running/success/failed/timeout/skipped/cancelled |
//! | `NS:run:{R}:attempt` | hash | idx → current attempt number |
//! | `NS:run:{R}:pending` | hash | idx → dependencies not yet succeeded (tasks with the default rule and no condition) |
//! | `NS:run:{R}:rules` | hash | idx → `RULE\|DEPS\|CONDS\|P:w,…` for a task with a trigger rule or `on_success`/`on_failure` condition; `t:idx` → `succeeded,failed,skipped,conditions held` so far; `a:idx` → the stage whose approval it waits for |
//! | `NS:run:{R}:children` | hash | idx → comma-separated dependents |
//! | `NS:run:{R}:result` | hash | idx → result (MessagePack) |
//! | `NS:run:{R}:stages` | hash | stage → `awaiting`, `approved\|WHO\|MS` or `rejected\|WHO\|MS\|REASON` (stages with `approval_required` once reached) |
//! | `NS:run:{R}:skip` | hash | idx → `d:P` (a failure of task P made its rule unmeetable), `c:P` (task P broke its condition) or `r:` (its stage was rejected) |
//! | `NS:run:{R}:outbox` | list | `idx:attempt` released but not yet confirmed in a stream |
//! | `NS:run:{R}:events` | stream | task state changes, for live progress |
//! | `NS:run:{R}:lease` | hash | idx → `worker\|expiry_ms\|started_ms` of the running attempt |
//! | `NS:run:{R}:delayed` | zset | `idx:attempt` of retries, scored by when they are due |
//! | `NS:run:{R}:history` | hash | `idx:attempt` → result of an attempt that was retried or revived (MessagePack; the final one is in `result`) |
//! | `NS:run:{R}:archive` | string | `claim\|WHO` while a process writes the finished run's archive file (a minute), then `done\|PATH`; `REVIVE` deletes it when it reopens the finished run |
//! | `NS:run:{R}:flushing` | string | who is moving the outbox into the streams (expires after 5 s; not a script key) |
//! | `NS:run:{R}:new:SUFFIX` | as `SUFFIX` | a run being created, renamed into place by its commit (expires after an hour) |
//! | `NS:run:{R}:cancel` | hash | idx → when cancelling a running task was requested |
//! | `NS:run:{R}:deliveries` | hash | idx → deliveries of the current attempt (poison detection) |
//! | `NS:run:{R}:cascade` | list | `idx:offset` of final tasks whose dependents still need settling (a long cascade goes on in chunks) |
//! | `NS:run:{R}:slots` | zset | idx of each parked task granted one of the run's concurrency slots (`resource_limits`) until it is marked, scored by the grant's expiry (ms); a running task's slot is its running state |
//! | `NS:run:{R}:parked` | zset | `idx:attempt` of queued tasks waiting for a slot, oldest first (scored by when they parked) |
//! | `NS:run:{R}:slotinfo` | hash | `i:IDX` → the task's instance (capped runs); `n:INSTANCE` → slots held on it |
//! | `NS:limit:{NAME}` | hash | a rate limiter (an instance, a `rate_group`, or `run:RUN:INSTANCE`): `tat` (next start, ms), `level`/`at` (tokens left and when), `backoff_until`, `strikes` (rate-limit answers in a row); expires after a day idle |
//! | `NS:limit:{NAME}:held` | hash | the instance's `max_concurrent` slots (the catalog's) held per worker: `n:WORKER` how many, `e:WORKER` until when (its leases' expiry, ms), `total` |
//! | `NS:limit:{NAME}:waiting` | list | `RUN\|IDX\|ATTEMPT` of tasks waiting for one, oldest first |
//! | `NS:limit:{NAME}:resv` | hash | `run\|idx\|attempt` → the start (ms) reserved for that job |
//! | `NS:active` | set | runs not yet finished (for promoting due retries) |

use crate::model::Priority;

/// Key builder for one namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys {
    ns: String,
}

/// The per-run keys, in the order the Lua scripts take them.
pub const RUN_KEY_SUFFIXES: [&str; 22] = [
    "meta",
    "spec",
    "state",
    "attempt",
    "pending",
    "children",
    "result",
    "skip",
    "outbox",
    "events",
    "lease",
    "delayed",
    "history",
    "cancel",
    "deliveries",
    "cascade",
    "rules",
    "stages",
    "slots",
    "parked",
    "slotinfo",
    "archive",
];

impl Keys {
    pub fn new(ns: &str) -> Self {
        Keys { ns: ns.to_string() }
    }

    pub fn namespace(&self) -> &str {
        &self.ns
    }

    /// The stream of jobs for one instance (priority medium).
    pub fn jobs(&self, instance: &str) -> String {
        format!("{}:jobs:{{{instance}}}", self.ns)
    }

    /// The stream of one instance for one priority: medium uses [`Keys::jobs`], high and low
    /// have their own streams next to it, in the same hash slot.
    pub fn jobs_for(&self, instance: &str, priority: Priority) -> String {
        match priority {
            Priority::Medium => self.jobs(instance),
            p => format!("{}:jobs:{{{instance}}}:{}", self.ns, p.as_str()),
        }
    }

    /// The streams of one instance, highest priority first.
    pub fn job_streams(&self, instance: &str) -> Vec<String> {
        Priority::ALL.iter().map(|&p| self.jobs_for(instance, p)).collect()
    }

    /// The consumer group all workers share.
    pub fn group(&self) -> String {
        format!("{}-workers", self.ns)
    }

    pub fn dead(&self) -> String {
        format!("{}:dead", self.ns)
    }

    pub fn active(&self) -> String {
        format!("{}:active", self.ns)
    }

    pub fn runs(&self) -> String {
        format!("{}:runs", self.ns)
    }

    pub fn workers(&self) -> String {
        format!("{}:workers", self.ns)
    }

    pub fn worker(&self, id: &str) -> String {
        format!("{}:worker:{id}", self.ns)
    }

    /// A rate limiter's state and its reservations (`NS:limit:{NAME}`, `…:resv`): their own
    /// hash tag, so one script touches both and nothing else.
    pub fn limiter(&self, name: &str) -> (String, String) {
        let hash = format!("{}:limit:{{{name}}}", self.ns);
        let resv = format!("{hash}:resv");
        (hash, resv)
    }

    /// An instance's concurrency slots shared by every run, counted per worker, and the
    /// tasks waiting for one (`NS:limit:{NAME}:held`, `…:waiting`), beside its rate limiter.
    pub fn limiter_slots(&self, name: &str) -> (String, String) {
        let base = format!("{}:limit:{{{name}}}", self.ns);
        (format!("{base}:held"), format!("{base}:waiting"))
    }

    /// One of the run's keys (`suffix` from [`RUN_KEY_SUFFIXES`], or `flushing`).
    pub fn run(&self, run_id: &str, suffix: &str) -> String {
        format!("{}:run:{{{run_id}}}:{suffix}", self.ns)
    }

    /// All keys of a run, in [`RUN_KEY_SUFFIXES`] order.
    pub fn run_keys(&self, run_id: &str) -> Vec<String> {
        RUN_KEY_SUFFIXES.iter().map(|s| self.run(run_id, s)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_keys_share_a_hash_tag() {
        let k = Keys::new("zo");
        assert_eq!(k.run("20260101-000000-ab12", "meta"), "zo:run:{20260101-000000-ab12}:meta");
        assert!(k.run_keys("R").iter().all(|key| key.contains("{R}")));
        assert_eq!(k.jobs("general"), "zo:jobs:{general}");
        // One slot for an instance's three priority streams.
        assert!(k.job_streams("fast").iter().all(|s| s.contains("{fast}")));
    }
}
