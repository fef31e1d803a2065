//! Rate limiters shared by every worker: requests and tokens per minute and the backoff after
//! a rate-limit answer, per instance (or `rate_group`) of the catalog and per model of a run's
//! `resource_limits`. Each limiter's keys carry its own hash tag (`NS:limit:{NAME}`), so
//! admission is one atomic step beside the run's scripts, Cluster-safe; a worker that dies
//! between admission and marking leaks nothing (a reservation is only a place in the order).

use std::time::Duration;

use super::{scripts, Conn, Store, StoreError};
use crate::model::{now_ms, RateLimit};

/// How long an idle limiter's state lives.
const LIMITER_TTL_S: u64 = 24 * 3600;

/// One limiter: its name (an instance, a `rate_group`, or `run:RUN:INSTANCE`) and its limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limiter {
    pub name: String,
    pub rate: RateLimit,
}

impl Limiter {
    /// The limiter of one instance for one run (`resource_limits.models`).
    pub fn for_run(run_id: &str, instance: &str, rate: RateLimit) -> Self {
        Limiter { name: format!("run:{run_id}:{instance}"), rate }
    }
}

impl Store {
    /// Whether a task (`job`: run, index, attempt) may start now: `Duration::ZERO`, or how long
    /// to wait before asking again (after a reservation's wait the start is ours).
    pub async fn admit(&self, conn: &mut Conn, lim: &Limiter, job: &str) -> Result<Duration, StoreError> {
        let (hash, resv) = self.keys.limiter(&lim.name);
        let wait: i64 = scripts::ADMIT
            .key(hash)
            .key(resv)
            .arg(now_ms())
            .arg(job)
            .arg(lim.rate.rpm.unwrap_or(0))
            .arg(lim.rate.tpm.unwrap_or(0))
            .arg(LIMITER_TTL_S)
            .invoke_async(conn)
            .await?;
        Ok(Duration::from_millis(wait.max(0) as u64))
    }

    /// When the limiter's backoff after a rate-limit answer ends (Unix ms), if it has one.
    pub async fn backoff_until(&self, conn: &mut Conn, name: &str) -> Result<Option<u64>, StoreError> {
        let (hash, _) = self.keys.limiter(name);
        let until: Option<u64> = redis::cmd("HGET").arg(hash).arg("backoff_until").query_async(conn).await?;
        Ok(until.filter(|&u| u > now_ms()))
    }

    /// After a task: its tokens leave the limiter's bucket; a rate-limit answer backs every
    /// worker off (for `retry_after` when the agent said). Returns the backoff's end (Unix ms).
    pub async fn debit(
        &self,
        conn: &mut Conn,
        lim: &Limiter,
        tokens: u64,
        rate_limited: bool,
        retry_after: Option<Duration>,
    ) -> Result<Option<u64>, StoreError> {
        let (hash, _) = self.keys.limiter(&lim.name);
        let until: u64 = scripts::DEBIT
            .key(hash)
            .arg(now_ms())
            .arg(tokens)
            .arg(lim.rate.tpm.unwrap_or(0))
            .arg(u8::from(rate_limited))
            .arg(retry_after.map_or(0, |d| d.as_millis() as u64))
            .arg(LIMITER_TTL_S)
            .invoke_async(conn)
            .await?;
        Ok(Some(until).filter(|&u| u > 0))
    }
}
