//! Workers as Redis sees them: a heartbeat (`NS:worker:ID`, JSON, expiring, plus the
//! `NS:workers` index by time), the live ones with the protocol they speak, and cleanup of
//! consumers left behind by workers that are gone.

use std::collections::HashMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{Conn, Store, StoreError, PROTOCOL};
use crate::model::now_ms;

/// How often a worker renews its heartbeat.
pub const HEARTBEAT_EVERY: Duration = Duration::from_secs(5);
/// How long a heartbeat stays without being renewed: three beats.
pub const HEARTBEAT_TTL: Duration = Duration::from_secs(15);
/// A worker counts as live while its last heartbeat is this recent (its heartbeat's TTL).
pub const LIVE_WITHIN: Duration = HEARTBEAT_TTL;

/// What a worker announces in its heartbeat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerInfo {
    pub id: String,
    pub pid: u32,
    pub instances: Vec<String>,
    pub executor: String,
    pub started_ms: u64,
    /// The [`PROTOCOL`] it speaks; workers from before it was announced spoke 1.
    #[serde(default = "first_protocol")]
    pub protocol: u32,
    /// The machine it runs on (empty from workers that did not announce it).
    #[serde(default)]
    pub host: String,
    /// Its `--version` (package version and git commit).
    #[serde(default)]
    pub version: String,
    /// Jobs it holds now, by instance (as of its last heartbeat).
    #[serde(default)]
    pub in_flight: std::collections::BTreeMap<String, u32>,
}

fn first_protocol() -> u32 {
    1
}

/// A worker with a recent heartbeat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveWorker {
    pub info: WorkerInfo,
    pub last_seen_ms: u64,
}

impl LiveWorker {
    /// True when it speaks the protocol of this build.
    pub fn compatible(&self) -> bool {
        self.info.protocol == PROTOCOL
    }
}

impl Store {
    /// Announces (or renews) a worker.
    pub async fn heartbeat(&self, conn: &mut Conn, info: &WorkerInfo) -> Result<(), StoreError> {
        let json = serde_json::to_string(info).expect("worker info serializes");
        redis::pipe()
            .set_ex(self.keys.worker(&info.id), json, HEARTBEAT_TTL.as_secs())
            .ignore()
            .zadd(self.keys.workers(), &info.id, now_ms())
            .ignore()
            .query_async::<()>(conn)
            .await?;
        Ok(())
    }

    /// Removes a worker's heartbeat (it is stopping).
    pub async fn remove_worker(&self, conn: &mut Conn, id: &str) -> Result<(), StoreError> {
        redis::pipe().del(self.keys.worker(id)).ignore().zrem(self.keys.workers(), id).ignore().query_async::<()>(conn).await?;
        Ok(())
    }

    /// Workers whose heartbeat is younger than `within`. One GET per worker in one pipeline
    /// (not an MGET: the keys may live in different Cluster slots).
    pub async fn live_workers(&self, conn: &mut Conn, within: Duration) -> Result<Vec<LiveWorker>, StoreError> {
        let since = now_ms().saturating_sub(within.as_millis() as u64);
        let ids: Vec<(String, u64)> =
            redis::cmd("ZRANGEBYSCORE").arg(self.keys.workers()).arg(since).arg("+inf").arg("WITHSCORES").query_async(conn).await?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut p = redis::pipe();
        for (id, _) in &ids {
            p.get(self.keys.worker(id));
        }
        let infos: Vec<Option<String>> = p.query_async(conn).await?;
        Ok(ids
            .into_iter()
            .zip(infos)
            .filter_map(|((_, seen), info)| {
                let info: WorkerInfo = serde_json::from_str(&info?).ok()?;
                Some(LiveWorker { info, last_seen_ms: seen })
            })
            .collect())
    }

    /// Removes consumers of a stream's group that hold no pending entries, have been idle
    /// longer than `idle`, and belong to no worker with a recent heartbeat.
    pub async fn remove_dead_consumers(&self, conn: &mut Conn, stream: &str, idle: Duration) -> Result<u32, StoreError> {
        let keys = &self.keys;
        let live: Vec<String> =
            redis::cmd("ZRANGEBYSCORE").arg(keys.workers()).arg(now_ms().saturating_sub(60_000)).arg("+inf").query_async(conn).await?;
        let info: Vec<HashMap<String, redis::Value>> =
            redis::cmd("XINFO").arg("CONSUMERS").arg(stream).arg(keys.group()).query_async(conn).await?;
        let mut removed = 0;
        for c in info {
            let name: String = c.get("name").and_then(|v| redis::from_redis_value(v.clone()).ok()).unwrap_or_default();
            let pending: u64 = c.get("pending").and_then(|v| redis::from_redis_value(v.clone()).ok()).unwrap_or(1);
            let idle_ms: u64 = c.get("idle").and_then(|v| redis::from_redis_value(v.clone()).ok()).unwrap_or(0);
            if pending == 0 && idle_ms > idle.as_millis() as u64 && !live.contains(&name) && !name.is_empty() {
                let _: i64 = redis::cmd("XGROUP").arg("DELCONSUMER").arg(stream).arg(keys.group()).arg(&name).query_async(conn).await?;
                removed += 1;
            }
        }
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_heartbeat_without_a_protocol_is_protocol_one() {
        let old = r#"{"id":"w","pid":1,"instances":["fast"],"executor":"simulate","started_ms":0}"#;
        let info: WorkerInfo = serde_json::from_str(old).unwrap();
        assert_eq!(info.protocol, 1);
        let live = LiveWorker { info, last_seen_ms: 0 };
        assert!(!live.compatible());
    }
}
