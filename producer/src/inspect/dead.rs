//! `zo-submit dead [list|retry|delete]`: the dead letters (tasks that ended for good after
//! their retries or as poison, and stream entries that could not be handled), with their age,
//! run and reason; running them again as a new attempt, or deleting them.

use serde::Serialize;
use zo_common::model::{now_ms, rfc3339};
use zo_common::store::{DeadLetter, Store, StoreError};
use zo_common::text::escape_line;

use super::table::print_json;
use crate::cli::{ConnOpts, DeadAction, DeadFilter};
use crate::{connect, exit, fail_queue, stdout};
use zo_common::text::age;

/// One dead letter of `dead --json`.
#[derive(Debug, Serialize)]
struct DeadRow<'a> {
    id: &'a str,
    /// When it was dead-lettered, and how long ago (seconds).
    at: String,
    age: f64,
    /// The run and task it names (absent for a malformed entry).
    run_id: Option<&'a str>,
    task_index: Option<u32>,
    task_name: &'a str,
    ccr_instance: &'a str,
    attempt: Option<u32>,
    error_class: &'a str,
    reason: &'a str,
    worker: &'a str,
    /// A malformed entry's stream and entry id.
    #[serde(skip_serializing_if = "Option::is_none")]
    entry: Option<String>,
}

fn row(d: &DeadLetter) -> DeadRow<'_> {
    let entry = d.task.is_none().then(|| {
        d.fields.iter().filter(|(k, _)| k == "stream" || k == "entry").map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(" ")
    });
    DeadRow {
        id: &d.id,
        at: rfc3339(d.at_ms),
        age: now_ms().saturating_sub(d.at_ms) as f64 / 1000.0,
        run_id: d.task.as_ref().map(|(r, _)| r.as_str()),
        task_index: d.task.as_ref().map(|(_, i)| *i),
        task_name: &d.task_name,
        ccr_instance: &d.instance,
        attempt: d.attempt,
        error_class: &d.error_class,
        reason: &d.reason,
        worker: &d.worker,
        entry,
    }
}

/// The dead letters `filter` keeps, oldest first.
async fn letters(store: &Store, filter: &DeadFilter) -> Result<Vec<DeadLetter>, StoreError> {
    let mut c = store.conn().await?;
    let all = store.dead_letters(&mut c).await?;
    Ok(all.into_iter().filter(|d| filter.run.as_ref().is_none_or(|r| d.task.as_ref().is_some_and(|(run, _)| run == r))).collect())
}

pub async fn dead(conn: &ConnOpts, action: Option<&DeadAction>, filter: &DeadFilter, json: bool) -> u8 {
    let (conn, filter, json) = match action {
        Some(DeadAction::List { filter, json, conn }) => (conn, filter, json.json),
        Some(DeadAction::Retry { filter, conn, .. } | DeadAction::Delete { filter, conn, .. }) => (conn, filter, false),
        None => (conn, filter, json),
    };
    let store = match connect(conn, 2).await {
        Ok(s) => s,
        Err(code) => return code,
    };
    let letters = match letters(&store, filter).await {
        Ok(l) => l,
        Err(e) => return fail_queue(&e),
    };
    match action {
        None | Some(DeadAction::List { .. }) => list(&letters, json),
        Some(DeadAction::Retry { id, all, .. }) => match choose(&letters, id.as_deref(), *all, "retry") {
            // `--all` runs again every letter that names a task; malformed entries stay.
            Ok(chosen) => retry(&store, chosen.into_iter().filter(|d| !*all || d.task.is_some()).collect()).await,
            Err(code) => code,
        },
        Some(DeadAction::Delete { id, all, .. }) => match choose(&letters, id.as_deref(), *all, "delete") {
            Ok(chosen) => delete(&store, &chosen).await,
            Err(code) => code,
        },
    }
}

fn list(letters: &[DeadLetter], json: bool) -> u8 {
    if json {
        print_json(&letters.iter().map(row).collect::<Vec<_>>());
        return exit::OK;
    }
    if letters.is_empty() {
        stdout("no dead letters\n");
        return exit::OK;
    }
    // One line per letter (ids copy and grep easily); dead letters hold whatever was in the
    // stream: control characters escaped.
    for d in letters {
        let r = row(d);
        let what = match (&r.entry, r.run_id, r.task_index) {
            (Some(e), _, _) => format!("malformed entry ({e})"),
            (None, Some(run), Some(idx)) => format!("run {run} task #{idx} `{}`", r.task_name),
            _ => format!("`{}`", r.task_name),
        };
        let mut line = format!("{}  {:>6} ago  {what}: {}", r.id, age((r.age * 1000.0) as u64), r.reason);
        if r.entry.is_none() {
            let attempt = r.attempt.map(|a| format!(", attempt {a}")).unwrap_or_default();
            line.push_str(&format!(" (instance {}{attempt})", r.ccr_instance));
        }
        stdout(&format!("{}\n", escape_line(&line)));
    }
    stdout("\nRun one again: zo-submit dead retry ID · remove: zo-submit dead delete ID (or --all, with --run RUN)\n");
    exit::OK
}

/// The letters an action applies to: one by id, or all of them (those `--run` kept).
fn choose<'a>(letters: &'a [DeadLetter], id: Option<&str>, all: bool, verb: &str) -> Result<Vec<&'a DeadLetter>, u8> {
    match (id, all) {
        (Some(id), _) => match letters.iter().find(|d| d.id == id) {
            Some(d) => Ok(vec![d]),
            None => {
                eprintln!("zo-submit: no dead letter with id {}; list them with `zo-submit dead`", escape_line(id));
                Err(exit::INVALID)
            }
        },
        (None, true) => Ok(letters.iter().collect()),
        (None, false) => {
            eprintln!("zo-submit: name a dead letter id or pass --all to {verb} every one (of --run RUN only, with it)");
            Err(exit::INVALID)
        }
    }
}

async fn retry(store: &Store, chosen: Vec<&DeadLetter>) -> u8 {
    let mut code = exit::OK;
    for d in chosen {
        let Some((run, idx)) = &d.task else {
            eprintln!(
                "zo-submit: {} is a malformed entry, not a task; there is nothing to run again (delete it with `zo-submit dead delete {}`)",
                d.id, d.id
            );
            code = exit::INVALID;
            continue;
        };
        let r = async {
            let mut conn = store.conn().await?;
            let n = store.revive(&mut conn, run, *idx).await?;
            store.delete_dead_letter(&mut conn, &d.id).await?;
            Ok::<_, StoreError>(n)
        }
        .await;
        let name = escape_line(&d.task_name);
        match r {
            Ok(Some(n)) => {
                eprintln!("{}: task `{name}` of run {run} queued again as attempt {n}; follow it with: zo-submit watch {run}", d.id)
            }
            Ok(None) => eprintln!("{}: task `{name}` of run {run} is no longer failed; dead letter removed", d.id),
            Err(e) => return fail_queue(&e),
        }
    }
    code
}

async fn delete(store: &Store, chosen: &[&DeadLetter]) -> u8 {
    let ids: Vec<&str> = chosen.iter().map(|d| d.id.as_str()).collect();
    let r = async {
        let mut c = store.conn().await?;
        store.delete_dead_letters(&mut c, &ids).await
    }
    .await;
    match r {
        Ok(n) => {
            eprintln!("deleted {n} dead letter{}", if n == 1 { "" } else { "s" });
            exit::OK
        }
        Err(e) => fail_queue(&e),
    }
}
