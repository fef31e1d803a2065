//! `zo-submit show RUN [TASK]`: a run's summary, what runs now (where, for how long) and its
//! tasks; or one task's full record with every attempt. Reads Redis only, writes no file.

use std::fmt::Write as _;

use serde::Serialize;
use zo_common::catalog::Catalog;
use zo_common::model::{now_ms, rfc3339};
use zo_common::report::{self, ResultsDocument, TaskReport};
use zo_common::store::{RunningTask, StoreError};
use zo_common::text::{escape_controls, escape_line};

use super::table::{fit, print_json, RunRow};
use crate::cli::{ArchiveOpt, ConnOpts};
use crate::{connect, exit, fail_queue, stdout};
use zo_common::report::fit::Col;
use zo_common::text::age;

/// A task running now, as `show --json` lists it.
#[derive(Debug, Serialize)]
pub struct RunningRow {
    pub task_name: String,
    pub ccr_instance: String,
    pub worker: String,
    pub attempt: u32,
    /// When this attempt started (absent from a worker that did not say).
    pub started_at: Option<String>,
    /// Seconds it has been running.
    pub elapsed: Option<f64>,
}

/// `show RUN --json`.
#[derive(Debug, Serialize)]
struct ShowRun<'a> {
    run: RunRow,
    /// Running tasks, the longest-running first.
    running: Vec<RunningRow>,
    /// The results document as it stands (the one `results_*.json` holds at the end).
    results: &'a ResultsDocument,
}

/// `show RUN TASK --json`.
#[derive(Debug, Serialize)]
struct ShowTask<'a> {
    run_id: &'a str,
    /// Its attempt that runs now, if any.
    running: Option<RunningRow>,
    task: &'a TaskReport,
}

pub(crate) fn running_rows(doc: &ResultsDocument, running: &[RunningTask]) -> Vec<RunningRow> {
    let now = now_ms();
    let mut rows: Vec<RunningRow> = running
        .iter()
        .filter_map(|r| {
            let t = doc.tasks.get(r.idx as usize)?;
            let started = (r.started_ms > 0).then_some(r.started_ms);
            Some(RunningRow {
                task_name: t.task_name.clone(),
                ccr_instance: t.ccr_instance.clone(),
                worker: r.worker.clone(),
                attempt: r.attempt,
                started_at: started.map(rfc3339),
                elapsed: started.map(|s| now.saturating_sub(s) as f64 / 1000.0),
            })
        })
        .collect();
    rows.sort_by(|a, b| b.elapsed.partial_cmp(&a.elapsed).unwrap_or(std::cmp::Ordering::Equal));
    rows
}

pub async fn show(conn: &ConnOpts, run_id: &str, task: Option<&str>, json: bool, catalog: &Catalog, archive: &ArchiveOpt) -> u8 {
    let store = match connect(conn, 1).await {
        Ok(s) => s,
        Err(code) => return code,
    };
    let r = async {
        let mut c = store.conn().await?;
        let snap = store.snapshot(&mut c, run_id).await?;
        let running = if snap.meta.finished { Vec::new() } else { store.running_tasks(&mut c, run_id).await? };
        Ok::<_, StoreError>((snap, running))
    }
    .await;
    let (doc, running, run) = match (r, &archive.archive) {
        (Ok((snap, running)), _) => {
            let doc = report::build(&snap, catalog);
            let run = RunRow::of(&snap.meta);
            (doc, running, run)
        }
        // Gone from Redis: the archive may have it.
        (Err(StoreError::NoSuchRun(_)), Some(_)) => {
            match super::history::document(&store, run_id, catalog, archive.archive.as_deref()).await {
                Ok(doc) => {
                    let run = RunRow::of_doc(&doc);
                    (doc, Vec::new(), run)
                }
                Err(code) => return code,
            }
        }
        (Err(e), _) => return fail_queue(&e),
    };
    let rows = running_rows(&doc, &running);
    match task {
        None if json => print_json(&ShowRun { run, running: rows, results: &doc }),
        None => stdout(&render_run(&run, &rows, &doc)),
        Some(name) => {
            let Some(t) = doc.tasks.iter().find(|t| t.task_name == name) else {
                let names: Vec<&str> = doc.tasks.iter().map(|t| t.task_name.as_str()).collect();
                let hint = zo_common::yaml::closest(name, names.iter().copied())
                    .map(|n| format!("; did you mean `{}`?", escape_line(n)))
                    .unwrap_or_default();
                eprintln!("zo-submit: run {run_id} has no task named `{}`{hint}", escape_line(name));
                return exit::INVALID;
            };
            let now_running = rows.into_iter().find(|r| r.task_name == t.task_name);
            if json {
                print_json(&ShowTask { run_id, running: now_running, task: t });
            } else {
                stdout(&render_task(run_id, t, now_running.as_ref()));
            }
        }
    }
    exit::OK
}

fn render_run(run: &RunRow, running: &[RunningRow], doc: &ResultsDocument) -> String {
    let mut out = String::new();
    let title = if run.name.is_empty() { String::new() } else { format!(" — {}", escape_line(&run.name)) };
    let _ = writeln!(out, "run {}{title}\n  file     {}", run.run_id, escape_line(&run.task_file));
    let _ = writeln!(out, "  status   {} · {} elapsed · created {}", run.progress(), age((run.elapsed * 1000.0) as u64), run.created_at);
    if !running.is_empty() {
        let cols =
            vec![Col::keep("Running task"), Col::keep("Instance"), Col::free("Worker"), Col::num("Attempt").droppable(0), Col::num("For")];
        let rows = running
            .iter()
            .map(|r| {
                vec![
                    escape_line(&r.task_name).into_owned(),
                    escape_line(&r.ccr_instance).into_owned(),
                    escape_line(&r.worker).into_owned(),
                    r.attempt.to_string(),
                    r.elapsed.map_or_else(|| "?".into(), |s| age((s * 1000.0) as u64)),
                ]
            })
            .collect();
        let _ = writeln!(out, "{}", fit(cols, rows));
    }
    out.push_str(&report::dashboard(doc, crate::term::stdout_width()));
    let _ = writeln!(out, "One task in full: zo-submit show {} TASK_NAME", run.run_id);
    out
}

fn render_task(run_id: &str, t: &TaskReport, running: Option<&RunningRow>) -> String {
    let mut out = String::new();
    let line = |out: &mut String, k: &str, v: &str| {
        let _ = writeln!(out, "  {k:<13}{}", escape_line(v));
    };
    let _ = writeln!(out, "{} {} (run {run_id})", report::status_mark(t.status), escape_line(&t.task_name));
    line(&mut out, "status", t.status.as_str());
    line(&mut out, "instance", &t.ccr_instance);
    if let Some(r) = running {
        let since = r.elapsed.map_or_else(String::new, |s| format!(" for {}", age((s * 1000.0) as u64)));
        line(&mut out, "running", &format!("attempt {} on {}{since}", r.attempt, r.worker));
    }
    if let Some(d) = &t.description {
        line(&mut out, "description", d);
    }
    if !t.dependencies.is_empty() {
        line(&mut out, "depends on", &t.dependencies.join(", "));
    }
    if let Some(s) = &t.started_at {
        line(&mut out, "started", s);
    }
    if t.attempts > 0 {
        line(&mut out, "ended", &t.timestamp);
        line(&mut out, "duration", &format!("{:.1}s (queue wait {:.1}s)", t.duration, t.queue_wait));
        line(&mut out, "attempts", &t.attempts.to_string());
    }
    if let Some(w) = &t.worker {
        line(&mut out, "worker", w);
    }
    if t.input_tokens + t.output_tokens > 0 {
        line(&mut out, "tokens", &format!("{} in / {} out", t.input_tokens, t.output_tokens));
    }
    if let Some(c) = t.cost {
        line(&mut out, "cost", &zo_common::model::format_dollars(c));
    }
    if t.rate_limit_wait > 0.0 {
        line(&mut out, "rate waits", &format!("{:.1}s", t.rate_limit_wait));
    }
    if let Some(e) = &t.error {
        let class = t.error_class.map(|c| format!(" [{}]", c.as_str())).unwrap_or_default();
        line(&mut out, "error", &format!("{e}{class}"));
    }
    if !t.attempt_history.is_empty() {
        let cols = vec![
            Col::num("Attempt"),
            Col::keep("Status"),
            Col::keep("Worker").droppable(1),
            Col::num("Duration"),
            Col::keep("Ended").droppable(0),
            Col::free("Error"),
        ];
        let rows = t
            .attempt_history
            .iter()
            .map(|a| {
                let err = a.error.as_deref().map(|e| report_line(e, 60)).unwrap_or_default();
                let class = a.error_class.map(|c| format!("[{}] ", c.as_str())).unwrap_or_default();
                vec![
                    a.attempt.to_string(),
                    a.status.as_str().to_string(),
                    escape_line(&a.worker).into_owned(),
                    format!("{:.1}s", a.duration),
                    a.timestamp.clone(),
                    format!("{class}{err}"),
                ]
            })
            .collect();
        let _ = writeln!(out, "{}", fit(cols, rows));
    }
    if let Some(c) = &t.command {
        let _ = writeln!(out, "── command (exit {}, {:.1}s) ──", c.exit_code.map_or_else(|| "-".into(), |c| c.to_string()), c.duration);
        if !c.stdout.is_empty() {
            let _ = writeln!(out, "{}", escape_controls(c.stdout.trim_end()));
        }
        if !c.stderr.is_empty() {
            let _ = writeln!(out, "── command stderr ──\n{}", escape_controls(c.stderr.trim_end()));
        }
    }
    if !t.output.is_empty() {
        let _ = writeln!(out, "── output ──\n{}", escape_controls(t.output.trim_end()));
    }
    out
}

/// The first line of `s`, at most `max` characters, escaped.
fn report_line(s: &str, max: usize) -> String {
    let first = s.lines().next().unwrap_or("");
    let l = escape_line(first);
    if l.chars().count() > max {
        format!("{}…", l.chars().take(max - 1).collect::<String>())
    } else {
        l.into_owned()
    }
}
