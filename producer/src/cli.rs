//! Command-line arguments of `zo-submit`. Each subcommand takes only the options that mean
//! something for it: the connection (`ConnOpts`) where it reads Redis, the task-file options
//! (`InputOpts`) where it reads a file, the output options where it writes reports.

use std::path::PathBuf;
use std::time::Duration;

/// `--version`: the package version and the git commit built.
pub const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (", env!("ZO_GIT_COMMIT"), ")");

/// `--redis` when none is given.
pub const DEFAULT_REDIS: &str = "redis://127.0.0.1:6379";

pub use clap::ColorChoice;
use clap::{Args as ClapArgs, Parser, Subcommand, ValueEnum};

const EXAMPLES: &str = "\
Examples:
  zo-submit tasks/example.yaml               submit, watch live, write results/ and reports
  zo-submit tasks/example.yaml --dry-run     plan with duration and cost estimates
  zo-submit tasks/example.yaml --detach      print the run id and exit; the run goes on
  zo-submit watch RUN                        re-attach to a run
  zo-submit runs                             the latest runs
  zo-submit show RUN \"Task name\"             one task's full record, attempts included
  zo-submit queues; zo-submit workers        what waits where, who works on it
  zo-submit export RUN --format html -o r.html

Exit codes: 0 every task succeeded (or was skipped because its condition did not hold or its
stage was rejected); 1 a task failed, timed out or was cancelled, or was skipped because of a
failure; 2 invalid input or usage; 3 Redis or other infrastructure unreachable; 130 interrupted.";

/// Submit a task file to the Zo Worker Swarm queue, watch it run, and write the reports.
#[derive(Parser, Debug)]
#[command(
    name = "zo-submit",
    version = VERSION,
    about,
    after_help = EXAMPLES,
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true
)]
pub struct Args {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub submit: SubmitArgs,
    #[command(flatten)]
    pub log: crate::logging::LogOpts,
}

/// Submitting a task file (`zo-submit FILE`, `zo-submit execute FILE`).
#[derive(ClapArgs, Debug, Clone)]
pub struct SubmitArgs {
    /// The task file (YAML) to submit.
    pub file: Option<PathBuf>,
    /// Validate and print the plan with estimates of duration and cost (from earlier runs in
    /// Redis) and whether the run is ready (Redis, live workers, limits); submits nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// With --dry-run: exit 3 when the run is not ready to execute.
    #[arg(long, requires = "dry_run")]
    pub require_ready: bool,
    /// Submit, print the run id and exit; re-attach with `zo-submit watch RUN`.
    #[arg(long)]
    pub detach: bool,
    /// How long a finished run's data stays in Redis.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "7d")]
    pub retention: Duration,
    #[command(flatten)]
    pub conn: ConnOpts,
    #[command(flatten)]
    pub input: InputOpts,
    #[command(flatten)]
    pub output: OutputOpts,
    #[command(flatten)]
    pub worker: WithWorkerOpts,
}

/// `--with-worker` and the original tool's options for the worker it starts.
#[derive(ClapArgs, Debug, Clone, Default)]
pub struct WithWorkerOpts {
    /// Start `zo-worker --config CONFIG` for this run (same Redis and namespace), wait until it
    /// heartbeats, run the file, then stop it and wait for its drain. It serves the whole
    /// namespace meanwhile, and never outlives zo-submit. Its log goes to the results directory.
    #[arg(long, value_name = "CONFIG", conflicts_with_all = ["dry_run", "detach"])]
    pub with_worker: Option<PathBuf>,
    /// With --with-worker: run tasks on this SSH host instead of the config's `executor.host`
    /// (an ssh executor only).
    #[arg(long, value_name = "HOST")]
    pub ssh_host: Option<String>,
    /// With --with-worker: the execution host reaches CCR at ADDR, this machine's address as
    /// that host sees it (`ccr.reach: callback`, `callback_host: ADDR`). CCR then listens on
    /// ADDR, not on loopback: anyone on that network can reach it (its APIKEY guards it).
    #[arg(long, value_name = "ADDR")]
    pub windows_host: Option<String>,
    /// With --with-worker: use the CCR instances `zo-worker ccr start` left running instead of
    /// starting them for the run, and leave them running (exit 3 when one is not running).
    #[arg(long)]
    pub no_start_ccr: bool,
    /// With --with-worker: stop the CCR instances after the run too (as `zo-worker ccr stop`),
    /// also those --no-start-ccr used.
    #[arg(long)]
    pub stop_after: bool,
}

/// Where the queue is.
#[derive(ClapArgs, Debug, Clone)]
pub struct ConnOpts {
    /// Redis URL.
    #[arg(long = "redis", env = "ZO_REDIS_URL", default_value = DEFAULT_REDIS)]
    pub redis: String,
    /// Key namespace.
    #[arg(long, env = "ZO_NAMESPACE", default_value = "zo")]
    pub namespace: String,
}

/// The instance catalog: names, models, ports, limits and prices of the instances.
#[derive(ClapArgs, Debug, Clone)]
pub struct CatalogOpts {
    /// Instance catalog (default: the built-in five instances).
    #[arg(long, env = "ZO_CATALOG")]
    pub catalog: Option<PathBuf>,
}

/// Reading a task file.
#[derive(ClapArgs, Debug, Clone)]
pub struct InputOpts {
    #[command(flatten)]
    pub catalog: CatalogOpts,
    /// Largest task file accepted, in bytes (suffixes K, M, G: powers of 1024).
    #[arg(long, default_value = "256M", value_parser = parse_size)]
    pub max_file_size: u64,
}

/// `--json`: the command's answer as JSON on stdout (documented fields), nothing else there.
#[derive(ClapArgs, Debug, Clone, Copy)]
pub struct JsonOpt {
    /// Print JSON (stable, documented fields) instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// `1048576`, `512K`, `256M`, `1G`.
fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let (num, mult) = match t.char_indices().last() {
        Some((i, c)) if c.eq_ignore_ascii_case(&'k') => (&t[..i], 1u64 << 10),
        Some((i, c)) if c.eq_ignore_ascii_case(&'m') => (&t[..i], 1 << 20),
        Some((i, c)) if c.eq_ignore_ascii_case(&'g') => (&t[..i], 1 << 30),
        _ => (t, 1),
    };
    num.trim()
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(mult))
        .filter(|&n| n > 0)
        .ok_or_else(|| format!("`{s}` is not a size; use bytes or a number with K, M or G (e.g. 256M)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_take_suffixes() {
        assert_eq!(parse_size("1000"), Ok(1000));
        assert_eq!(parse_size("512K"), Ok(512 << 10));
        assert_eq!(parse_size("256m"), Ok(256 << 20));
        assert_eq!(parse_size("1G"), Ok(1 << 30));
        assert!(parse_size("x").is_err() && parse_size("0").is_err() && parse_size("-1M").is_err());
    }

    #[test]
    fn the_arguments_are_consistent() {
        use clap::CommandFactory;
        Args::command().debug_assert();
    }

    /// Subcommands refuse options that mean nothing for them.
    #[test]
    fn subcommands_take_only_their_options() {
        let ok = |a: &[&str]| Args::try_parse_from(a).map(|_| ()).map_err(|e| e.to_string());
        assert!(ok(&["zo-submit", "runs", "--json", "--limit", "5", "--status", "running"]).is_ok());
        assert!(ok(&["zo-submit", "execute", "t.yaml", "--detach"]).is_ok());
        assert!(ok(&["zo-submit", "t.yaml", "--dry-run", "--require-ready"]).is_ok());
        assert!(ok(&["zo-submit", "dead", "--run", "R", "--json"]).is_ok());
        assert!(ok(&["zo-submit", "dead", "delete", "--all", "--run", "R"]).is_ok());
        for bad in [
            vec!["zo-submit", "queues", "--no-save"],
            vec!["zo-submit", "plan", "t.yaml", "--redis", "redis://x"],
            vec!["zo-submit", "workers", "--results-dir", "r"],
            vec!["zo-submit", "show", "R", "--detach"],
            vec!["zo-submit", "completions", "bash", "--namespace", "x"],
        ] {
            assert!(ok(&bad).is_err(), "{bad:?} was accepted");
        }
    }
}

#[derive(ClapArgs, Debug, Clone)]
pub struct OutputOpts {
    /// Do not write the JSON results file, nor the tasks' `output_file`s.
    #[arg(long)]
    pub no_save: bool,
    /// Do not write the Markdown and HTML reports.
    #[arg(long)]
    pub no_report: bool,
    /// Print no progress and no dashboard; errors only.
    #[arg(long, short = 'q')]
    pub quiet: bool,
    /// Print the results document (JSON) on stdout and nothing else there.
    #[arg(long)]
    pub json: bool,
    /// Where results and reports are written.
    #[arg(long, default_value = "results")]
    pub results_dir: PathBuf,
    /// The directory tasks' `output_file`s are written in (subdirectories inside it are
    /// created; nothing is written outside it, symlinks included).
    #[arg(long, default_value = ".")]
    pub output_dir: PathBuf,
    /// Colour in the live view: `auto` (on a terminal, unless NO_COLOR is set), `always`,
    /// `never`.
    #[arg(long, value_enum, default_value = "auto")]
    pub color: ColorChoice,
    #[command(flatten)]
    pub archive: ArchiveOpt,
    /// The config of the worker `--with-worker` started, which stops with this process (the
    /// Ctrl-C question and the detach message say so).
    #[arg(skip)]
    pub own_worker: Option<PathBuf>,
}

/// The run archive.
#[derive(ClapArgs, Debug, Clone, Default)]
pub struct ArchiveOpt {
    /// Keep each finished run's results document as DIR/RUN.json (once per run, whoever sees
    /// it finish first), and read from there the runs Redis no longer holds.
    #[arg(long, env = "ZO_ARCHIVE", value_name = "DIR")]
    pub archive: Option<PathBuf>,
}

impl Args {
    /// The `--color` of the command line's live view (auto where it has none).
    pub fn color(&self) -> ColorChoice {
        match &self.command {
            None => self.submit.output.color,
            Some(Command::Execute(s)) => s.output.color,
            Some(Command::Watch { output, .. } | Command::Resume { output, .. }) => output.color,
            Some(_) => ColorChoice::Auto,
        }
    }
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Validate a task file and print its execution plan (no Redis needed).
    #[command(
        after_help = "Examples:\n  zo-submit plan tasks/example.yaml\n  zo-submit plan tasks/big.yaml --catalog configs/instances.yaml"
    )]
    Plan {
        file: PathBuf,
        #[command(flatten)]
        input: InputOpts,
    },
    /// Submit a task file (the same as `zo-submit FILE`).
    #[command(
        after_help = "Examples:\n  zo-submit execute tasks/example.yaml\n  zo-submit execute tasks/example.yaml --detach --retention 30d"
    )]
    Execute(SubmitArgs),
    /// Re-attach to a run: show its progress, then the dashboard and reports.
    #[command(
        after_help = "Examples:\n  zo-submit watch RUN\n  zo-submit watch RUN --json --no-save > results.json\n  zo-submit watch RUN --quiet; echo \"exit $?\""
    )]
    Watch {
        run_id: String,
        #[command(flatten)]
        conn: ConnOpts,
        #[command(flatten)]
        catalog: CatalogOpts,
        #[command(flatten)]
        output: OutputOpts,
    },
    /// Cancel a run, or one task of it (it counts as failed for its dependents' trigger
    /// rules). Queued tasks stop at once; running ones within about a second, their
    /// processes killed.
    #[command(after_help = "Examples:\n  zo-submit cancel RUN\n  zo-submit cancel RUN --task \"Deploy\"")]
    Cancel {
        run_id: String,
        /// Cancel only this task.
        #[arg(long)]
        task: Option<String>,
        #[command(flatten)]
        conn: ConnOpts,
        #[command(flatten)]
        quiet: QuietOpt,
    },
    /// Run again every task of a finished run that failed, timed out or was cancelled (and
    /// what they skipped), reusing the results of those that succeeded; then follow it.
    #[command(after_help = "Examples:\n  zo-submit resume RUN\n  zo-submit resume RUN --task \"Run Tests\" --detach")]
    Resume {
        run_id: String,
        /// Resume only this task (and what depends on it).
        #[arg(long)]
        task: Option<String>,
        /// Print the run id and exit instead of following it.
        #[arg(long)]
        detach: bool,
        #[command(flatten)]
        conn: ConnOpts,
        #[command(flatten)]
        catalog: CatalogOpts,
        #[command(flatten)]
        output: OutputOpts,
    },
    /// Approve a `pipeline:` stage that waits for approval: its tasks start.
    #[command(after_help = "Examples:\n  zo-submit approve RUN Production")]
    Approve {
        run_id: String,
        stage: String,
        #[command(flatten)]
        conn: ConnOpts,
        #[command(flatten)]
        quiet: QuietOpt,
    },
    /// Reject a stage that waits for approval: its tasks are skipped (class `rejected`),
    /// which is no failure of the run.
    #[command(after_help = "Examples:\n  zo-submit reject RUN Production --reason \"not during the freeze\"")]
    Reject {
        run_id: String,
        stage: String,
        /// Why (recorded in the results).
        #[arg(long, default_value = "")]
        reason: String,
        #[command(flatten)]
        conn: ConnOpts,
        #[command(flatten)]
        quiet: QuietOpt,
    },
    /// The runs in Redis, newest first: status, progress, failures, cost, file.
    #[command(after_help = "Examples:\n  zo-submit runs\n  zo-submit runs --status running\n  zo-submit runs --limit 100 --json")]
    Runs {
        /// Only running or only finished runs.
        #[arg(long, value_enum)]
        status: Option<RunStatusFilter>,
        /// At most this many runs.
        #[arg(long, default_value_t = 20)]
        limit: usize,
        #[command(flatten)]
        json: JsonOpt,
        #[command(flatten)]
        conn: ConnOpts,
        #[command(flatten)]
        archive: ArchiveOpt,
    },
    /// A run's summary and tasks (running or finished), or one task's full record with every
    /// attempt. Writes no files.
    #[command(after_help = "Examples:\n  zo-submit show RUN\n  zo-submit show RUN \"Analyze Code\"\n  zo-submit show RUN --json")]
    Show {
        run_id: String,
        /// One task, by name.
        task: Option<String>,
        #[command(flatten)]
        json: JsonOpt,
        #[command(flatten)]
        conn: ConnOpts,
        #[command(flatten)]
        catalog: CatalogOpts,
        #[command(flatten)]
        archive: ArchiveOpt,
    },
    /// Each instance's job streams by priority: length, pending (running), waiting, oldest
    /// entry's age, consumers.
    #[command(after_help = "Examples:\n  zo-submit queues\n  zo-submit queues --json | jq '.[] | select(.waiting > 0)'")]
    Queues {
        #[command(flatten)]
        json: JsonOpt,
        #[command(flatten)]
        conn: ConnOpts,
        #[command(flatten)]
        catalog: CatalogOpts,
    },
    /// Live workers: id, host, instances, jobs in flight, heartbeat age, version.
    #[command(after_help = "Examples:\n  zo-submit workers\n  zo-submit workers --json | jq '.[] | {id, in_flight, heartbeat_age}'")]
    Workers {
        #[command(flatten)]
        json: JsonOpt,
        #[command(flatten)]
        conn: ConnOpts,
    },
    /// List dead-lettered jobs (with age, run and reason), run them again, or delete them.
    #[command(
        args_conflicts_with_subcommands = true,
        after_help = "Examples:\n  zo-submit dead\n  zo-submit dead --run RUN --json\n  zo-submit dead retry ID\n  zo-submit dead delete --all --run RUN"
    )]
    Dead {
        #[command(subcommand)]
        action: Option<DeadAction>,
        #[command(flatten)]
        filter: DeadFilter,
        #[command(flatten)]
        json: JsonOpt,
        #[command(flatten)]
        conn: ConnOpts,
    },
    /// Write a run's report (finished or not) as JSON, Markdown or HTML, on stdout or to a file.
    #[command(
        after_help = "Examples:\n  zo-submit export RUN --format html -o report.html\n  zo-submit export RUN --format md > report.md"
    )]
    Export {
        run_id: String,
        #[arg(long, value_enum, default_value = "json")]
        format: ExportFormat,
        /// Write here instead of stdout, as the shell's `>` would (through a link, into a FIFO
        /// or device, over a file keeping its mode; `-` is stdout).
        #[arg(long, short = 'o')]
        output: Option<PathBuf>,
        #[command(flatten)]
        conn: ConnOpts,
        #[command(flatten)]
        catalog: CatalogOpts,
        #[command(flatten)]
        archive: ArchiveOpt,
    },
    /// Two runs task by task: status, duration, tokens and cost of each same-named task, and a
    /// unified diff of their outputs.
    #[command(
        after_help = "Examples:\n  zo-submit diff RUN1 RUN2\n  zo-submit diff RUN1 RUN2 --changed\n  zo-submit diff RUN1 RUN2 --json --archive runs/"
    )]
    Diff {
        run_a: String,
        run_b: String,
        /// Only the tasks whose status or output differs.
        #[arg(long)]
        changed: bool,
        #[command(flatten)]
        json: JsonOpt,
        #[command(flatten)]
        conn: ConnOpts,
        #[command(flatten)]
        catalog: CatalogOpts,
        #[command(flatten)]
        archive: ArchiveOpt,
    },
    /// Find text (case-insensitive) in the tasks of stored runs: names, descriptions, outputs,
    /// errors, command output.
    #[command(
        after_help = "Examples:\n  zo-submit search \"rate limit\"\n  zo-submit search vulnerab --tag security --instance code-review\n  zo-submit search timeout --json --archive runs/"
    )]
    Search {
        text: String,
        /// Only tasks with this tag.
        #[arg(long)]
        tag: Option<String>,
        /// Only tasks of this instance.
        #[arg(long)]
        instance: Option<String>,
        /// Look at most at this many runs, newest first.
        #[arg(long, default_value_t = 50)]
        limit: usize,
        #[command(flatten)]
        json: JsonOpt,
        #[command(flatten)]
        conn: ConnOpts,
        #[command(flatten)]
        catalog: CatalogOpts,
        #[command(flatten)]
        archive: ArchiveOpt,
    },
    /// Success metrics and a comparison of the instances over the finished runs of a period:
    /// completion and timeout rates, median and p95 durations and queue waits, tokens, cost,
    /// retries by error class.
    #[command(
        after_help = "Examples:\n  zo-submit stats\n  zo-submit stats --since 30d --archive runs/\n  zo-submit stats --json | jq .by_instance"
    )]
    Stats {
        /// Runs that finished within this long.
        #[arg(long, value_parser = humantime::parse_duration, default_value = "7d")]
        since: Duration,
        /// At most this many runs, newest first.
        #[arg(long, default_value_t = 500)]
        limit: usize,
        #[command(flatten)]
        json: JsonOpt,
        #[command(flatten)]
        conn: ConnOpts,
        #[command(flatten)]
        catalog: CatalogOpts,
        #[command(flatten)]
        archive: ArchiveOpt,
    },
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    #[command(
        after_help = "Examples:\n  zo-submit completions bash > /etc/bash_completion.d/zo-submit\n  zo-submit completions zsh > \"${fpath[1]}/_zo-submit\"\n  zo-submit completions fish > ~/.config/fish/completions/zo-submit.fish"
    )]
    Completions { shell: clap_complete::Shell },
}

/// `--quiet` for commands that only report what they did.
#[derive(ClapArgs, Debug, Clone, Copy)]
pub struct QuietOpt {
    /// Print nothing but errors.
    #[arg(long, short = 'q')]
    pub quiet: bool,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunStatusFilter {
    Running,
    Finished,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportFormat {
    Json,
    Md,
    Html,
}

/// Which dead letters a `dead` command looks at.
#[derive(ClapArgs, Debug, Clone, Default)]
pub struct DeadFilter {
    /// Only those of this run.
    #[arg(long)]
    pub run: Option<String>,
}

#[derive(Subcommand, Debug)]
pub enum DeadAction {
    /// List the dead letters (the default).
    List {
        #[command(flatten)]
        filter: DeadFilter,
        #[command(flatten)]
        json: JsonOpt,
        #[command(flatten)]
        conn: ConnOpts,
    },
    /// Run dead-lettered tasks again as a new attempt (their skipped dependents too).
    Retry {
        /// The dead letter's id (first column of `zo-submit dead`).
        id: Option<String>,
        /// Every dead letter that names a task (of `--run` only, with it).
        #[arg(long, conflicts_with = "id")]
        all: bool,
        #[command(flatten)]
        filter: DeadFilter,
        #[command(flatten)]
        conn: ConnOpts,
    },
    /// Delete dead letters without running them again.
    Delete {
        /// The dead letter's id.
        id: Option<String>,
        /// Every dead letter (of `--run` only, with it).
        #[arg(long, conflicts_with = "id")]
        all: bool,
        #[command(flatten)]
        filter: DeadFilter,
        #[command(flatten)]
        conn: ConnOpts,
    },
}
