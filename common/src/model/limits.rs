//! Resource limits and prices, free of I/O: a run's `resource_limits:` block (the seed's) as
//! validated, and the money arithmetic of cost and budgets.
//!
//! Money is counted in whole nano-dollars ([`Nanos`]): sums of many small task costs stay
//! exact, Redis adds them with `HINCRBY`, and the budget check is an integer comparison.
//! Prices are written as dollars per 1,000 tokens (the seed's `cost_per_1k_tokens`) and kept
//! as nano-dollars per 1,000 tokens: the smallest price that survives is $0.000000001 per
//! 1k tokens.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// An amount of money in nano-dollars (10⁻⁹ USD).
pub type Nanos = u64;

/// Nano-dollars in one dollar.
pub const NANOS_PER_USD: f64 = 1e9;

/// Dollars (as written in a file) → nano-dollars, rounded; `None` for negative, NaN or
/// absurd amounts (over a billion dollars).
pub fn usd_to_nanos(usd: f64) -> Option<Nanos> {
    if !(0.0..=1e9).contains(&usd) {
        return None;
    }
    Some((usd * NANOS_PER_USD).round() as Nanos)
}

/// Whether `usd` is above zero yet rounds to no nano-dollar: it would count as 0 (a budget of
/// it would be dropped, a price of it would be free).
pub fn below_a_nano(usd: f64) -> bool {
    usd > 0.0 && usd_to_nanos(usd) == Some(0)
}

/// Why such an amount is refused; `zero_allowed` when 0 is a valid value there (a price).
pub fn too_small(what: &str, usd: f64, zero_allowed: bool) -> String {
    let fix = if zero_allowed { "write 0 (free) or at least 0.000000001" } else { "write at least 0.000000001" };
    format!("{what} is {usd}, below the smallest amount counted (one nano-dollar, $0.000000001); {fix}")
}

/// Nano-dollars → dollars, for documents and display.
pub fn nanos_to_usd(n: Nanos) -> f64 {
    n as f64 / NANOS_PER_USD
}

/// `$0.0213`: four decimals below a dollar, two above (costs of single tasks are cents).
pub fn format_usd(n: Nanos) -> String {
    format_dollars(nanos_to_usd(n))
}

/// [`format_usd`] of an amount already in dollars (as the results document holds them).
pub fn format_dollars(usd: f64) -> String {
    if usd >= 1.0 {
        format!("${usd:.2}")
    } else {
        format!("${usd:.4}")
    }
}

/// What an instance's model costs: per 1,000 input and output tokens. The seed's single
/// `cost_per_1k_tokens` sets both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Price {
    /// Nano-dollars per 1,000 input tokens (prompt, command output, cache reads and writes).
    pub input_per_1k: Nanos,
    /// Nano-dollars per 1,000 output tokens.
    pub output_per_1k: Nanos,
}

impl Price {
    /// One price for every token.
    pub fn flat(per_1k: Nanos) -> Self {
        Price { input_per_1k: per_1k, output_per_1k: per_1k }
    }

    /// What `input` and `output` tokens cost, rounded up to a whole nano-dollar (a task that
    /// used tokens never costs nothing).
    pub fn cost(&self, input: u64, output: u64) -> Nanos {
        let n = input as u128 * self.input_per_1k as u128 + output as u128 * self.output_per_1k as u128;
        n.div_ceil(1000).min(u64::MAX as u128) as Nanos
    }
}

/// Requests and tokens per minute (a run's model entry, or an instance of the catalog).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RateLimit {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rpm: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tpm: Option<u64>,
}

impl RateLimit {
    pub fn is_none(&self) -> bool {
        self.rpm.is_none() && self.tpm.is_none()
    }
}

/// Limits of one model instance for one run (`resource_limits.models[]`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ModelLimits {
    /// Requests (task starts) per minute.
    pub max_rpm: Option<u32>,
    /// Tokens per minute, debited with what tasks actually used.
    pub max_tpm: Option<u64>,
    pub price: Option<Price>,
}

/// `resource_limits.budget`: the run stops starting tasks once it has spent `max_cost`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    pub max_cost: Nanos,
    /// Alert when spending reaches this share of `max_cost`, in millionths (0.8 → 800,000).
    pub alert_ppm: u32,
}

impl Budget {
    /// Spending at which the `budget_alert` fires.
    pub fn alert_at(&self) -> Nanos {
        (self.max_cost as u128 * self.alert_ppm as u128 / 1_000_000) as Nanos
    }

    /// The budget as stored (its maximum and the spending that raises the alert).
    pub fn from_alert_at(max_cost: Nanos, alert_at: Nanos) -> Self {
        let ppm = if max_cost == 0 { 1_000_000 } else { (alert_at as u128 * 1_000_000 / max_cost as u128).min(1_000_000) as u32 };
        Budget { max_cost, alert_ppm: ppm }
    }
}

/// The default of `quotas.quota_wait`: how long a task waits for its host to come under
/// quota before it fails with class `quota`.
pub const DEFAULT_QUOTA_WAIT: Duration = Duration::from_secs(600);

/// `resource_limits.quotas`: ceilings on the execution host's use, checked before a task
/// starts (carried by each task's spec).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quotas {
    /// CPU busy, in percent of all cores.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_cpu_percent: Option<u32>,
    /// Memory in use, in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_memory_bytes: Option<u64>,
    /// Disk in use on the work directory's filesystem, in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_disk_bytes: Option<u64>,
    /// How long a task waits for its host to come under quota.
    pub wait_ms: u64,
}

/// What an execution host uses now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostUsage {
    pub cpu_percent: u32,
    pub memory_bytes: u64,
    pub disk_bytes: u64,
}

impl Quotas {
    pub fn wait(&self) -> Duration {
        Duration::from_millis(self.wait_ms)
    }

    /// The ceilings `u` passes, in words (none: under quota).
    pub fn exceeded(&self, u: &HostUsage) -> Vec<String> {
        let gb = |b: u64| b as f64 / (1u64 << 30) as f64;
        let mut over = Vec::new();
        if let Some(max) = self.max_cpu_percent.filter(|&m| u.cpu_percent > m) {
            over.push(format!("CPU {}% busy > {max}%", u.cpu_percent));
        }
        if let Some(max) = self.max_memory_bytes.filter(|&m| u.memory_bytes > m) {
            over.push(format!("memory {:.2} GB in use > {:.2} GB", gb(u.memory_bytes), gb(max)));
        }
        if let Some(max) = self.max_disk_bytes.filter(|&m| u.disk_bytes > m) {
            over.push(format!("disk {:.2} GB in use > {:.2} GB", gb(u.disk_bytes), gb(max)));
        }
        over
    }
}

/// A run's `resource_limits:`, validated. Every field is optional; the default limits nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunLimits {
    /// Tasks of the run running at once, over every worker.
    pub max_concurrent_tasks: Option<u32>,
    /// Tasks of the run running at once on any one instance, over every worker.
    pub max_tasks_per_instance: Option<u32>,
    /// Per instance name.
    pub models: BTreeMap<String, ModelLimits>,
    pub budget: Option<Budget>,
    pub quotas: Option<Quotas>,
}

impl RunLimits {
    /// Whether the run's tasks need a concurrency slot to start.
    pub fn caps_concurrency(&self) -> bool {
        self.max_concurrent_tasks.is_some() || self.max_tasks_per_instance.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_is_exact_in_nanos() {
        assert_eq!(usd_to_nanos(0.03), Some(30_000_000));
        assert_eq!(usd_to_nanos(5.0), Some(5_000_000_000));
        assert_eq!(usd_to_nanos(-1.0), None);
        assert_eq!(usd_to_nanos(f64::NAN), None);
        // $0.03 per 1k tokens: 1,500 tokens cost $0.045.
        let p = Price::flat(usd_to_nanos(0.03).unwrap());
        assert_eq!(p.cost(1000, 500), 45_000_000);
        // Rounded up: one token of a $0.001/1k model is one nano-dollar, not zero.
        assert_eq!(Price::flat(1_000_000).cost(1, 0), 1_000);
        assert_eq!(Price::flat(1).cost(1, 0), 1);
        assert_eq!(Price { input_per_1k: 3_000_000, output_per_1k: 15_000_000 }.cost(2000, 1000), 21_000_000);
        assert_eq!(format_usd(45_000_000), "$0.0450");
        assert_eq!(format_usd(5_000_000_000), "$5.00");
    }

    #[test]
    fn the_alert_is_a_share_of_the_budget() {
        let b = Budget { max_cost: 5_000_000_000, alert_ppm: 800_000 };
        assert_eq!(b.alert_at(), 4_000_000_000);
    }
}
