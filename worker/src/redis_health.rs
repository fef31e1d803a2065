//! What the worker says when Redis fails it: one warning when the trouble starts (or changes
//! kind: unreachable, out of memory), one line when Redis works again — not one line per
//! retry, per instance or per task. Every loop and job reports its failures here; the
//! details of each retry go to the debug log.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use tracing::{debug, info, warn};
use zo_common::store::StoreError;

/// Kinds of trouble, each announced once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Trouble {
    /// Redis does not answer (connection refused, dropped, timed out).
    Unreachable,
    /// Redis answers reads but refuses writes (`maxmemory` with `noeviction`).
    OutOfMemory,
}

impl Trouble {
    fn of(e: &StoreError) -> Option<Trouble> {
        match e {
            StoreError::OutOfMemory(_) => Some(Trouble::OutOfMemory),
            e if e.is_infrastructure() && !matches!(e, StoreError::Refused(_) | StoreError::TooOld { .. }) => Some(Trouble::Unreachable),
            _ => None,
        }
    }
}

/// After Redis came back, failures this soon are pooled connections that broke with the
/// outage (each fails once); they are not a new outage.
const SETTLING: Duration = Duration::from_secs(5);

#[derive(Debug, Default)]
pub struct RedisHealth {
    trouble: Mutex<Option<Trouble>>,
    back_at: Mutex<Option<Instant>>,
}

impl RedisHealth {
    /// Records a failed Redis call made while `doing`. Returns true when the failure is
    /// Redis being unreachable or out of memory — said once here, so the caller says nothing
    /// more; false for any other error, which the caller reports itself.
    pub fn failed(&self, e: &StoreError, doing: &str) -> bool {
        let Some(kind) = Trouble::of(e) else { return false };
        let settling = self.back_at.lock().expect("health lock").is_some_and(|t| t.elapsed() < SETTLING);
        if settling && kind == Trouble::Unreachable && self.trouble.lock().expect("health lock").is_none() {
            debug!("{doing}: {e} (a connection broken by the outage; retrying)");
            return true;
        }
        let was = self.trouble.lock().expect("health lock").replace(kind);
        if was == Some(kind) {
            debug!("{doing}: {e}; retrying");
        } else {
            match kind {
                Trouble::Unreachable => warn!("Redis is unreachable ({e}); jobs and results wait here and every loop retries with backoff"),
                Trouble::OutOfMemory => warn!("{e}; results and released tasks wait here and are written when Redis has room"),
            }
        }
        true
    }

    /// A write went through: Redis is back (said once).
    pub fn wrote(&self) {
        if let Some(was) = self.trouble.lock().expect("health lock").take() {
            *self.back_at.lock().expect("health lock") = Some(Instant::now());
            match was {
                Trouble::Unreachable => info!("Redis is reachable again"),
                Trouble::OutOfMemory => info!("Redis accepts writes again"),
            }
        }
    }

    /// A read went through: Redis is reachable, though it may still refuse writes.
    pub fn read(&self) {
        let mut t = self.trouble.lock().expect("health lock");
        if *t == Some(Trouble::Unreachable) {
            *t = None;
            *self.back_at.lock().expect("health lock") = Some(Instant::now());
            info!("Redis is reachable again");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn says_each_trouble_once() {
        let h = RedisHealth::default();
        let down = StoreError::Unreachable { url: "redis://x".into(), reason: "refused".into() };
        let oom = StoreError::OutOfMemory("maxmemory".into());
        assert!(h.failed(&down, "reading"));
        assert_eq!(*h.trouble.lock().unwrap(), Some(Trouble::Unreachable));
        assert!(h.failed(&down, "reading"));
        h.read();
        assert_eq!(*h.trouble.lock().unwrap(), None);
        assert!(h.failed(&down, "marking"));
        assert_eq!(*h.trouble.lock().unwrap(), None, "a connection broken by the outage, just after it: no new outage");
        assert!(h.failed(&oom, "recording"));
        h.read();
        assert_eq!(*h.trouble.lock().unwrap(), Some(Trouble::OutOfMemory), "reads work under OOM: not yet healthy");
        h.wrote();
        assert_eq!(*h.trouble.lock().unwrap(), None);
        assert!(!h.failed(&StoreError::Corrupt("x".into()), "reading"), "other errors are the caller's to report");
    }
}
