//! Waiting that listens for shutdown: a sleep that ends early when told, and the backoff
//! every Redis retry loop uses. A leaf: imports nothing of the worker.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// Backoff for retrying Redis: 0.5 s doubling to 30 s.
pub fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(500u64.saturating_mul(1 << attempt.min(6))).min(Duration::from_secs(30))
}

/// Sleeps, returning true if shutdown fired first.
pub async fn sleep_or_shutdown(d: Duration, shutdown: &CancellationToken) -> bool {
    tokio::select! {
        _ = shutdown.cancelled() => true,
        _ = tokio::time::sleep(d) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_a_cap() {
        assert_eq!(backoff(0), Duration::from_millis(500));
        assert_eq!(backoff(1), Duration::from_secs(1));
        assert_eq!(backoff(20), Duration::from_secs(30));
    }
}
