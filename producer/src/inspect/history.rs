//! Runs as stored: in Redis while their retention lasts, in the archive (`--archive DIR`)
//! after; and the commands that look across them — `diff`, `search`, `stats`.

use std::collections::HashSet;
use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use serde::Serialize;
use zo_common::archive;
use zo_common::catalog::Catalog;
use zo_common::model::{format_dollars, now_ms, parse_rfc3339};
use zo_common::report::history::{self, Hit, Query};
use zo_common::report::{self, diff as rdiff, ResultsDocument};
use zo_common::store::{check_run_id, RunFilter, Store, StoreError};
use zo_common::text::{escape_controls, escape_line};

use super::table::{fit, print_json};
use crate::cli::{ArchiveOpt, ConnOpts};
use crate::{connect, exit, fail_queue, stdout};
use zo_common::report::fit::Col;

/// Says why an archive could not be read; the exit code.
fn archive_failed(e: &archive::ArchiveError) -> u8 {
    eprintln!("zo-submit: {e}");
    exit::INFRA
}

/// A run's document: from Redis (finished or not), else from the archive.
pub(crate) async fn document(store: &Store, run_id: &str, catalog: &Catalog, archive_dir: Option<&Path>) -> Result<ResultsDocument, u8> {
    if let Err(e) = check_run_id(run_id) {
        eprintln!("zo-submit: {e}");
        return Err(exit::INVALID);
    }
    let snap = async {
        let mut c = store.conn().await?;
        store.snapshot(&mut c, run_id).await
    }
    .await;
    match (snap, archive_dir) {
        (Ok(s), _) => Ok(report::build(&s, catalog)),
        (Err(e @ StoreError::NoSuchRun(_)), Some(dir)) => match archive::load(dir, run_id) {
            Ok(Some(doc)) => Ok(doc),
            Ok(None) => {
                eprintln!("zo-submit: {e}; nor is it in the archive {}", dir.display());
                Err(exit::INVALID)
            }
            Err(e) => Err(archive_failed(&e)),
        },
        (Err(e), _) => Err(fail_queue(&e)),
    }
}

/// Archived documents of runs not in `known` that `keep` accepts, newest first, at most
/// `limit`. A damaged file is named and skipped: it does not hide the others.
pub(crate) fn archived(
    dir: &Path,
    known: &HashSet<String>,
    limit: usize,
    keep: impl Fn(&ResultsDocument) -> bool,
) -> Result<Vec<ResultsDocument>, u8> {
    let mut out = Vec::new();
    for id in archive::list(dir).map_err(|e| archive_failed(&e))?.iter().filter(|id| !known.contains(*id)) {
        if out.len() >= limit {
            break;
        }
        match archive::load(dir, id) {
            Ok(Some(d)) if keep(&d) => out.push(d),
            Ok(_) => {}
            Err(e) => eprintln!("zo-submit: skipping {e}"),
        }
    }
    Ok(out)
}

/// Finished runs that ended at or after `since_ms`, newest first, at most `limit`: those in
/// Redis, then archived ones Redis no longer holds.
pub(crate) async fn documents(
    store: &Store,
    catalog: &Catalog,
    archive_dir: Option<&Path>,
    since_ms: u64,
    limit: usize,
) -> Result<Vec<ResultsDocument>, u8> {
    let r = async {
        let mut c = store.conn().await?;
        let metas = store.list_runs(&mut c, limit, RunFilter::Finished).await?;
        let mut docs = Vec::new();
        for m in metas.iter().filter(|m| m.finished_ms.unwrap_or(0) >= since_ms) {
            match store.snapshot(&mut c, &m.run_id).await {
                Ok(s) => docs.push(report::build(&s, catalog)),
                // Expired between the listing and now.
                Err(StoreError::NoSuchRun(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(docs)
    }
    .await;
    let mut docs = r.map_err(|e| fail_queue(&e))?;
    if let Some(dir) = archive_dir {
        let in_redis: HashSet<String> = docs.iter().map(|d| d.run_id.clone()).collect();
        let more = limit.saturating_sub(docs.len());
        docs.extend(archived(dir, &in_redis, more, |d| parse_rfc3339(&d.summary.timestamp).unwrap_or(0) >= since_ms)?);
    }
    docs.sort_by(|a, b| b.run_id.cmp(&a.run_id));
    docs.truncate(limit);
    Ok(docs)
}

pub async fn diff(conn: &ConnOpts, runs: [&String; 2], changed_only: bool, json: bool, catalog: &Catalog, archive: &ArchiveOpt) -> u8 {
    let store = match connect(conn, 1).await {
        Ok(s) => s,
        Err(code) => return code,
    };
    let dir = archive.archive.as_deref();
    let (a, b) = match (document(&store, runs[0], catalog, dir).await, document(&store, runs[1], catalog, dir).await) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(code), _) | (_, Err(code)) => return code,
    };
    let mut d = rdiff::diff(&a, &b);
    if changed_only {
        d.tasks.retain(|t| t.changed);
    }
    if json {
        print_json(&d);
        return exit::OK;
    }
    let side = |s: &Option<rdiff::Side>| match s {
        None => "—".to_string(),
        Some(s) => format!(
            "{} {:.1}s {}/{}{}",
            s.status.as_str(),
            s.duration,
            s.input_tokens,
            s.output_tokens,
            s.cost.map_or_else(String::new, |c| format!(" {}", format_dollars(c)))
        ),
    };
    let cols = vec![Col::keep("Task"), Col::free(d.run_a.as_str()), Col::free(d.run_b.as_str()), Col::keep("Output")];
    let rows = d
        .tasks
        .iter()
        .map(|x| {
            vec![
                escape_line(&x.task_name).into_owned(),
                side(&x.a),
                side(&x.b),
                if x.output_diff.is_some() { "differs" } else { "same" }.to_string(),
            ]
        })
        .collect();
    let mut out = format!("{}\n", fit(cols, rows));
    for x in d.tasks.iter().filter_map(|x| x.output_diff.as_ref()) {
        // Model text: control characters written out, not run.
        let _ = writeln!(out, "{}", escape_controls(x));
    }
    stdout(&out);
    exit::OK
}

/// `search --json`.
#[derive(Debug, Serialize)]
struct SearchReply<'a> {
    runs_searched: usize,
    hits: &'a [Hit],
}

pub async fn search(conn: &ConnOpts, q: &Query<'_>, limit: usize, json: bool, catalog: &Catalog, archive: &ArchiveOpt) -> u8 {
    if q.text.trim().is_empty() {
        eprintln!("zo-submit: give the text to search for");
        return exit::INVALID;
    }
    let store = match connect(conn, 1).await {
        Ok(s) => s,
        Err(code) => return code,
    };
    let docs = match documents(&store, catalog, archive.archive.as_deref(), 0, limit).await {
        Ok(d) => d,
        Err(code) => return code,
    };
    let hits: Vec<Hit> = docs.iter().flat_map(|d| history::search(d, q)).collect();
    if json {
        print_json(&SearchReply { runs_searched: docs.len(), hits: &hits });
        return exit::OK;
    }
    if hits.is_empty() {
        stdout(&format!("no task matches `{}` in {} run(s)\n", escape_line(q.text), docs.len()));
        return exit::OK;
    }
    let cols = vec![
        Col::keep("Run"),
        Col::keep("Task"),
        Col::keep("Instance").droppable(1),
        Col::keep("Status").droppable(0),
        Col::keep("In"),
        Col::free("Match"),
    ];
    let rows = hits
        .iter()
        .map(|h| {
            vec![
                h.run_id.clone(),
                escape_line(&h.task_name).into_owned(),
                escape_line(&h.ccr_instance).into_owned(),
                h.status.as_str().to_string(),
                h.field.to_string(),
                h.snippet.clone(),
            ]
        })
        .collect();
    stdout(&format!("{}\n{} match(es) in {} run(s); one task in full: zo-submit show RUN TASK\n", fit(cols, rows), hits.len(), docs.len()));
    exit::OK
}

pub async fn stats(conn: &ConnOpts, since: Duration, limit: usize, json: bool, catalog: &Catalog, archive: &ArchiveOpt) -> u8 {
    let store = match connect(conn, 1).await {
        Ok(s) => s,
        Err(code) => return code,
    };
    let since_ms = now_ms().saturating_sub(since.as_millis() as u64);
    let docs = match documents(&store, catalog, archive.archive.as_deref(), since_ms, limit).await {
        Ok(d) => d,
        Err(code) => return code,
    };
    let s = history::stats(&docs);
    if json {
        print_json(&s);
        return exit::OK;
    }
    let pct = |r: f64| format!("{:.1}%", r * 100.0);
    let mark = |ok: bool| if ok { "✓" } else { "✗" };
    let mut out = format!(
        "{} finished run(s) in the last {}: {} succeeded ({})\n",
        s.runs,
        zo_common::text::duration(since),
        s.runs_succeeded,
        pct(s.run_success_rate)
    );
    let _ = writeln!(
        out,
        "tasks {} · completion {} {} (target ≥ 99%) · timeouts {} {} (target < 5%)",
        s.tasks,
        pct(s.completion_rate),
        mark(s.completion_rate >= 0.99),
        pct(s.timeout_rate),
        mark(s.timeout_rate < 0.05)
    );
    if s.cancelled + s.skipped > 0 {
        let _ = writeln!(out, "not run to the end: {} cancelled · {} skipped because of a failure", s.cancelled, s.skipped);
    }
    if s.runs_with_budget > 0 {
        let _ = writeln!(out, "budgets: {} of {} run(s) spent more than their budget", s.budget_overruns, s.runs_with_budget);
    }
    // A Cancelled column when anything was cancelled, as the reports have. Narrow terminals
    // lose the queue waits, tokens, cost, p95 and retries first.
    let with_cancelled = s.cancelled > 0;
    let mut cols = vec![Col::keep("Instance"), Col::num("Tasks"), Col::num("Completed"), Col::num("Timeouts")];
    if with_cancelled {
        cols.push(Col::num("Cancelled"));
    }
    cols.extend([
        Col::num("Median"),
        Col::num("p95").droppable(3),
        Col::num("Wait p95").droppable(0),
        Col::num("Tokens in/out").droppable(1),
        Col::num("Cost").droppable(2),
        Col::free("Retries"),
    ]);
    let rows = s
        .by_instance
        .iter()
        .map(|(name, e)| {
            let retries = e.retries.iter().map(|(c, n)| format!("{c} {n}")).collect::<Vec<_>>().join(", ");
            let mut row = vec![escape_line(name).into_owned(), e.tasks.to_string(), pct(e.completion_rate), pct(e.timeout_rate)];
            if with_cancelled {
                row.push(e.cancelled.to_string());
            }
            row.extend([
                format!("{:.1}s", e.duration_median),
                format!("{:.1}s", e.duration_p95),
                format!("{:.1}s", e.queue_wait_p95),
                format!("{}/{}", e.input_tokens, e.output_tokens),
                e.cost.map_or_else(|| "-".into(), format_dollars),
                if retries.is_empty() { "-".into() } else { retries },
            ]);
            row
        })
        .collect();
    let t = fit(cols, rows);
    let _ = writeln!(out, "{t}");
    stdout(&out);
    exit::OK
}
