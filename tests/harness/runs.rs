//! Reading a run's state as Redis holds it, for checks the results document cannot make.

use std::time::{Duration, Instant};

use super::Redis;

/// A run's counters as Redis holds them ([`Redis::recorded`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recorded {
    pub done: u64,
    pub success: u64,
    pub failed: u64,
    pub skipped: u64,
    pub results: u64,
}

impl Redis {
    /// What Redis recorded for run `run` of namespace `ns`: the `meta` counters (`done`,
    /// `success`, `failed`, …; absent ones are 0) and the number of stored results. Counted by
    /// the scripts as results arrive, so a result recorded twice shows here — unlike in the
    /// results document, which has one row per task by construction.
    pub fn recorded(&self, ns: &str, run: &str) -> Recorded {
        let mut c = self.client();
        let meta: std::collections::HashMap<String, String> =
            redis::cmd("HGETALL").arg(format!("{ns}:run:{{{run}}}:meta")).query(&mut c).expect("meta");
        let results: u64 = redis::cmd("HLEN").arg(format!("{ns}:run:{{{run}}}:result")).query(&mut c).expect("results");
        let n = |k: &str| meta.get(k).and_then(|v| v.parse().ok()).unwrap_or(0);
        Recorded { done: n("done"), success: n("success"), failed: n("failed"), skipped: n("skipped"), results }
    }

    /// Waits (polling every 50 ms, at most `limit`) until field `field` of the run's hash
    /// `key` (`state`, `stages`, `meta`, …) reads `want`.
    pub fn wait_run_field(&self, ns: &str, run: &str, key: &str, field: &str, want: &str, limit: Duration) {
        let mut c = self.client();
        let deadline = Instant::now() + limit;
        loop {
            let v: Option<String> = redis::cmd("HGET").arg(format!("{ns}:run:{{{run}}}:{key}")).arg(field).query(&mut c).expect("HGET");
            if v.as_deref() == Some(want) {
                return;
            }
            assert!(Instant::now() < deadline, "`{key}` field `{field}` of run {run} never became {want}: {v:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}
