//! `zo-worker` binary: parse arguments, set up logging, run the service until a signal.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;
use zo_worker::cli;
use zo_worker::config::WorkerConfig;
use zo_worker::service::{self, WorkerError, WorkerOptions};

#[path = "../../common/binshared/logging.rs"]
mod logging;

#[path = "../../common/binshared/alloc.rs"]
mod alloc;

/// Shown after `--help`.
const EXAMPLES: &str = "\
Examples:
  zo-worker --config configs/worker.yaml                       serve the instances it lists
  zo-worker --config configs/worker.yaml --metrics-addr 127.0.0.1:9464
  zo-worker --config configs/worker.yaml --log-format json --log-file worker.jsonl
  zo-worker --config configs/worker.yaml ccr status            its CCR instances
  zo-worker --config configs/worker.yaml secrets check         which keys were found where
  zo-worker completions bash > /etc/bash_completion.d/zo-worker

Exit codes: 0 clean shutdown; 1 a `ccr` or `secrets` command failed; 2 invalid config or
usage, or a start-up check failed; 3 Redis unreachable, or a CCR that --use-running-ccr
needs is not running.";

/// Take jobs from Redis and run them on the execution host.
#[derive(Parser, Debug)]
#[command(name = "zo-worker", version = zo_worker::VERSION, about, after_help = EXAMPLES)]
struct Args {
    #[command(subcommand)]
    command: Option<Cmd>,
    /// Worker config file (YAML); see configs/README.md.
    #[arg(long, short = 'c', env = "ZO_WORKER_CONFIG", global = true)]
    config: Option<PathBuf>,
    /// Redis URL.
    #[arg(long = "redis", env = "ZO_REDIS_URL", global = true)]
    redis: Option<String>,
    /// Key namespace.
    #[arg(long, env = "ZO_NAMESPACE", global = true)]
    namespace: Option<String>,
    /// Colour in the log: `auto` (on a terminal, unless NO_COLOR is set), `always`, `never`.
    #[arg(long, value_enum, default_value = "auto", global = true)]
    color: clap::ColorChoice,
    #[command(flatten)]
    log: logging::LogOpts,
    /// Serve Prometheus metrics at http://ADDR/metrics (e.g. 127.0.0.1:9464); off by default.
    #[arg(long, env = "ZO_METRICS_ADDR")]
    metrics_addr: Option<std::net::SocketAddr>,
    /// Run tasks on this SSH host instead of the config's `executor.host` (ssh executor only).
    #[arg(long, value_name = "HOST")]
    ssh_host: Option<String>,
    /// Make CCR listen on ADDR instead of loopback, for an execution host that calls this
    /// machine there (`ccr.reach: callback` with `callback_host: ADDR`). ADDR must be this
    /// machine's address as the execution host sees it; CCR is then reachable there by
    /// anyone on that network (its APIKEY still guards it).
    #[arg(long, value_name = "ADDR")]
    ccr_callback_host: Option<String>,
    /// Use the CCR instances `zo-worker ccr start` left running (their state files give
    /// port and key) instead of starting them; they keep running after the worker stops.
    /// Exit 3 when one is not running or does not answer.
    #[arg(long)]
    use_running_ccr: bool,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Manage the Claude Code Router instances of this worker's config.
    #[command(
        after_help = "Examples:\n  zo-worker --config configs/worker.yaml ccr start\n  zo-worker --config configs/worker.yaml ccr status --json\n  zo-worker --config configs/worker.yaml ccr stop --instance fast"
    )]
    Ccr {
        #[command(subcommand)]
        action: CcrAction,
    },
    /// Say which API keys the CCR configs need and where each was found (never the values).
    #[command(after_help = "Examples:\n  zo-worker --config configs/worker.yaml secrets check")]
    Secrets {
        #[command(subcommand)]
        action: SecretsAction,
    },
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    #[command(
        after_help = "Examples:\n  zo-worker completions bash > /etc/bash_completion.d/zo-worker\n  zo-worker completions fish > ~/.config/fish/completions/zo-worker.fish"
    )]
    Completions { shell: clap_complete::Shell },
}

#[derive(Subcommand, Debug)]
enum CcrAction {
    /// Start instances that keep running after this command (pid files in the state dir).
    Start {
        #[arg(long)]
        instance: Option<String>,
    },
    /// Stop instances (SIGTERM, grace period, SIGKILL).
    Stop {
        #[arg(long)]
        instance: Option<String>,
    },
    /// Instance, model, port, pid, health, uptime, restarts.
    Status {
        #[arg(long)]
        instance: Option<String>,
        /// JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand, Debug)]
enum SecretsAction {
    Check,
}

/// Makes this process non-dumpable: processes of the same user that lack `CAP_SYS_PTRACE`
/// (a task run as the worker's user) can no longer read its `/proc/PID/environ` — the
/// provider keys — or its memory. Programs it starts are dumpable again (exec resets it), so
/// CCRs get a cleared environment instead (`ccr.rs`).
#[allow(unsafe_code)]
fn not_dumpable() {
    // SAFETY: prctl(PR_SET_DUMPABLE, 0) changes one flag of this process and takes no pointers.
    let rc = unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
    if rc != 0 {
        eprintln!("zo-worker: warning: could not make the process non-dumpable: {}", std::io::Error::last_os_error());
    }
}

fn main() -> ExitCode {
    not_dumpable();
    alloc::purge_freed_memory_promptly();
    let args = match Args::try_parse() {
        Ok(a) => a,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    if let Some(Cmd::Completions { shell }) = &args.command {
        use clap::CommandFactory;
        clap_complete::generate(*shell, &mut Args::command(), "zo-worker", &mut std::io::stdout());
        return ExitCode::SUCCESS;
    }
    if let Err(e) = logging::init(&args.log, "info", logging::color_on(args.color)) {
        eprintln!("zo-worker: {e}");
        return ExitCode::from(cli::exit::INVALID);
    }
    let Some(config_path) = args.config.clone() else {
        eprintln!("zo-worker: no config given; pass --config FILE (or set ZO_WORKER_CONFIG)");
        return ExitCode::from(2);
    };
    let (mut config, catalog) = match WorkerConfig::load(&config_path) {
        Ok(c) => c,
        Err(e) => {
            // Every problem at once, one line each.
            for line in e.to_string().lines() {
                eprintln!("zo-worker: {line}");
            }
            return ExitCode::from(2);
        }
    };
    if let Err(e) = config.override_with(args.ssh_host.as_deref(), args.ccr_callback_host.as_deref()) {
        eprintln!("zo-worker: {e}");
        return ExitCode::from(cli::exit::INVALID);
    }
    if args.use_running_ccr && config.ccr.is_none() {
        eprintln!("zo-worker: --use-running-ccr applies to a config with a `ccr:` section; {} has none", config_path.display());
        return ExitCode::from(cli::exit::INVALID);
    }
    let redis_url = args.redis.or_else(|| config.redis.clone()).unwrap_or_else(|| "redis://127.0.0.1:6379".into());
    let namespace = args.namespace.or_else(|| config.namespace.clone()).unwrap_or_else(|| "zo".into());
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("zo-worker: cannot start the runtime: {e}");
            return ExitCode::from(3);
        }
    };
    if let Some(cmd) = args.command {
        return rt.block_on(run_command(cmd, config, catalog));
    }
    rt.block_on(async move {
        let shutdown = CancellationToken::new();
        let force = CancellationToken::new();
        let signals = tokio::spawn(watch_signals(shutdown.clone(), force.clone()));
        let metrics_addr = args.metrics_addr.or(config.metrics_addr);
        let use_running_ccr = args.use_running_ccr;
        let r = service::run(WorkerOptions { redis_url, namespace, config, catalog, metrics_addr, use_running_ccr }, shutdown, force).await;
        signals.abort();
        let _ = signals.await;
        match r {
            Ok(()) => ExitCode::SUCCESS,
            Err(WorkerError::Store(e @ zo_common::store::StoreError::BadUrl { .. })) => {
                eprintln!("zo-worker: {e}");
                ExitCode::from(cli::exit::INVALID)
            }
            Err(WorkerError::Store(e)) if e.is_infrastructure() => {
                eprintln!("zo-worker: {e}");
                ExitCode::from(cli::exit::INFRA)
            }
            Err(WorkerError::Config(e)) => {
                eprintln!("zo-worker: {e}");
                ExitCode::from(cli::exit::INVALID)
            }
            Err(WorkerError::Missing(e)) => {
                eprintln!("zo-worker: {e}");
                ExitCode::from(cli::exit::INFRA)
            }
            Err(e) => {
                eprintln!("zo-worker: {e}");
                ExitCode::from(cli::exit::FAILED)
            }
        }
    })
}

async fn run_command(cmd: Cmd, config: WorkerConfig, catalog: zo_common::catalog::Catalog) -> ExitCode {
    let Some(ccr_cfg) = config.ccr.clone() else {
        eprintln!("zo-worker: the config has no `ccr:` section; add one (see configs/README.md)");
        return ExitCode::from(cli::exit::INVALID);
    };
    let code = match cmd {
        Cmd::Secrets { action: SecretsAction::Check } => cli::secrets::check(&config, &ccr_cfg),
        Cmd::Ccr { action: CcrAction::Start { instance } } => cli::ccr::start(&config, &ccr_cfg, &catalog, instance.as_deref()).await,
        Cmd::Ccr { action: CcrAction::Stop { instance } } => cli::ccr::stop(&config, &ccr_cfg, &catalog, instance.as_deref()).await,
        Cmd::Ccr { action: CcrAction::Status { instance, json } } => cli::ccr::status(&config, &catalog, instance.as_deref(), json).await,
        Cmd::Completions { .. } => unreachable!("answered before the config is read"),
    };
    ExitCode::from(code)
}

/// First SIGINT/SIGTERM: drain. Second: stop running tasks now.
async fn watch_signals(shutdown: CancellationToken, force: CancellationToken) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
        return;
    };
    for n in 0..2 {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        if n == 0 {
            shutdown.cancel();
        } else {
            force.cancel();
        }
    }
}
