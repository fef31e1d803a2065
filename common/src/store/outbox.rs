//! Moving released jobs from a run's outbox into the instance streams, under the run's flush
//! lock. An entry leaves the outbox only after its XADD: a crash duplicates a job (which the
//! running-guard drops) but never loses one.

use std::collections::HashMap;

use redis::aio::ConnectionLike;

use super::conn::send_while_building;
use super::keys::Keys;
use super::{entry, scripts, Conn, Store, StoreError};
use crate::model::TaskSpec;

impl Store {
    /// Moves the run's outbox into the instance streams. Safe to run concurrently and to repeat:
    /// an entry leaves the outbox only after its XADD, so a crash can duplicate a job (which the
    /// running-guard drops) but never lose one. One flusher at a time per run (a short-lived
    /// `flushing` key) keeps concurrent flushers from enqueueing the same entries twice; the
    /// holder flushes until the outbox is empty, and looks again after letting go, so an entry
    /// pushed while someone else held the key is never left behind. Returns how many jobs were
    /// enqueued.
    pub async fn flush_outbox(&self, conn: &mut Conn, run_id: &str) -> Result<usize, StoreError> {
        flush_outbox_with(conn, &self.keys, run_id, None).await
    }

    /// [`Store::flush_outbox`], taking specs from `local` instead of reading them back from Redis.
    pub async fn flush_outbox_with(&self, conn: &mut Conn, run_id: &str, local: Option<LocalSpecs<'_>>) -> Result<usize, StoreError> {
        flush_outbox_with(conn, &self.keys, run_id, local).await
    }
}

/// The run's specs as the producer holds them (index = task index), and the encoded specs of
/// its roots as [`create_run`] returned them (sorted by index).
#[derive(Clone, Copy)]
pub struct LocalSpecs<'a> {
    pub specs: &'a [TaskSpec],
    pub blobs: &'a [(u32, Vec<u8>)],
}

impl<'a> LocalSpecs<'a> {
    fn blob(self, idx: u32) -> Option<&'a [u8]> {
        self.blobs.binary_search_by_key(&idx, |b| b.0).ok().map(|i| self.blobs[i].1.as_slice())
    }
}

pub(super) async fn flush_outbox_with(
    conn: &mut impl ConnectionLike,
    keys: &Keys,
    run_id: &str,
    local: Option<LocalSpecs<'_>>,
) -> Result<usize, StoreError> {
    let outbox = keys.run(run_id, "outbox");
    let lock = keys.run(run_id, "flushing");
    let token = format!("{:016x}", rand::random::<u64>());
    let mut moved = 0;
    loop {
        let got: Option<String> = redis::cmd("SET").arg(&lock).arg(&token).arg("NX").arg("PX").arg(5000).query_async(conn).await?;
        if got.is_none() {
            // Another flusher holds the key and will look again after letting go.
            return Ok(moved);
        }
        let flushed = flush_held(conn, keys, run_id, &lock, &token, local).await;
        let _: i64 = scripts::UNLOCK.key(&lock).arg(&token).invoke_async(conn).await?;
        moved += flushed?;
        let left: u64 = redis::cmd("LLEN").arg(&outbox).query_async(conn).await?;
        if left == 0 {
            return Ok(moved);
        }
    }
}

/// The work of [`flush_outbox`] while holding the run's `flushing` key: chunks of the outbox's
/// head go to the streams, then leave the outbox in one LTRIM — safe because only the key's
/// holder removes entries while others only append (checked in the same script; should the
/// key have lapsed, each entry is removed by value instead).
async fn flush_held(
    conn: &mut impl ConnectionLike,
    keys: &Keys,
    run_id: &str,
    lock: &str,
    token: &str,
    local: Option<LocalSpecs<'_>>,
) -> Result<usize, StoreError> {
    let outbox = keys.run(run_id, "outbox");
    let mut moved = 0;
    // A run this process has just created: its outbox begins with exactly its roots, in order,
    // unless another flusher has moved some already (every flusher takes from the head, so the
    // head would no longer be the first root). Checking the head and the length replaces
    // reading the entries back.
    let mut fresh: &[(u32, Vec<u8>)] = match local {
        Some(l) if !l.blobs.is_empty() => {
            let (head, len): (Option<String>, usize) = redis::pipe().lindex(&outbox, 0).llen(&outbox).query_async(conn).await?;
            if head == Some(format!("{}:1", l.blobs[0].0)) && len >= l.blobs.len() {
                l.blobs
            } else {
                &[]
            }
        }
        _ => &[],
    };
    loop {
        let entries: Vec<String> = if fresh.is_empty() {
            redis::cmd("LRANGE").arg(&outbox).arg(0).arg(4999).query_async(conn).await?
        } else {
            let (chunk, rest) = fresh.split_at(fresh.len().min(5000));
            fresh = rest;
            chunk.iter().map(|(i, _)| format!("{i}:1")).collect()
        };
        if entries.is_empty() {
            return Ok(moved);
        }
        let mut parsed: Vec<(u32, u32)> = Vec::with_capacity(entries.len());
        for e in &entries {
            match e.split_once(':').and_then(|(i, a)| Some((i.parse().ok()?, a.parse().ok()?))) {
                Some(ia) => parsed.push(ia),
                None => tracing::warn!(run = run_id, entry = %e, "dropping a malformed outbox entry"),
            }
        }
        let known = |i: u32| local.and_then(|l| l.specs.get(i as usize));
        let missing: Vec<u32> = parsed.iter().map(|p| p.0).filter(|&i| known(i).is_none()).collect();
        let mut fetched: HashMap<u32, Vec<u8>> = HashMap::new();
        if !missing.is_empty() {
            let blobs: Vec<Option<Vec<u8>>> = redis::cmd("HMGET").arg(keys.run(run_id, "spec")).arg(&missing).query_async(conn).await?;
            for (i, b) in missing.iter().zip(blobs) {
                let b = b.ok_or_else(|| StoreError::Corrupt(format!("run {run_id}: outbox names task {i} with no spec")))?;
                fetched.insert(*i, b);
            }
        }
        let pipes = parsed.chunks(500).map(|part| {
            let mut p = redis::pipe();
            for &(idx, attempt) in part {
                match known(idx) {
                    Some(spec) => match local.and_then(|l| l.blob(idx)) {
                        Some(blob) => entry::add_job(&mut p, keys, run_id, idx, spec, attempt, blob),
                        None => entry::add_job(&mut p, keys, run_id, idx, spec, attempt, &spec.encode()),
                    },
                    None => {
                        let blob = &fetched[&idx];
                        let spec =
                            TaskSpec::decode(blob).map_err(|e| StoreError::Corrupt(format!("run {run_id}: spec of task {idx}: {e}")))?;
                        entry::add_job(&mut p, keys, run_id, idx, &spec, attempt, blob);
                    }
                }
            }
            Ok(p)
        });
        send_while_building(conn, pipes).await?;
        let trimmed: i64 = scripts::TRIM_HELD.key(lock).key(&outbox).arg(token).arg(entries.len()).invoke_async(conn).await?;
        if trimmed == 0 {
            // The flush key lapsed: someone else may be flushing now.
            fresh = &[];
            let mut p = redis::pipe();
            for e in &entries {
                p.cmd("LREM").arg(&outbox).arg(1).arg(e).ignore();
            }
            p.query_async::<()>(conn).await?;
        }
        moved += parsed.len();
    }
}
