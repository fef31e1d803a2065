//! The shared vocabulary and data of Zo Worker Swarm, free of I/O: what a task is
//! ([`TaskSpec`]), how it is retried and prioritised, the states it moves through
//! ([`TaskState`], [`Status`]), why it failed ([`ErrorClass`]), what a worker records
//! ([`TaskResult`]) and what a run looks like when read back ([`RunSnapshot`]).
//!
//! Depends on nothing else in the crate: every other module builds on it.

mod counts;
mod expect;
mod limits;
mod result;
mod run;
mod spec;
mod vocab;

pub use counts::Counts;
pub use expect::Expect;
pub use limits::{
    below_a_nano, format_dollars, format_usd, nanos_to_usd, too_small, usd_to_nanos, Budget, HostUsage, ModelLimits, Nanos, Price, Quotas,
    RateLimit, RunLimits, DEFAULT_QUOTA_WAIT,
};
pub use result::{AgentOutcome, CommandOutcome, Outcome, TaskResult};
pub use run::{RunMeta, RunSnapshot, Skip, StageState, StageStatus, StopReason, TaskSample};
pub use spec::{Input, TaskSpec, DEFAULT_TIMEOUT_MS, DEPS_FIELD};
pub use vocab::{Backoff, Condition, ErrorClass, ParentOutcome, Priority, RetryPolicy, Simulate, Status, TaskState, TriggerRule, When};

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// RFC 3339 UTC timestamp of a Unix-milliseconds instant, always with milliseconds
/// (`2026-12-03T08:43:44.380Z`: one width, so times line up and sort as text).
pub fn rfc3339(ms: u64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000).unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    )
}

/// The Unix-milliseconds instant of an RFC 3339 timestamp (as [`rfc3339`] writes them).
pub fn parse_rfc3339(s: &str) -> Option<u64> {
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()?;
    u64::try_from(t.unix_timestamp_nanos() / 1_000_000).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_keep_their_milliseconds_and_round_trip() {
        for (ms, text) in [
            (0, "1970-01-01T00:00:00.000Z"),
            (1_796_287_424_380, "2026-12-03T08:43:44.380Z"),
            (1_796_287_424_000, "2026-12-03T08:43:44.000Z"),
            (1_796_287_424_007, "2026-12-03T08:43:44.007Z"),
        ] {
            assert_eq!(rfc3339(ms), text);
            assert_eq!(parse_rfc3339(text), Some(ms));
        }
    }
}
