//! `zo-submit`: validates a task file, creates its run in Redis, follows it to the end and
//! writes the reports. The run lives in Redis, not here: this process may exit (`--detach`,
//! Ctrl-C) and re-attach with `zo-submit watch RUN` without stalling the run.
//!
//! - [`cli`] — arguments.
//! - [`watch`] — following a run (live progress).
//! - [`output`] — writing the JSON document, the Markdown report and `output_file`s.

pub mod cli;
pub mod output;
pub mod watch;

use std::io::Write as _;
use std::path::Path;

use zo_common::catalog::Catalog;
use zo_common::keys::Keys;
use zo_common::model::JobSpec;
use zo_common::queue::{self, NewRun, QueueError};
use zo_common::{plan, report, taskfile};

use crate::cli::{Args, Command};

/// Exit codes (documented in the README and `--help`).
pub mod exit {
    pub const OK: u8 = 0;
    pub const TASKS_FAILED: u8 = 1;
    pub const INVALID: u8 = 2;
    pub const INFRA: u8 = 3;
    pub const INTERRUPTED: u8 = 130;
}

fn fail_queue(e: &QueueError) -> u8 {
    eprintln!("zo-submit: {e}");
    match e {
        QueueError::NoSuchRun(_) => exit::INVALID,
        e if e.is_infrastructure() => exit::INFRA,
        _ => exit::INFRA,
    }
}

fn load_catalog(args: &Args) -> Result<Catalog, u8> {
    Catalog::load(args.common.catalog.as_deref()).map_err(|e| {
        eprintln!("zo-submit: {e}");
        exit::INVALID
    })
}

fn load_tasks(path: &Path, catalog: &Catalog) -> Result<taskfile::TaskFile, u8> {
    taskfile::load(path, catalog).map_err(|e| {
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
    match &args.command {
        Some(Command::Plan { file }) => plan_only(file, &catalog),
        Some(Command::Watch { run_id }) => {
            let keys = Keys::new(&args.common.namespace);
            let pool = match queue::connect(&args.common.redis, 4).await {
                Ok(p) => p,
                Err(e) => return fail_queue(&e),
            };
            watch::follow_and_report(&pool, &keys, run_id, &catalog, &args.output).await
        }
        None => {
            let Some(file) = &args.file else {
                eprintln!("zo-submit: no task file given; usage: zo-submit FILE (see --help)");
                return exit::INVALID;
            };
            if args.dry_run {
                return plan_only(file, &catalog);
            }
            submit(&args, file, &catalog).await
        }
    }
}

fn plan_only(file: &Path, catalog: &Catalog) -> u8 {
    match load_tasks(file, catalog) {
        Ok(tf) => {
            print!("{}", plan::render(&tf, catalog));
            let _ = std::io::stdout().flush();
            exit::OK
        }
        Err(code) => code,
    }
}

async fn submit(args: &Args, file: &Path, catalog: &Catalog) -> u8 {
    let tf = match load_tasks(file, catalog) {
        Ok(t) => t,
        Err(code) => return code,
    };
    let pool = match queue::connect(&args.common.redis, 4).await {
        Ok(p) => p,
        Err(e) => return fail_queue(&e),
    };
    let keys = Keys::new(&args.common.namespace);
    let run_id = queue::new_run_id();
    let specs = JobSpec::from_file(&run_id, &tf);
    let created = async {
        let mut conn = queue::conn(&pool).await?;
        let mut instances: Vec<&str> = specs.iter().map(|s| s.instance.as_str()).collect();
        instances.sort_unstable();
        instances.dedup();
        for i in instances {
            queue::ensure_group(&mut *conn, &keys, i).await?;
        }
        queue::prune_run_index(&mut *conn, &keys, args.retention).await?;
        queue::create_run(
            &mut *conn,
            &keys,
            &NewRun { run_id: &run_id, file: &tf.path, name: tf.name.as_deref(), specs: &specs, retention: args.retention },
        )
        .await?;
        Ok::<_, QueueError>(conn)
    }
    .await;
    let mut conn = match created {
        Ok(c) => c,
        Err(e) => return fail_queue(&e),
    };
    // The run exists; if enqueuing fails now, the outbox keeps the jobs and `watch` finishes it.
    if let Err(e) = queue::flush_outbox(&mut *conn, &keys, &run_id).await {
        eprintln!("zo-submit: run {run_id} was created but its first jobs could not be enqueued yet ({e}); `zo-submit watch {run_id}` will enqueue them");
        return exit::INFRA;
    }
    drop(conn);
    if args.detach {
        println!("{run_id}");
        if !args.output.quiet {
            eprintln!("submitted {} tasks as run {run_id}; follow it with: zo-submit watch {run_id}", specs.len());
        }
        return exit::OK;
    }
    if !args.output.quiet {
        eprintln!("submitted {} tasks from {} as run {run_id} (Ctrl-C detaches; the run continues)", specs.len(), tf.path);
    }
    watch::follow_and_report(&pool, &keys, &run_id, catalog, &args.output).await
}

/// Writes the document and reports, prints the dashboard, returns the exit code.
pub fn finish(doc: &report::ResultsDocument, out: &cli::OutputOpts) -> u8 {
    let written = output::write_all(doc, &out.results_dir, !out.no_save, !out.no_report);
    if out.json {
        let body = serde_json::to_string_pretty(doc).expect("document serializes");
        println!("{body}");
    } else if !out.quiet {
        print!("{}", report::dashboard(doc));
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
    if doc.summary.successful == doc.summary.total_tasks {
        exit::OK
    } else {
        exit::TASKS_FAILED
    }
}
