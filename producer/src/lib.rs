//! `zo-submit`: validates a task file, creates its run in Redis, follows it to the end and
//! writes the reports. The run lives in Redis, not here: this process may exit (`--detach`,
//! Ctrl-C) and re-attach with `zo-submit watch RUN` without stalling the run.
//!
//! - [`cli`] — arguments.
//! - [`watch`] — following a run (live progress).
//! - [`output`] — writing the JSON document, the Markdown and HTML reports and `output_file`s.
//! - `inspect` — the read commands: `runs`, `show`, `queues`, `workers`, `dead`, `export`.

mod approve;
pub mod argv;
pub mod cli;
mod dryrun;
pub mod exit;
mod finish;
mod inspect;
#[path = "../../common/binshared/logging.rs"]
pub mod logging;
pub mod output;
mod resume;
mod session;
mod term;
pub mod watch;
mod with_worker;

pub use cli::{DEFAULT_REDIS, VERSION};
use exit::fail_queue;
pub use finish::finish;
use session::{connect, load_catalog, load_tasks};
use term::{stdout, tasks_word};

use std::path::Path;

use zo_common::catalog::Catalog;
use zo_common::store::{self, LocalSpecs, NewRun, Store, StoreError};
use zo_common::{plan, taskfile};

use crate::cli::{Args, CatalogOpts, Command, ConnOpts, InputOpts, SubmitArgs};

pub use logging::color_on;

/// Run ids as typed — `latest`, or a unique prefix of one — made whole before any command
/// reads them. Best effort: without Redis the ids stay as typed (each command then says why
/// it cannot go on), and an id no run has stays too (the command says it does not exist).
async fn resolve_run_ids(args: &mut Args) -> Result<(), u8> {
    let (ids, conn): (Vec<&mut String>, &ConnOpts) = match &mut args.command {
        Some(
            Command::Watch { run_id, conn, .. }
            | Command::Cancel { run_id, conn, .. }
            | Command::Approve { run_id, conn, .. }
            | Command::Reject { run_id, conn, .. }
            | Command::Resume { run_id, conn, .. }
            | Command::Show { run_id, conn, .. }
            | Command::Export { run_id, conn, .. },
        ) => (vec![run_id], conn),
        Some(Command::Diff { run_a, run_b, conn, .. }) => (vec![run_a, run_b], conn),
        _ => return Ok(()),
    };
    for id in &ids {
        if let Err(e) = store::check_run_id(id) {
            eprintln!("zo-submit: {e}");
            return Err(exit::INVALID);
        }
    }
    let Ok(store) = Store::connect(&conn.redis, &conn.namespace, 1).await else { return Ok(()) };
    let Ok(mut c) = store.conn().await else { return Ok(()) };
    for id in ids {
        match store.resolve_run(&mut c, id).await {
            Ok(store::RunRef::Run(whole)) => *id = whole,
            Ok(store::RunRef::Ambiguous(runs)) => {
                eprintln!(
                    "zo-submit: `{}` is the start of several runs: {}; give more of the id",
                    zo_common::text::escape_line(id),
                    runs.join(", ")
                );
                return Err(exit::INVALID);
            }
            Ok(store::RunRef::NoRuns) => {
                eprintln!("zo-submit: `latest`: namespace `{}` holds no run", zo_common::text::escape_line(&conn.namespace));
                return Err(exit::INVALID);
            }
            Err(_) => return Ok(()),
        }
    }
    Ok(())
}

/// Runs the command line; returns the process exit code.
pub async fn run(mut args: Args) -> u8 {
    if let Err(code) = resolve_run_ids(&mut args).await {
        return code;
    }
    let catalog = |opts: &CatalogOpts| load_catalog(opts);
    match &args.command {
        Some(Command::Plan { file, input }) => match catalog(&input.catalog) {
            Ok(c) => plan_only(input, file, &c),
            Err(code) => code,
        },
        Some(Command::Execute(submit)) => submit_file(submit).await,
        Some(Command::Watch { run_id, conn, catalog: cat, output }) => {
            let (store, catalog) = match (connect(conn, 4).await, catalog(cat)) {
                (Ok(s), Ok(c)) => (s, c),
                (Err(code), _) | (_, Err(code)) => return code,
            };
            watch::follow_and_report(&store, run_id, &catalog, output, None).await
        }
        Some(Command::Cancel { run_id, task, conn, quiet }) => cancel(conn, run_id, task.as_deref(), quiet.quiet).await,
        Some(Command::Resume { run_id, task, detach, conn, catalog: cat, output }) => match catalog(cat) {
            Ok(c) => resume::resume(conn, output, run_id, task.as_deref(), *detach, &c).await,
            Err(code) => code,
        },
        Some(Command::Approve { run_id, stage, conn, quiet }) => approve::decide(conn, quiet.quiet, run_id, stage, None).await,
        Some(Command::Reject { run_id, stage, reason, conn, quiet }) => {
            approve::decide(conn, quiet.quiet, run_id, stage, Some(reason)).await
        }
        Some(Command::Runs { status, limit, json, conn, archive }) => inspect::runs(conn, *status, *limit, json.json, archive).await,
        Some(Command::Show { run_id, task, json, conn, catalog: cat, archive }) => match catalog(cat) {
            Ok(c) => inspect::show(conn, run_id, task.as_deref(), json.json, &c, archive).await,
            Err(code) => code,
        },
        Some(Command::Diff { run_a, run_b, changed, json, conn, catalog: cat, archive }) => match catalog(cat) {
            Ok(c) => inspect::diff(conn, [run_a, run_b], *changed, json.json, &c, archive).await,
            Err(code) => code,
        },
        Some(Command::Search { text, tag, instance, limit, json, conn, catalog: cat, archive }) => match catalog(cat) {
            Ok(c) => {
                let q = zo_common::report::history::Query { text, tag: tag.as_deref(), instance: instance.as_deref() };
                inspect::search(conn, &q, *limit, json.json, &c, archive).await
            }
            Err(code) => code,
        },
        Some(Command::Stats { since, limit, json, conn, catalog: cat, archive }) => match catalog(cat) {
            Ok(c) => inspect::stats(conn, *since, *limit, json.json, &c, archive).await,
            Err(code) => code,
        },
        Some(Command::Queues { json, conn, catalog: cat }) => match catalog(cat) {
            Ok(c) => inspect::queues(conn, &c, json.json).await,
            Err(code) => code,
        },
        Some(Command::Workers { json, conn }) => inspect::workers(conn, json.json).await,
        Some(Command::Dead { action, filter, json, conn }) => inspect::dead(conn, action.as_ref(), filter, json.json).await,
        Some(Command::Export { run_id, format, output, conn, catalog: cat, archive }) => match catalog(cat) {
            Ok(c) => inspect::export(conn, run_id, *format, output.as_deref(), &c, archive).await,
            Err(code) => code,
        },
        Some(Command::Completions { shell }) => {
            use clap::CommandFactory;
            let mut out = Vec::new();
            clap_complete::generate(*shell, &mut Args::command(), "zo-submit", &mut out);
            stdout(&String::from_utf8_lossy(&out));
            exit::OK
        }
        None => submit_file(&args.submit).await,
    }
}

/// Tasks of each batch a submission's plan names (`zo-submit plan` names all).
const PLAN_TASKS_PER_BATCH: usize = 12;

/// `zo-submit FILE` (or `execute FILE`): validate, then dry-run or submit.
async fn submit_file(args: &SubmitArgs) -> u8 {
    let catalog = match load_catalog(&args.input.catalog) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let Some(file) = &args.file else {
        eprintln!("zo-submit: no task file given; usage: zo-submit FILE (see --help)");
        return exit::INVALID;
    };
    if let Some(msg) = with_worker::misplaced(&args.worker) {
        eprintln!("zo-submit: {msg}");
        return exit::INVALID;
    }
    if args.dry_run {
        return dryrun::dry_run(args, file, &catalog).await;
    }
    submit(args, file, &catalog).await
}

async fn cancel(conn_opts: &ConnOpts, run_id: &str, task: Option<&str>, quiet: bool) -> u8 {
    let r = async {
        let store = Store::connect(&conn_opts.redis, &conn_opts.namespace, 2).await?;
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
        if store.run_meta(&mut conn, run_id).await?.finished {
            return Ok(Ok(None));
        }
        let c = store.cancel(&mut conn, run_id, idx).await?;
        if c.queued > 0 {
            // Dependents its cancellation started (`all_done`, `one_failed`): into the streams
            // now (any worker's upkeep would do it otherwise).
            store.flush_outbox(&mut conn, run_id).await?;
        }
        Ok::<_, StoreError>(Ok(Some(c)))
    }
    .await;
    match r {
        Ok(Ok(None)) => {
            if !quiet {
                eprintln!("run {run_id} had already finished; nothing was cancelled");
            }
            exit::OK
        }
        Ok(Ok(Some(c))) => {
            if !quiet {
                eprintln!(
                    "cancelled {} task{} that had not started; asked workers to stop {} running; run {}",
                    c.cancelled,
                    if c.cancelled == 1 { "" } else { "s" },
                    c.flagged,
                    if c.finished {
                        "finished"
                    } else if c.flagged > 0 {
                        "ends when those stop"
                    } else {
                        "ends with what is running"
                    }
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

fn plan_only(input: &InputOpts, file: &Path, catalog: &Catalog) -> u8 {
    match load_tasks(file, catalog, input.max_file_size) {
        Ok(tf) => {
            stdout(&plan::render(&tf, catalog));
            exit::OK
        }
        Err(code) => code,
    }
}

async fn submit(args: &SubmitArgs, file: &Path, catalog: &Catalog) -> u8 {
    let tf = match load_tasks(file, catalog, args.input.max_file_size) {
        Ok(t) => t,
        Err(code) => return code,
    };
    let store = match connect(&args.conn, 4).await {
        Ok(s) => s,
        Err(code) => return code,
    };
    if !args.output.quiet {
        // As the original tool did: what will run, batch by batch, before it runs.
        eprintln!("{}", plan::render_brief(&tf, catalog, PLAN_TASKS_PER_BATCH));
    }
    if args.worker.with_worker.is_none() {
        return create_and_follow(args, tf, catalog, &store, &args.output).await;
    }
    let worker = match with_worker::start(&args.worker, &args.conn, &args.output.results_dir, &store, args.output.quiet).await {
        Ok(w) => w,
        Err(code) => return code,
    };
    let out = cli::OutputOpts { own_worker: args.worker.with_worker.clone(), ..args.output.clone() };
    let code = create_and_follow(args, tf, catalog, &store, &out).await;
    worker.stop(args.output.quiet).await;
    code
}

/// Creates the run, enqueues its first jobs, and follows it (or prints its id, detached).
async fn create_and_follow(args: &SubmitArgs, tf: taskfile::TaskFile, catalog: &Catalog, store: &Store, out: &cli::OutputOpts) -> u8 {
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
    watch::follow_and_report(store, &run_id, catalog, out, Some(&specs)).await
}
