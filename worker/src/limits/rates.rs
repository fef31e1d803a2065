//! Rate limits around one task: before it starts, every limiter that applies admits it (the
//! instance's — or its `rate_group`'s — from this worker's catalog, for every run; the run's
//! own for the instance, from `resource_limits.models`), the task waiting its turn here for
//! a short wait or handed back to its run for a long one; after it ends, its tokens are
//! debited and a rate-limit answer backs every worker off that limiter.

use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};
use zo_common::model::{now_ms, ErrorClass, Outcome};
use zo_common::store::{Job, Limiter, Store};

use crate::batch::Batcher;

/// Longest wait for a limiter a task spends holding its worker slot; a longer one hands the
/// task back to its run, due when its turn comes.
pub(crate) const WAIT_IN_WORKER: Duration = Duration::from_secs(2);

/// Most time one task waits after rate-limit answers before the answer counts as a failed
/// attempt (its retry policy for `rate_limit` decides then).
pub(crate) const MAX_RATE_LIMIT_WAIT: Duration = Duration::from_secs(600);

/// The limiters a job of `instance` must be admitted by: the instance's when the catalog
/// limits it, the run's when its file does. Usually none (no round trip then).
pub(crate) fn limiters(own: &Limiter, job: &Job, instance: &str) -> Vec<Limiter> {
    let mut out = Vec::new();
    if !own.rate.is_none() {
        out.push(own.clone());
    }
    if let Some(rate) = job.spec.rate {
        out.push(Limiter::for_run(&job.run_id, instance, rate));
    }
    out
}

/// How admission ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admission {
    /// Start now; `waited` here for the limiters.
    Go { waited: Duration },
    /// Wait this long more (hand the task back to its run until then).
    Later(Duration),
    /// The task was told to stop while it waited.
    Stopped,
}

/// Waits out a backoff this worker knows of for the instance (`backoff_until`, Unix ms) and
/// the limiters whose first answer asked for a wait (`bound`: each with that wait), here while
/// a wait is short, asking again after each (a reservation is then ours).
pub(crate) async fn wait_out(
    batch: &Batcher,
    backoff_until: Option<u64>,
    bound: &[(Limiter, Duration)],
    job_key: &str,
    stop: &CancellationToken,
) -> Admission {
    let mut waited = Duration::ZERO;
    if let Some(until) = backoff_until {
        let wait = Duration::from_millis(until.saturating_sub(now_ms()));
        if wait > WAIT_IN_WORKER {
            return Admission::Later(wait);
        }
        if !wait.is_zero() {
            tokio::select! {
                _ = tokio::time::sleep(wait) => waited += wait,
                _ = stop.cancelled() => return Admission::Stopped,
            }
        }
    }
    for (lim, first) in bound {
        let mut wait = *first;
        while !wait.is_zero() {
            if wait > WAIT_IN_WORKER {
                return Admission::Later(wait);
            }
            debug!(limiter = %lim.name, "waiting {} ms for the rate limit", wait.as_millis());
            tokio::select! {
                _ = tokio::time::sleep(wait) => waited += wait,
                _ = stop.cancelled() => return Admission::Stopped,
            }
            wait = match batch.admit(lim, job_key.to_string()).await {
                Ok(w) => w,
                Err(e) => {
                    warn!(limiter = %lim.name, "rate limiter unavailable ({e}); starting without it");
                    Duration::ZERO
                }
            };
        }
    }
    Admission::Go { waited }
}

/// After the task: tokens debited, a rate-limit answer reported to every limiter. The end of
/// the longest backoff that answer started (Unix ms).
/// `own` is the instance's limiter, told about rate-limit answers even when it limits nothing.
pub(crate) async fn after(store: &Store, limiters: &[Limiter], own: &Limiter, outcome: &Outcome) -> Option<u64> {
    let tokens = outcome.agent.as_ref().map_or(0, |a| a.input_tokens + a.output_tokens + a.cache_read_tokens + a.cache_creation_tokens);
    let limited = outcome.error_class == Some(ErrorClass::RateLimit);
    let retry_after = if limited { retry_after(outcome) } else { None };
    let mut told: Vec<&Limiter> = limiters.iter().filter(|l| l.rate.tpm.is_some() || limited).collect();
    if limited && !told.iter().any(|l| l.name == own.name) {
        told.push(own);
    }
    if told.is_empty() {
        return None;
    }
    let mut until = None;
    let Ok(mut c) = store.conn().await else { return None };
    for lim in told {
        match store.debit(&mut c, lim, tokens, limited, retry_after).await {
            Ok(u) => until = until.max(u),
            Err(e) => warn!(limiter = %lim.name, "could not debit the rate limiter: {e}"),
        }
    }
    until
}

/// A retry-after the agent reported in its answer or error ("retry after 20 seconds",
/// "Retry-After: 20", "try again in 1.5s"), at most 10 minutes.
pub(crate) fn retry_after(o: &Outcome) -> Option<Duration> {
    let text = format!("{} {}", o.error.as_deref().unwrap_or(""), o.output).to_ascii_lowercase();
    for marker in ["retry-after:", "retry after", "try again in", "retry in"] {
        let Some(at) = text.find(marker) else { continue };
        let rest = text[at + marker.len()..].trim_start();
        let num: String = rest.chars().take_while(|c| c.is_ascii_digit() || *c == '.').collect();
        let Ok(n) = num.parse::<f64>() else { continue };
        let unit = rest[num.len()..].trim_start();
        let ms = if unit.starts_with("ms") || unit.starts_with("millisecond") {
            n
        } else if unit.starts_with('m') && !unit.starts_with("ms") {
            n * 60_000.0
        } else {
            n * 1000.0
        };
        if ms.is_finite() && ms > 0.0 {
            return Some(Duration::from_millis(ms as u64).min(Duration::from_secs(600)));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn said(text: &str) -> Option<Duration> {
        retry_after(&Outcome::fail(ErrorClass::RateLimit, text.to_string()))
    }

    #[test]
    fn retry_after_is_read_from_the_answer() {
        assert_eq!(said("429 Too Many Requests; Retry-After: 20"), Some(Duration::from_secs(20)));
        assert_eq!(said("rate limit reached, please try again in 1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(said("Rate limited. Retry after 2 minutes"), Some(Duration::from_secs(120)));
        assert_eq!(said("retry in 250ms"), Some(Duration::from_millis(250)));
        assert_eq!(said("rate limit exceeded"), None);
        assert_eq!(said("retry after 99999 seconds"), Some(Duration::from_secs(600)));
    }
}
