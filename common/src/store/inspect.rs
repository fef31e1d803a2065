//! What the inspection commands read: the runs of the namespace (newest first) and the
//! state of each instance's job streams (length, pending, oldest entry, consumers).

use std::collections::{BTreeSet, HashMap};

use super::read::parse_meta;
use super::{Conn, Store, StoreError};
use crate::model::{now_ms, Priority, RunMeta};

/// Runs read per round trip while listing.
const RUNS_PAGE: usize = 100;

/// Which runs a listing keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunFilter {
    All,
    Running,
    Finished,
}

impl RunFilter {
    fn keeps(self, m: &RunMeta) -> bool {
        match self {
            RunFilter::All => true,
            RunFilter::Running => !m.finished,
            RunFilter::Finished => m.finished,
        }
    }
}

/// One job stream of an instance (one priority) as its consumer group sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueStats {
    pub instance: String,
    pub priority: Priority,
    /// Entries in the stream: not yet read, or read and not yet acknowledged.
    pub length: u64,
    /// Read by a worker and not yet acknowledged (running, or held by a dead worker until
    /// its lease lapses).
    pub pending: u64,
    /// Not yet read by any worker (Redis ≥ 7; otherwise length − pending).
    pub waiting: u64,
    /// Age of the oldest entry, ms (none when the stream is empty).
    pub oldest_age_ms: Option<u64>,
    /// Consumers of the group (workers that read this stream since they were cleaned up).
    pub consumers: u64,
    /// The group exists (some run or worker used the instance).
    pub exists: bool,
}

impl Store {
    /// Namespaces of this Redis that hold runs (their `NS:runs` index), for telling a user
    /// who looked in an empty one where the runs are. Scans at most 100,000 keys.
    pub async fn namespaces_with_runs(&self, conn: &mut Conn) -> Result<Vec<String>, StoreError> {
        let mut found = std::collections::BTreeSet::new();
        let mut cursor: u64 = 0;
        for _ in 0..100 {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg("*:runs")
                .arg("COUNT")
                .arg(1000)
                .arg("TYPE")
                .arg("zset")
                .query_async(conn)
                .await?;
            found.extend(keys.into_iter().filter_map(|k| k.strip_suffix(":runs").map(str::to_string)));
            cursor = next;
            if cursor == 0 {
                break;
            }
        }
        Ok(found.into_iter().collect())
    }

    /// Up to `limit` runs still in Redis, newest first, that `filter` keeps. Runs whose keys
    /// expired (retention) are left out.
    pub async fn list_runs(&self, conn: &mut Conn, limit: usize, filter: RunFilter) -> Result<Vec<RunMeta>, StoreError> {
        let mut out = Vec::new();
        let mut start = 0usize;
        while out.len() < limit {
            let ids: Vec<String> =
                redis::cmd("ZREVRANGE").arg(self.keys.runs()).arg(start).arg(start + RUNS_PAGE - 1).query_async(conn).await?;
            if ids.is_empty() {
                break;
            }
            start += ids.len();
            let last_page = ids.len() < RUNS_PAGE;
            // One HGETALL per run in one pipeline: the runs live in different Cluster slots.
            let mut p = redis::pipe();
            for id in &ids {
                p.hgetall(self.keys.run(id, "meta"));
            }
            let metas: Vec<HashMap<String, String>> = p.query_async(conn).await?;
            for (id, h) in ids.iter().zip(metas) {
                if h.is_empty() {
                    continue;
                }
                let m = parse_meta(id, &h);
                if filter.keeps(&m) && out.len() < limit {
                    out.push(m);
                }
            }
            if last_page {
                break;
            }
        }
        Ok(out)
    }

    /// Instances that have job streams in this namespace (found by SCAN), besides `known`.
    pub async fn queued_instances(&self, conn: &mut Conn, known: &[String]) -> Result<Vec<String>, StoreError> {
        let mut names: BTreeSet<String> = known.iter().cloned().collect();
        let prefix = format!("{}:jobs:{{", self.keys.namespace());
        let mut cursor: u64 = 0;
        loop {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(format!("{prefix}*"))
                .arg("COUNT")
                .arg(1000)
                .arg("TYPE")
                .arg("stream")
                .query_async(conn)
                .await?;
            for k in keys {
                if let Some(name) = k.strip_prefix(&prefix).and_then(|rest| rest.split_once('}')).map(|(n, _)| n) {
                    names.insert(name.to_string());
                }
            }
            if next == 0 {
                break;
            }
            cursor = next;
        }
        Ok(names.into_iter().collect())
    }

    /// The three priority streams of an instance, highest first.
    pub async fn queue_stats(&self, conn: &mut Conn, instance: &str) -> Result<Vec<QueueStats>, StoreError> {
        let group = self.keys.group();
        let mut out = Vec::new();
        for p in Priority::ALL {
            let stream = self.keys.jobs_for(instance, p);
            let (length, first): (u64, Vec<redis::Value>) =
                redis::pipe().xlen(&stream).cmd("XRANGE").arg(&stream).arg("-").arg("+").arg("COUNT").arg(1).query_async(conn).await?;
            let groups: redis::RedisResult<Vec<HashMap<String, redis::Value>>> =
                redis::cmd("XINFO").arg("GROUPS").arg(&stream).query_async(conn).await;
            let ours = match groups {
                Ok(g) => g
                    .into_iter()
                    .find(|g| g.get("name").and_then(|v| redis::from_redis_value::<String>(v.clone()).ok()) == Some(group.clone())),
                // No such stream: nothing queued, no group.
                Err(e) if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::ResponseError) => None,
                Err(e) => return Err(e.into()),
            };
            let num = |k: &str| {
                ours.as_ref().and_then(|g| g.get(k)).and_then(|v| redis::from_redis_value::<Option<u64>>(v.clone()).ok()).flatten()
            };
            let pending = num("pending").unwrap_or(0);
            let oldest_ms = first.first().and_then(entry_ms);
            out.push(QueueStats {
                instance: instance.to_string(),
                priority: p,
                length,
                pending,
                waiting: num("lag").unwrap_or(length.saturating_sub(pending)),
                oldest_age_ms: oldest_ms.map(|ms| now_ms().saturating_sub(ms)),
                consumers: num("consumers").unwrap_or(0),
                exists: ours.is_some(),
            });
        }
        Ok(out)
    }
}

/// The time part (ms) of the id of an entry as XRANGE returns it (`[id, fields]`).
fn entry_ms(entry: &redis::Value) -> Option<u64> {
    let redis::Value::Array(parts) = entry else { return None };
    let id: String = redis::from_redis_value(parts.first()?.clone()).ok()?;
    id.split('-').next()?.parse().ok()
}
