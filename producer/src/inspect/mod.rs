//! The read commands: `runs`, `show`, `queues`, `workers`, `dead`, `export`, `diff`,
//! `search`, `stats`; the last three and `runs`, `show`, `export` read the archive too. Each prints a
//! table for people, or with `--json` one JSON value on stdout with the fields documented in
//! the README ("Inspecting runs and queues"); nothing else goes to stdout then. Names, errors
//! and outputs come from task files and models: tables show them on one line, control
//! characters escaped.

mod dead;
mod export;
mod history;
mod show;
mod table;

pub use dead::dead;
pub use export::export;
pub use history::{diff, search, stats};
pub use show::show;
use table::{fit, print_json, RunRow};

use serde::Serialize;
use zo_common::catalog::Catalog;
use zo_common::model::{format_dollars, now_ms, rfc3339};
use zo_common::report::fit::Col;
use zo_common::store::{RunFilter, StoreError};
use zo_common::text::{age, escape_line};

use crate::cli::{ArchiveOpt, ConnOpts, RunStatusFilter};
use crate::{connect, exit, fail_queue, stdout};

/// `zo-submit runs`.
pub async fn runs(conn: &ConnOpts, status: Option<RunStatusFilter>, limit: usize, json: bool, archive: &ArchiveOpt) -> u8 {
    let store = match connect(conn, 1).await {
        Ok(s) => s,
        Err(code) => return code,
    };
    let filter = match status {
        None => RunFilter::All,
        Some(RunStatusFilter::Running) => RunFilter::Running,
        Some(RunStatusFilter::Finished) => RunFilter::Finished,
    };
    let metas = async {
        let mut c = store.conn().await?;
        store.list_runs(&mut c, limit, filter).await
    }
    .await;
    let mut rows: Vec<RunRow> = match metas {
        Ok(m) => m.iter().map(RunRow::of).collect(),
        Err(e) => return fail_queue(&e),
    };
    // Archived runs Redis no longer holds fill the list up (finished ones only).
    if let (Some(dir), false) = (&archive.archive, filter == RunFilter::Running) {
        let in_redis = rows.iter().map(|r| r.run_id.clone()).collect();
        match history::archived(dir, &in_redis, limit, |_| true) {
            Ok(docs) => rows.extend(docs.iter().map(RunRow::of_doc)),
            Err(code) => return code,
        }
        rows.sort_by(|a, b| b.created_at.cmp(&a.created_at));
        rows.truncate(limit);
    }
    if json {
        print_json(&rows);
        return exit::OK;
    }
    if rows.is_empty() {
        let mut elsewhere = match store.conn().await {
            Ok(mut c) => store.namespaces_with_runs(&mut c).await.unwrap_or_default(),
            Err(_) => Vec::new(),
        };
        elsewhere.retain(|n| *n != conn.namespace);
        let hint = if elsewhere.is_empty() {
            "submit one with: zo-submit FILE".to_string()
        } else {
            let names: Vec<String> = elsewhere.iter().take(10).map(|n| format!("`{}`", escape_line(n))).collect();
            format!(
                "runs are in namespace{} {} (--namespace NS or ZO_NAMESPACE)",
                if names.len() == 1 { "" } else { "s" },
                names.join(", ")
            )
        };
        stdout(&format!("no runs in namespace `{}`; {hint}\n", escape_line(&conn.namespace)));
        return exit::OK;
    }
    let cols = vec![
        Col::keep("Run"),
        Col::keep("Status"),
        Col::num("Elapsed").droppable(2),
        Col::keep("Created").droppable(1),
        Col::num("Cost").droppable(0),
        Col::free("File"),
    ];
    let cells = rows
        .iter()
        .map(|r| {
            let file = if r.name.is_empty() { r.task_file.clone() } else { format!("{} ({})", r.name, r.task_file) };
            vec![
                r.run_id.clone(),
                r.progress(),
                age((r.elapsed * 1000.0) as u64),
                r.created_at.get(..19).unwrap_or(&r.created_at).replace('T', " "),
                r.cost.map_or_else(|| "-".into(), format_dollars),
                escape_line(&file).into_owned(),
            ]
        })
        .collect();
    stdout(&format!("{}\n", fit(cols, cells)));
    exit::OK
}

/// One stream of `queues --json`.
#[derive(Debug, Serialize)]
struct QueueRow {
    instance: String,
    /// `high`, `medium` or `low`.
    priority: &'static str,
    /// The stream's key, for redis-cli.
    stream: String,
    /// Entries not yet acknowledged: waiting + pending.
    length: u64,
    /// Read by a worker, not yet acknowledged.
    pending: u64,
    /// Not yet read by any worker.
    waiting: u64,
    /// Seconds since the oldest entry was added (absent when empty).
    oldest_age: Option<f64>,
    consumers: u64,
    /// Live workers that serve the instance.
    live_workers: usize,
}

/// `zo-submit queues`.
pub async fn queues(conn: &ConnOpts, catalog: &Catalog, json: bool) -> u8 {
    let store = match connect(conn, 1).await {
        Ok(s) => s,
        Err(code) => return code,
    };
    let r = async {
        let mut c = store.conn().await?;
        let live = store.live_workers(&mut c, zo_common::store::LIVE_WITHIN).await?;
        let mut known: Vec<String> = catalog.names().map(str::to_string).collect();
        known.extend(live.iter().flat_map(|w| w.info.instances.iter().cloned()));
        let mut rows = Vec::new();
        for inst in store.queued_instances(&mut c, &known).await? {
            let serving = live.iter().filter(|w| w.compatible() && w.info.instances.contains(&inst)).count();
            for q in store.queue_stats(&mut c, &inst).await? {
                if !q.exists && q.length == 0 && serving == 0 && !catalog.names().any(|n| n == inst) {
                    continue;
                }
                rows.push(QueueRow {
                    stream: store.keys().jobs_for(&inst, q.priority),
                    instance: q.instance,
                    priority: q.priority.as_str(),
                    length: q.length,
                    pending: q.pending,
                    waiting: q.waiting,
                    oldest_age: q.oldest_age_ms.map(|ms| ms as f64 / 1000.0),
                    consumers: q.consumers,
                    live_workers: serving,
                });
            }
        }
        Ok::<_, StoreError>(rows)
    }
    .await;
    let rows = match r {
        Ok(r) => r,
        Err(e) => return fail_queue(&e),
    };
    if json {
        print_json(&rows);
        return exit::OK;
    }
    let cols = vec![
        Col::keep("Instance"),
        Col::keep("Priority"),
        Col::num("Length").droppable(1),
        Col::num("Pending"),
        Col::num("Waiting"),
        Col::num("Oldest").droppable(2),
        Col::num("Consumers").droppable(0),
        Col::num("Live workers"),
    ];
    let cells = rows
        .iter()
        .filter(|q| q.length > 0 || q.priority == "medium")
        .map(|q| {
            vec![
                escape_line(&q.instance).into_owned(),
                q.priority.to_string(),
                q.length.to_string(),
                q.pending.to_string(),
                q.waiting.to_string(),
                q.oldest_age.map_or_else(|| "-".into(), |s| age((s * 1000.0) as u64)),
                q.consumers.to_string(),
                if q.live_workers == 0 && q.waiting > 0 { "0 ⚠".to_string() } else { q.live_workers.to_string() },
            ]
        })
        .collect();
    stdout(&format!("{}\n(empty high and low priority streams are not shown; --json lists every stream)\n", fit(cols, cells)));
    exit::OK
}

/// One worker of `workers --json`.
#[derive(Debug, Serialize)]
struct WorkerRow {
    id: String,
    host: String,
    pid: u32,
    version: String,
    protocol: u32,
    /// Speaks this zo-submit's protocol (else it takes none of its jobs).
    compatible: bool,
    executor: String,
    instances: Vec<String>,
    /// Jobs running now, in all and by instance.
    in_flight: u32,
    in_flight_by_instance: std::collections::BTreeMap<String, u32>,
    /// Seconds since its last heartbeat (every 5 s; gone after 15 s).
    heartbeat_age: f64,
    started_at: String,
    /// Seconds since it started.
    uptime: f64,
}

/// `zo-submit workers`.
pub async fn workers(conn: &ConnOpts, json: bool) -> u8 {
    let store = match connect(conn, 1).await {
        Ok(s) => s,
        Err(code) => return code,
    };
    let live = async {
        let mut c = store.conn().await?;
        store.live_workers(&mut c, zo_common::store::LIVE_WITHIN).await
    }
    .await;
    let live = match live {
        Ok(l) => l,
        Err(e) => return fail_queue(&e),
    };
    let now = now_ms();
    let rows: Vec<WorkerRow> = live
        .iter()
        .map(|w| WorkerRow {
            compatible: w.compatible(),
            id: w.info.id.clone(),
            host: w.info.host.clone(),
            pid: w.info.pid,
            version: w.info.version.clone(),
            protocol: w.info.protocol,
            executor: w.info.executor.clone(),
            instances: w.info.instances.clone(),
            in_flight: w.info.in_flight.values().sum(),
            in_flight_by_instance: w.info.in_flight.clone(),
            heartbeat_age: now.saturating_sub(w.last_seen_ms) as f64 / 1000.0,
            started_at: rfc3339(w.info.started_ms),
            uptime: now.saturating_sub(w.info.started_ms) as f64 / 1000.0,
        })
        .collect();
    if json {
        print_json(&rows);
        return exit::OK;
    }
    if rows.is_empty() {
        stdout(&format!("no live workers in namespace `{}`; start one with: zo-worker --config configs/worker.yaml\n", conn.namespace));
        return exit::OK;
    }
    let cols = vec![
        Col::keep("Worker"),
        Col::keep("Host").droppable(0),
        Col::free("Instances (in flight)"),
        Col::num("Heartbeat"),
        Col::num("Up").droppable(1),
        Col::keep("Version").droppable(2),
    ];
    let cells = rows
        .iter()
        .map(|w| {
            let inst = w.in_flight_by_instance.iter().map(|(i, n)| format!("{i} {n}")).collect::<Vec<_>>().join(", ");
            let version = if w.compatible { w.version.clone() } else { format!("{} ⚠ protocol {}", w.version, w.protocol) };
            vec![
                escape_line(&w.id).into_owned(),
                escape_line(&w.host).into_owned(),
                escape_line(if inst.is_empty() { w.instances.join(", ") } else { inst }.as_str()).into_owned(),
                format!("{} ago", age((w.heartbeat_age * 1000.0) as u64)),
                age((w.uptime * 1000.0) as u64),
                escape_line(&version).into_owned(),
            ]
        })
        .collect();
    stdout(&format!("{}\n", fit(cols, cells)));
    exit::OK
}

#[cfg(test)]
mod tests {
    use super::RunRow;

    fn row(failed: u64, timeout: u64, cancelled: u64, successful: u64) -> RunRow {
        RunRow {
            run_id: "r".into(),
            name: String::new(),
            task_file: "t.yaml".into(),
            status: "finished",
            created_at: String::new(),
            started_at: None,
            finished_at: None,
            elapsed: 0.0,
            total_tasks: 8,
            done: 8,
            running: 0,
            successful,
            failed,
            timeout,
            skipped: 8 - successful - failed - timeout - cancelled,
            cancelled,
            cost: None,
            stopped: None,
        }
    }

    /// A cancelled run reads as cancelled, not as failed.
    #[test]
    fn progress_names_what_did_not_succeed() {
        assert_eq!(row(0, 0, 8, 0).progress(), "✗ 8 cancelled of 8");
        assert_eq!(row(2, 1, 3, 2).progress(), "✗ 2 failed, 1 timed out, 3 cancelled of 8");
        assert_eq!(row(0, 0, 0, 8).progress(), "✓ 8/8");
    }
}
