//! Command-line arguments of `zo-submit`.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args as ClapArgs, Parser, Subcommand};

/// Submit a task file to the Zo Worker Swarm queue, watch it run, and write the reports.
///
/// Exit codes: 0 every task succeeded; 1 a task failed, timed out, was skipped or cancelled;
/// 2 invalid input or usage; 3 Redis or other infrastructure unreachable; 130 interrupted.
#[derive(Parser, Debug)]
#[command(name = "zo-submit", version, about, args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct Args {
    #[command(subcommand)]
    pub command: Option<Command>,
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
    pub common: Common,
    #[command(flatten)]
    pub output: OutputOpts,
}

#[derive(ClapArgs, Debug, Clone)]
pub struct Common {
    /// Redis URL.
    #[arg(long = "redis", env = "ZO_REDIS_URL", default_value = "redis://127.0.0.1:6379", global = true)]
    pub redis: String,
    /// Key namespace.
    #[arg(long, env = "ZO_NAMESPACE", default_value = "zo", global = true)]
    pub namespace: String,
    /// Instance catalog (default: the built-in five instances).
    #[arg(long, env = "ZO_CATALOG", global = true)]
    pub catalog: Option<PathBuf>,
    /// Largest task file accepted, in bytes (suffixes K, M, G: powers of 1024).
    #[arg(long, default_value = "256M", value_parser = parse_size, global = true)]
    pub max_file_size: u64,
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
    use super::parse_size;

    #[test]
    fn sizes_take_suffixes() {
        assert_eq!(parse_size("1000"), Ok(1000));
        assert_eq!(parse_size("512K"), Ok(512 << 10));
        assert_eq!(parse_size("256m"), Ok(256 << 20));
        assert_eq!(parse_size("1G"), Ok(1 << 30));
        assert!(parse_size("x").is_err() && parse_size("0").is_err() && parse_size("-1M").is_err());
    }
}

#[derive(ClapArgs, Debug, Clone)]
pub struct OutputOpts {
    /// Do not write the JSON results file, nor the tasks' `output_file`s.
    #[arg(long, global = true)]
    pub no_save: bool,
    /// Do not write the Markdown report.
    #[arg(long, global = true)]
    pub no_report: bool,
    /// Print no progress and no dashboard; errors only.
    #[arg(long, short = 'q', global = true)]
    pub quiet: bool,
    /// Print the results document (JSON) on stdout and nothing else there.
    #[arg(long, global = true)]
    pub json: bool,
    /// Where results and reports are written.
    #[arg(long, default_value = "results", global = true)]
    pub results_dir: PathBuf,
    /// The directory tasks' `output_file`s are written in (subdirectories inside it are
    /// created; nothing is written outside it, symlinks included).
    #[arg(long, default_value = ".", global = true)]
    pub output_dir: PathBuf,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Validate a task file and print its execution plan (no Redis needed).
    Plan { file: PathBuf },
    /// Re-attach to a run: show its progress, then the dashboard and reports.
    Watch { run_id: String },
    /// Cancel a run, or one task of it (it counts as failed for its dependents' trigger
    /// rules). Queued tasks stop at
    /// once; running ones within about a second, their processes killed.
    Cancel {
        run_id: String,
        /// Cancel only this task.
        #[arg(long)]
        task: Option<String>,
    },
    /// Run again every task of a finished run that failed, timed out or was cancelled (and
    /// what they skipped), reusing the results of those that succeeded; then follow it.
    Resume {
        run_id: String,
        /// Resume only this task (and what depends on it).
        #[arg(long)]
        task: Option<String>,
        /// Print the run id and exit instead of following it.
        #[arg(long)]
        detach: bool,
    },
    /// Approve a `pipeline:` stage that waits for approval: its tasks start.
    Approve { run_id: String, stage: String },
    /// Reject a stage that waits for approval: its tasks are skipped (class `rejected`),
    /// which is no failure of the run.
    Reject {
        run_id: String,
        stage: String,
        /// Why (recorded in the results).
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// List dead-lettered jobs, or run them again.
    Dead {
        #[command(subcommand)]
        action: Option<DeadAction>,
    },
}

#[derive(Subcommand, Debug)]
pub enum DeadAction {
    /// List the dead letters (the default).
    List,
    /// Run dead-lettered tasks again as a new attempt (their skipped dependents too).
    Retry {
        /// The dead letter's id (first column of `zo-submit dead`).
        id: Option<String>,
        /// Every dead letter that names a task.
        #[arg(long, conflicts_with = "id")]
        all: bool,
    },
}
