//! Dead letters (`NS:dead`, a capped stream): entries that could not be handled (malformed,
//! unknown run) and tasks that ended for good after their retries or as poison. Written by
//! workers, listed and deleted by `zo-submit dead`.

use super::entry::Delivery;
use super::{Conn, Job, Store, StoreError};
use crate::model::{now_ms, TaskResult};

/// One dead-lettered entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    pub id: String,
    pub reason: String,
    /// Run and task index, when the entry names a task of a run.
    pub task: Option<(String, u32)>,
    pub task_name: String,
    /// Its instance, attempt and error class (tasks only).
    pub instance: String,
    pub attempt: Option<u32>,
    pub error_class: String,
    /// The worker that dead-lettered it.
    pub worker: String,
    /// When (Unix ms).
    pub at_ms: u64,
    pub fields: Vec<(String, String)>,
}

impl Store {
    /// The start of an XADD to the dead letters: capped stream, reason, worker, time.
    fn dead_cmd(&self, worker: &str, reason: &str) -> redis::Cmd {
        let mut cmd = redis::cmd("XADD");
        cmd.arg(self.keys.dead())
            .arg("MAXLEN")
            .arg("~")
            .arg(10_000)
            .arg("*")
            .arg("reason")
            .arg(reason)
            .arg("worker")
            .arg(worker)
            .arg("at_ms")
            .arg(now_ms());
        cmd
    }

    /// Keeps a copy of an entry that cannot be handled (its fields cut to a sane size), so
    /// that it may leave its stream.
    pub async fn dead_letter_entry(&self, conn: &mut Conn, worker: &str, d: &Delivery, reason: &str) -> Result<(), StoreError> {
        let mut cmd = self.dead_cmd(worker, reason);
        cmd.arg("stream").arg(&d.stream).arg("entry").arg(&d.id);
        for (k, v) in d.fields.iter().take(32) {
            let shown = &v[..v.len().min(4096)];
            cmd.arg(format!("field:{}", k.chars().take(64).collect::<String>())).arg(shown);
        }
        let _: String = cmd.query_async(conn).await?;
        Ok(())
    }

    /// Records a task that ended for good (retries exhausted, poison), so that `zo-submit
    /// dead` shows it and `zo-submit dead retry` can run it again.
    pub async fn dead_letter_task(
        &self,
        conn: &mut Conn,
        worker: &str,
        job: &Job,
        result: &TaskResult,
        reason: &str,
    ) -> Result<(), StoreError> {
        let mut cmd = self.dead_cmd(worker, reason);
        cmd.arg("run")
            .arg(&job.run_id)
            .arg("idx")
            .arg(job.idx)
            .arg("task")
            .arg(&job.spec.name)
            .arg("instance")
            .arg(&job.spec.instance)
            .arg("attempt")
            .arg(result.attempt)
            .arg("error_class")
            .arg(result.outcome.error_class.map(|c| c.as_str()).unwrap_or(""));
        let _: String = cmd.query_async(conn).await?;
        Ok(())
    }

    /// The dead letters, oldest first.
    pub async fn dead_letters(&self, conn: &mut Conn) -> Result<Vec<DeadLetter>, StoreError> {
        let reply: redis::streams::StreamRangeReply =
            redis::cmd("XRANGE").arg(self.keys.dead()).arg("-").arg("+").query_async(conn).await?;
        Ok(reply
            .ids
            .into_iter()
            .map(|e| {
                let text = |k: &str| {
                    e.map
                        .get(k)
                        .and_then(|v| redis::from_redis_value::<Vec<u8>>(v.clone()).ok())
                        .map(|b| String::from_utf8_lossy(&b).into_owned())
                };
                let task = match (text("run"), text("idx").and_then(|i| i.parse().ok())) {
                    (Some(r), Some(i)) => Some((r, i)),
                    _ => None,
                };
                let mut fields: Vec<(String, String)> = e
                    .map
                    .iter()
                    .map(|(k, v)| {
                        (
                            k.clone(),
                            redis::from_redis_value::<Vec<u8>>(v.clone())
                                .map(|b| String::from_utf8_lossy(&b).chars().take(200).collect())
                                .unwrap_or_default(),
                        )
                    })
                    .collect();
                fields.sort();
                let id_ms = e.id.split('-').next().and_then(|t| t.parse().ok()).unwrap_or(0);
                DeadLetter {
                    reason: text("reason").unwrap_or_default(),
                    task_name: text("task").unwrap_or_default(),
                    instance: text("instance").unwrap_or_default(),
                    attempt: text("attempt").and_then(|a| a.parse().ok()),
                    error_class: text("error_class").unwrap_or_default(),
                    worker: text("worker").unwrap_or_default(),
                    at_ms: text("at_ms").and_then(|t| t.parse().ok()).unwrap_or(id_ms),
                    task,
                    id: e.id,
                    fields,
                }
            })
            .collect())
    }

    /// Removes one dead letter.
    pub async fn delete_dead_letter(&self, conn: &mut Conn, id: &str) -> Result<(), StoreError> {
        self.delete_dead_letters(conn, &[id]).await.map(|_| ())
    }

    /// Removes dead letters; how many there were.
    pub async fn delete_dead_letters(&self, conn: &mut Conn, ids: &[&str]) -> Result<u64, StoreError> {
        let mut removed = 0;
        for chunk in ids.chunks(1000) {
            let n: u64 = redis::cmd("XDEL").arg(self.keys.dead()).arg(chunk).query_async(conn).await?;
            removed += n;
        }
        Ok(removed)
    }
}
