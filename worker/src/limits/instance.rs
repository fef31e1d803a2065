//! What this worker's catalog says of the instances it serves: each one's own limiter (its
//! `rate_group` or itself) and `max_concurrent`, and the shared slot a task of one holds.

use zo_common::catalog::Catalog;
use zo_common::model::RateLimit;
use zo_common::store::Limiter;

/// What this worker's catalog says of one served instance, worked out once at start: the
/// limiter it shares with every run (its `rate_group`, else itself; with no rate limits it
/// still carries the backoff after a rate-limit answer) and its `max_concurrent`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceLimits {
    pub own: Limiter,
    pub max_concurrent: Option<u32>,
}

impl InstanceLimits {
    pub fn of(catalog: &Catalog, instance: &str) -> Self {
        match catalog.get(instance) {
            Some(i) => InstanceLimits {
                own: Limiter { name: i.limiter().to_string(), rate: RateLimit { rpm: i.max_rpm, tpm: i.max_tpm } },
                max_concurrent: i.max_concurrent,
            },
            None => InstanceLimits { own: Limiter { name: instance.to_string(), rate: RateLimit::default() }, max_concurrent: None },
        }
    }

    /// The catalog's `max_concurrent`, with the limiter that holds its slots.
    pub fn shared_cap(&self) -> Option<(&str, u32)> {
        self.max_concurrent.map(|c| (self.own.name.as_str(), c))
    }
}

/// A shared slot a running task holds (counted in Redis among its worker's): of which
/// limiter, and its cap. Given back once: [`super::Limits::give_back`] takes it.
#[derive(Debug, PartialEq, Eq)]
pub struct SharedSlot {
    pub limiter: String,
    pub cap: u32,
}

/// An instance's namespace-wide limits as text, to compare between workers' catalogs.
pub fn conf_text(i: &zo_common::catalog::Instance) -> String {
    let n = |v: Option<u64>| v.map_or_else(|| "-".to_string(), |n| n.to_string());
    format!("max_concurrent {} max_rpm {} max_tpm {}", n(i.max_concurrent.map(u64::from)), n(i.max_rpm.map(u64::from)), n(i.max_tpm))
}
