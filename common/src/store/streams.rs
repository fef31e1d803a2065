//! The job streams and their consumer group: creating the group, reading new jobs (highest
//! priority first), reclaiming jobs whose lease lapsed, keeping held entries fresh.

use std::time::Duration;

use redis::streams::StreamReadOptions;

use super::entry::{entries_of, entry_of, items, text, Delivery};
use super::{Conn, Store, StoreError};
use crate::model::Priority;

/// How long a read waits for a job when every stream is empty.
const READ_BLOCK: Duration = Duration::from_secs(2);

impl Store {
    /// Creates the consumer group of an instance's streams (and the streams) if missing.
    pub async fn ensure_group(&self, conn: &mut Conn, instance: &str) -> Result<(), StoreError> {
        for p in Priority::ALL {
            let res: redis::RedisResult<()> = redis::cmd("XGROUP")
                .arg("CREATE")
                .arg(self.keys.jobs_for(instance, p))
                .arg(self.keys.group())
                .arg("0")
                .arg("MKSTREAM")
                .query_async(conn)
                .await;
            match res {
                Ok(()) => {}
                Err(e) if e.code() == Some("BUSYGROUP") => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// Up to `want` new jobs of an instance for `consumer`: high priority first, then medium,
    /// then low; when all three are empty, waits up to two seconds on all three at once (one
    /// slot: they share a hash tag) and may return one entry per stream. A caller that drops
    /// this future mid-flight must [`Conn::detach`] the connection and drop it.
    pub async fn read_jobs(&self, conn: &mut Conn, instance: &str, consumer: &str, want: usize) -> Result<Vec<Delivery>, StoreError> {
        let streams = self.keys.job_streams(instance);
        let group = self.keys.group();
        let mut got: Vec<Delivery> = Vec::new();
        for s in &streams {
            let left = want.saturating_sub(got.len());
            if left == 0 {
                break;
            }
            let opts = StreamReadOptions::default().group(&group, consumer).count(left);
            let mut cmd = redis::cmd("XREADGROUP");
            cmd.arg(&opts).arg("STREAMS").arg(s).arg(">");
            got.extend(entries_of(cmd.query_async::<redis::Value>(conn).await?));
        }
        if got.is_empty() {
            let opts = StreamReadOptions::default().group(&group, consumer).count(1).block(READ_BLOCK.as_millis() as usize);
            let mut cmd = redis::cmd("XREADGROUP");
            cmd.arg(&opts).arg("STREAMS").arg(&streams).arg(vec![">"; streams.len()]);
            got.extend(entries_of(cmd.query_async::<redis::Value>(conn).await?));
        }
        Ok(got)
    }

    /// Claims for `consumer` up to `count` entries of `stream` idle for at least `min_idle`
    /// (their holder stopped renewing). Entries deleted meanwhile are acknowledged away.
    pub async fn reclaim(
        &self,
        conn: &mut Conn,
        stream: &str,
        consumer: &str,
        min_idle: Duration,
        count: usize,
    ) -> Result<Vec<Delivery>, StoreError> {
        let group = self.keys.group();
        let reply: Vec<redis::Value> = redis::cmd("XAUTOCLAIM")
            .arg(stream)
            .arg(&group)
            .arg(consumer)
            .arg(min_idle.as_millis() as u64)
            .arg("0-0")
            .arg("COUNT")
            .arg(count.max(1))
            .query_async(conn)
            .await?;
        let claimed: Vec<Delivery> = reply.get(1).map(items).unwrap_or_default().iter().filter_map(|v| entry_of(stream, v)).collect();
        let deleted: Vec<String> = reply.get(2).map(items).unwrap_or_default().iter().filter_map(text).collect();
        if !deleted.is_empty() {
            let _: i64 = redis::cmd("XACK").arg(stream).arg(&group).arg(&deleted).query_async(conn).await?;
        }
        Ok(claimed)
    }

    /// Resets the idle time of entries `consumer` holds, so reclaimers leave them alone.
    pub async fn keep_claimed(&self, conn: &mut Conn, stream: &str, consumer: &str, ids: &[String]) -> Result<(), StoreError> {
        let _: redis::Value =
            redis::cmd("XCLAIM").arg(stream).arg(self.keys.group()).arg(consumer).arg(0).arg(ids).arg("JUSTID").query_async(conn).await?;
        Ok(())
    }
}
