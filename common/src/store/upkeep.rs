//! Keeping runs moving and the index tidy: due retries and outboxes of every unfinished run
//! (workers and watchers call it every second or so), finished runs out of the active set,
//! expired runs out of the run index; the claim of archiving a finished run.

use std::time::Duration;

use super::{scripts, Conn, Store, StoreError};
use crate::model::now_ms;

impl Store {
    /// Finishes skip cascades, promotes due retries and flushes outboxes of unfinished runs;
    /// forgets finished or expired runs.
    pub async fn maintain_active(&self, conn: &mut Conn) -> Result<(), StoreError> {
        let keys = &self.keys;
        let runs: Vec<String> = redis::cmd("SMEMBERS").arg(keys.active()).query_async(conn).await?;
        for run in runs {
            let status: Option<String> = redis::cmd("HGET").arg(keys.run(&run, "meta")).arg("status").query_async(conn).await?;
            match status.as_deref() {
                Some("running") => self.keep_run_moving(conn, &run).await?,
                _ => {
                    let _: i64 = redis::cmd("SREM").arg(keys.active()).arg(&run).query_async(conn).await?;
                }
            }
        }
        Ok(())
    }

    /// One round of a run's upkeep, whoever does it (every worker for every active run, a
    /// watcher for the run it follows): skip cascades left unfinished, due retries into the
    /// outbox, the outbox into the streams.
    pub async fn keep_run_moving(&self, conn: &mut Conn, run_id: &str) -> Result<(), StoreError> {
        self.finish_cascade(conn, run_id).await?;
        self.promote_due(conn, run_id).await?;
        self.flush_outbox(conn, run_id).await?;
        Ok(())
    }

    /// Removes runs older than their retention from the run index (their keys expire on
    /// their own).
    pub async fn prune_run_index(&self, conn: &mut Conn, retention: Duration) -> Result<(), StoreError> {
        let cutoff = now_ms().saturating_sub(retention.as_millis() as u64);
        let _: i64 = redis::cmd("ZREMRANGEBYSCORE").arg(self.keys.runs()).arg("-inf").arg(cutoff).query_async(conn).await?;
        Ok(())
    }

    /// Claims the archiving of a finished run for `who`, for a minute (`ARCHIVE_CLAIM`):
    /// false when the run is not finished, or another process holds the claim or archived
    /// it already. Whoever sees the run finish first archives it; a claimer that dies lets
    /// the claim lapse for the next one.
    pub async fn claim_archive(&self, conn: &mut Conn, run_id: &str, who: &str) -> Result<bool, StoreError> {
        let got: i64 = scripts::ARCHIVE_CLAIM
            .key(self.keys.run(run_id, "archive"))
            .key(self.keys.run(run_id, "meta"))
            .arg(who)
            .invoke_async(conn)
            .await?;
        Ok(got == 1)
    }

    /// Records that the run is archived at `path`, for as long as the run's own keys live,
    /// if `who` still holds the claim (`ARCHIVE_DONE`): false when the run was reopened
    /// meanwhile — it is archived again, with its new outcome, when it finishes again.
    pub async fn archive_done(&self, conn: &mut Conn, run_id: &str, who: &str, path: &str) -> Result<bool, StoreError> {
        let got: i64 = scripts::ARCHIVE_DONE
            .key(self.keys.run(run_id, "archive"))
            .key(self.keys.run(run_id, "meta"))
            .arg(who)
            .arg(path)
            .arg(super::DEFAULT_RETENTION.as_millis() as u64)
            .invoke_async(conn)
            .await?;
        Ok(got == 1)
    }

    /// Every run id of the namespace's index (runs still in Redis and a little longer).
    pub async fn run_ids(&self, conn: &mut Conn) -> Result<Vec<String>, StoreError> {
        Ok(redis::cmd("ZRANGE").arg(self.keys.runs()).arg(0).arg(-1).query_async(conn).await?)
    }

    /// Where each of `runs` stands for the archive, in order (one pipelined round trip per
    /// hundred runs: they live in different Cluster slots).
    pub async fn archive_states(&self, conn: &mut Conn, runs: &[String]) -> Result<Vec<ArchiveState>, StoreError> {
        let mut out = Vec::with_capacity(runs.len());
        for page in runs.chunks(100) {
            let mut p = redis::pipe();
            for id in page {
                p.hget(self.keys.run(id, "meta"), "status").get(self.keys.run(id, "archive"));
            }
            let got: Vec<Option<String>> = p.query_async(conn).await?;
            for pair in got.chunks(2) {
                out.push(ArchiveState::of(pair[0].as_deref(), pair[1].as_deref()));
            }
        }
        Ok(out)
    }
}

/// Where a run stands for the archive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArchiveState {
    /// Its keys are gone (expired or deleted): nothing to archive any more.
    Gone,
    /// Not finished yet.
    Running,
    /// Finished, and nobody has claimed its archiving.
    Unarchived,
    /// Finished; a process is archiving it (its claim lapses if it dies).
    Claimed,
    /// Finished and archived.
    Archived,
}

impl ArchiveState {
    fn of(status: Option<&str>, archive: Option<&str>) -> Self {
        match (status, archive) {
            (None, _) => ArchiveState::Gone,
            (_, Some(a)) if a.starts_with("done|") => ArchiveState::Archived,
            (Some("finished"), Some(_)) => ArchiveState::Claimed,
            (Some("finished"), None) => ArchiveState::Unarchived,
            _ => ArchiveState::Running,
        }
    }
}
