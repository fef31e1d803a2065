//! `zo-submit`: validates a task file, creates its run in Redis, follows it to the end and
//! writes the reports. The run lives in Redis, not here: this process may exit (`--detach`,
//! Ctrl-C) and re-attach with `zo-submit watch RUN` without stalling the run.
//!
//! - [`cli`] — arguments.
//! - [`watch`] — following a run (live progress).
//! - [`output`] — writing the JSON document, the Markdown report and `output_file`s.

mod approve;
pub mod cli;
mod dryrun;
pub mod output;
mod resume;
pub mod watch;

use std::io::Write as _;
use std::path::Path;

use zo_common::catalog::Catalog;
use zo_common::store::{self, DeadLetter, LocalSpecs, NewRun, Store, StoreError};
use zo_common::text::escape_line;
use zo_common::{plan, report, taskfile};

use crate::cli::{Args, Command, DeadAction};

/// Writes to stdout. A reader that went away (`zo-submit plan FILE | head`) is not an error:
/// the rest is dropped quietly instead of panicking.
fn stdout(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
}

/// Exit codes (documented in the README and `--help`).
pub mod exit {
    pub const OK: u8 = 0;
    pub const TASKS_FAILED: u8 = 1;
    pub const INVALID: u8 = 2;
    pub const INFRA: u8 = 3;
    pub const INTERRUPTED: u8 = 130;
}

/// "1 task", "2 tasks".
fn tasks_word(n: usize) -> String {
    format!("{n} task{}", if n == 1 { "" } else { "s" })
}

fn fail_queue(e: &StoreError) -> u8 {
    eprintln!("zo-submit: {e}");
    // An unknown run is bad input; everything else is Redis or what it holds.
    match e {
        StoreError::NoSuchRun(_) | StoreError::BadUrl { .. } => exit::INVALID,
        _ => exit::INFRA,
    }
}

fn load_catalog(args: &Args) -> Result<Catalog, u8> {
    Catalog::load(args.common.catalog.as_deref()).map_err(|e| {
        eprintln!("zo-submit: {e}");
        exit::INVALID
    })
}

fn load_tasks(path: &Path, catalog: &Catalog, max_bytes: u64) -> Result<taskfile::TaskFile, u8> {
    taskfile::load(path, catalog, max_bytes).map_err(|e| {
        eprintln!("{e}");
        let n = e.0.len();
        eprintln!("zo-submit: {} has {n} error{}; nothing was submitted", path.display(), if n == 1 { "" } else { "s" });
        exit::INVALID
    })
}

/// Runs the command line; returns the process exit code.
pub async fn run(args: Args) -> u8 {
    let catalog = match load_catalog(&args) {
        Ok(c) => c,
        Err(code) => return code,
    };
    if let Some(
        Command::Watch { run_id }
        | Command::Cancel { run_id, .. }
        | Command::Approve { run_id, .. }
        | Command::Reject { run_id, .. }
        | Command::Resume { run_id, .. },
    ) = &args.command
    {
        if let Err(e) = store::check_run_id(run_id) {
            eprintln!("zo-submit: {e}");
            return exit::INVALID;
        }
    }
    match &args.command {
        Some(Command::Plan { file }) => plan_only(&args, file, &catalog),
        Some(Command::Watch { run_id }) => {
            let store = match Store::connect(&args.common.redis, &args.common.namespace, 4).await {
                Ok(s) => s,
                Err(e) => return fail_queue(&e),
            };
            watch::follow_and_report(&store, run_id, &catalog, &args.output, None).await
        }
        Some(Command::Cancel { run_id, task }) => cancel(&args, run_id, task.as_deref()).await,
        Some(Command::Resume { run_id, task, detach }) => resume::resume(&args, run_id, task.as_deref(), *detach, &catalog).await,
        Some(Command::Approve { run_id, stage }) => approve::decide(&args, run_id, stage, None).await,
        Some(Command::Reject { run_id, stage, reason }) => approve::decide(&args, run_id, stage, Some(reason)).await,
        Some(Command::Dead { action }) => dead(&args, action.as_ref().unwrap_or(&DeadAction::List)).await,
        None => {
            let Some(file) = &args.file else {
                eprintln!("zo-submit: no task file given; usage: zo-submit FILE (see --help)");
                return exit::INVALID;
            };
            if args.dry_run {
                return dryrun::dry_run(&args, file, &catalog).await;
            }
            submit(&args, file, &catalog).await
        }
    }
}

async fn cancel(args: &Args, run_id: &str, task: Option<&str>) -> u8 {
    let r = async {
        let store = Store::connect(&args.common.redis, &args.common.namespace, 2).await?;
        let mut conn = store.conn().await?;
        let idx = match task {
            None => None,
            Some(name) => {
                let snap = store.snapshot(&mut conn, run_id).await?;
                match snap.specs.iter().position(|s| s.name == name) {
                    Some(i) => Some(i as u32),
                    None => return Ok(Err(format!("run {run_id} has no task named `{name}`"))),
                }
            }
        };
        let c = store.cancel(&mut conn, run_id, idx).await?;
        if c.queued > 0 {
            // Dependents its cancellation started (`all_done`, `one_failed`): into the streams
            // now (any worker's upkeep would do it otherwise).
            store.flush_outbox(&mut conn, run_id).await?;
        }
        Ok::<_, StoreError>(Ok(c))
    }
    .await;
    match r {
        Ok(Ok(c)) => {
            if !args.output.quiet {
                eprintln!(
                    "cancelled {} task{} that had not started; asked workers to stop {} running; run {}",
                    c.cancelled,
                    if c.cancelled == 1 { "" } else { "s" },
                    c.flagged,
                    if c.finished { "finished" } else { "ends when those stop" }
                );
            }
            exit::OK
        }
        Ok(Err(msg)) => {
            eprintln!("zo-submit: {msg}");
            exit::INVALID
        }
        Err(e) => fail_queue(&e),
    }
}

async fn dead(args: &Args, action: &DeadAction) -> u8 {
    let store = match Store::connect(&args.common.redis, &args.common.namespace, 2).await {
        Ok(s) => s,
        Err(e) => return fail_queue(&e),
    };
    let letters = async {
        let mut conn = store.conn().await?;
        store.dead_letters(&mut conn).await
    }
    .await;
    let letters = match letters {
        Ok(l) => l,
        Err(e) => return fail_queue(&e),
    };
    match action {
        DeadAction::List => {
            if letters.is_empty() {
                stdout("no dead letters\n");
            }
            for d in &letters {
                let what = match &d.task {
                    Some((run, idx)) => format!("run {run} task #{idx} `{}`", d.task_name),
                    None => format!(
                        "malformed entry ({})",
                        d.fields
                            .iter()
                            .filter(|(k, _)| k == "stream" || k == "entry")
                            .map(|(k, v)| format!("{k}={v}"))
                            .collect::<Vec<_>>()
                            .join(" ")
                    ),
                };
                // Dead letters hold whatever was in the stream: one line, control characters escaped.
                stdout(&format!("{}\n", escape_line(&format!("{}  {what}: {}", d.id, d.reason))));
            }
            exit::OK
        }
        DeadAction::Retry { id, all } => {
            let chosen: Vec<&DeadLetter> = match (id, all) {
                (Some(id), _) => match letters.iter().find(|d| &d.id == id) {
                    Some(d) => vec![d],
                    None => {
                        eprintln!("zo-submit: no dead letter with id {id}; list them with `zo-submit dead`");
                        return exit::INVALID;
                    }
                },
                (None, true) => letters.iter().filter(|d| d.task.is_some()).collect(),
                (None, false) => {
                    eprintln!("zo-submit: name a dead letter id or pass --all");
                    return exit::INVALID;
                }
            };
            let mut code = exit::OK;
            for d in chosen {
                let Some((run, idx)) = &d.task else {
                    eprintln!("zo-submit: {} is a malformed entry, not a task; there is nothing to run again", d.id);
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
                match r {
                    Ok(Some(n)) => eprintln!(
                        "{}: task `{}` of run {run} queued again as attempt {n}; follow it with: zo-submit watch {run}",
                        d.id, d.task_name
                    ),
                    Ok(None) => eprintln!("{}: task `{}` of run {run} is no longer failed; dead letter removed", d.id, d.task_name),
                    Err(e) => return fail_queue(&e),
                }
            }
            code
        }
    }
}

fn plan_only(args: &Args, file: &Path, catalog: &Catalog) -> u8 {
    match load_tasks(file, catalog, args.common.max_file_size) {
        Ok(tf) => {
            stdout(&plan::render(&tf, catalog));
            exit::OK
        }
        Err(code) => code,
    }
}

async fn submit(args: &Args, file: &Path, catalog: &Catalog) -> u8 {
    let tf = match load_tasks(file, catalog, args.common.max_file_size) {
        Ok(t) => t,
        Err(code) => return code,
    };
    let store = match Store::connect(&args.common.redis, &args.common.namespace, 4).await {
        Ok(s) => s,
        Err(e) => return fail_queue(&e),
    };
    let run_id = store::new_run_id();
    let taskfile::TaskFile { path, name, tasks: specs, limits, .. } = tf;
    let created = async {
        let mut conn = store.conn().await?;
        let mut instances: Vec<&str> = specs.iter().map(|s| s.instance.as_str()).collect();
        instances.sort_unstable();
        instances.dedup();
        for i in instances {
            store.ensure_group(&mut conn, i).await?;
        }
        store.prune_run_index(&mut conn, args.retention).await?;
        let new = NewRun { run_id: &run_id, file: &path, name: name.as_deref(), specs: &specs, retention: args.retention, limits: &limits };
        let blobs = store.create_run(&mut conn, &new).await?;
        Ok::<_, StoreError>((conn, blobs))
    }
    .await;
    let (mut conn, blobs) = match created {
        Ok(c) => c,
        Err(e) => return fail_queue(&e),
    };
    // The run exists; if enqueuing fails now, the outbox keeps the jobs and `watch` finishes it.
    let local = LocalSpecs { specs: &specs, blobs: &blobs };
    if let Err(e) = store.flush_outbox_with(&mut conn, &run_id, Some(local)).await {
        eprintln!("zo-submit: run {run_id} was created but its first jobs could not be enqueued yet ({e}); `zo-submit watch {run_id}` will enqueue them");
        return exit::INFRA;
    }
    drop(conn);
    if args.detach {
        stdout(&format!("{run_id}\n"));
        if !args.output.quiet {
            eprintln!("submitted {} as run {run_id}; follow it with: zo-submit watch {run_id}", tasks_word(specs.len()));
        }
        // The process exits next: the OS takes back the run's specs at once, where freeing them
        // one by one took ~4 ms of a 20,000-task submit.
        std::mem::forget(blobs);
        std::mem::forget(specs);
        return exit::OK;
    }
    drop(blobs);
    if !args.output.quiet {
        eprintln!("submitted {} from {} as run {run_id} (Ctrl-C detaches; the run continues)", tasks_word(specs.len()), path);
    }
    watch::follow_and_report(&store, &run_id, catalog, &args.output, Some(&specs)).await
}

/// Writes the document and reports, prints the dashboard, returns the exit code.
pub fn finish(doc: &report::ResultsDocument, out: &cli::OutputOpts) -> u8 {
    let targets = output::Targets {
        results_dir: &out.results_dir,
        output_dir: &out.output_dir,
        json: !out.no_save,
        markdown: !out.no_report,
        outputs: !out.no_save,
    };
    let written = output::write_all(doc, &targets);
    if out.json {
        let body = serde_json::to_string_pretty(doc).expect("document serializes");
        stdout(&format!("{body}\n"));
    } else if !out.quiet {
        stdout(&report::dashboard(doc));
    }
    if !out.quiet {
        for p in written.json.iter().chain(&written.markdown) {
            eprintln!("wrote {}", p.display());
        }
        for p in &written.outputs {
            eprintln!("wrote {}", p.display());
        }
    }
    for e in &written.errors {
        eprintln!("zo-submit: {e}");
    }
    let _ = std::io::stdout().flush();
    // A result that could not be written is a failure too, whatever the tasks did.
    if doc.succeeded() && written.errors.is_empty() {
        exit::OK
    } else {
        exit::TASKS_FAILED
    }
}
