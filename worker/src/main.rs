//! `zo-worker` binary: parse arguments, set up logging, run the service until a signal.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;
use zo_worker::ccr;
use zo_worker::config::WorkerConfig;
use zo_worker::secrets::Secrets;
use zo_worker::service::{self, WorkerError, WorkerOptions};

// mimalloc: the hot path allocates many small, short-lived buffers; glibc malloc was ~15% of a
// worker's CPU in the throughput benchmark (BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Take jobs from Redis and run them on the execution host.
///
/// Exit codes: 0 clean shutdown; 1 a `ccr` command failed; 2 invalid config or usage; 3 Redis
/// unreachable.
#[derive(Parser, Debug)]
#[command(name = "zo-worker", version, about)]
struct Args {
    #[command(subcommand)]
    command: Option<Cmd>,
    /// Worker config file (YAML); see configs/README.md.
    #[arg(long, short = 'c', env = "ZO_WORKER_CONFIG", global = true)]
    config: Option<PathBuf>,
    /// Redis URL.
    #[arg(long = "redis", env = "ZO_REDIS_URL")]
    redis: Option<String>,
    /// Key namespace.
    #[arg(long, env = "ZO_NAMESPACE")]
    namespace: Option<String>,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Manage the Claude Code Router instances of this worker's config.
    Ccr {
        #[command(subcommand)]
        action: CcrAction,
    },
    /// Say which API keys the CCR configs need and where each was found (never the values).
    Secrets {
        #[command(subcommand)]
        action: SecretsAction,
    },
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

fn main() -> ExitCode {
    let args = match Args::try_parse() {
        Ok(a) => a,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let Some(config_path) = args.config.clone() else {
        eprintln!("zo-worker: no config given; pass --config FILE (or set ZO_WORKER_CONFIG)");
        return ExitCode::from(2);
    };
    let (config, catalog) = match WorkerConfig::load(&config_path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("zo-worker: {e}");
            return ExitCode::from(2);
        }
    };
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
        let r = service::run(WorkerOptions { redis_url, namespace, config, catalog }, shutdown, force).await;
        signals.abort();
        let _ = signals.await;
        match r {
            Ok(()) => ExitCode::SUCCESS,
            Err(WorkerError::Queue(e)) if e.is_infrastructure() => {
                eprintln!("zo-worker: {e}");
                ExitCode::from(3)
            }
            Err(WorkerError::Config(e)) => {
                eprintln!("zo-worker: {e}");
                ExitCode::from(2)
            }
            Err(e) => {
                eprintln!("zo-worker: {e}");
                ExitCode::from(1)
            }
        }
    })
}

async fn run_command(cmd: Cmd, config: WorkerConfig, catalog: zo_common::catalog::Catalog) -> ExitCode {
    let Some(ccr_cfg) = config.ccr.clone() else {
        eprintln!("zo-worker: the config has no `ccr:` section; add one (see configs/README.md)");
        return ExitCode::from(2);
    };
    let usage = |e: String| {
        eprintln!("zo-worker: {e}");
        ExitCode::from(2)
    };
    match cmd {
        Cmd::Secrets { action: SecretsAction::Check } => secrets_check(&config, &ccr_cfg, &Secrets::load(&ccr_cfg.bws, &ccr_cfg.env_file)),
        Cmd::Ccr { action } => {
            // Only start writes configs and needs secrets; stop and status read state files.
            match action {
                CcrAction::Start { instance } => {
                    let secrets = Secrets::load(&ccr_cfg.bws, &ccr_cfg.env_file);
                    let list = match ccr::prepare(&config, &catalog, &secrets, instance.as_deref()) {
                        Ok(l) => l,
                        Err(e) => return usage(e),
                    };
                    match ccr::cli_start(&list, &ccr_cfg).await {
                        Ok(lines) => {
                            lines.iter().for_each(|l| println!("{l}"));
                            ExitCode::SUCCESS
                        }
                        Err(e) => {
                            eprintln!("zo-worker: {e}");
                            ExitCode::from(1)
                        }
                    }
                }
                CcrAction::Stop { instance } => {
                    let list = match ccr::locate(&config, &catalog, instance.as_deref()) {
                        Ok(l) => l,
                        Err(e) => return usage(e),
                    };
                    ccr::cli_stop(&list, ccr_cfg.grace).await.iter().for_each(|l| println!("{l}"));
                    ExitCode::SUCCESS
                }
                CcrAction::Status { instance, json } => {
                    let list = match ccr::locate(&config, &catalog, instance.as_deref()) {
                        Ok(l) => l,
                        Err(e) => return usage(e),
                    };
                    let rows = ccr::cli_status(&list).await;
                    if json {
                        println!("{}", serde_json::to_string_pretty(&rows).expect("json"));
                    } else {
                        let mut t = comfy_table::Table::new();
                        t.load_preset(comfy_table::presets::UTF8_FULL_CONDENSED);
                        t.set_header(vec!["Instance", "Model", "Port", "PID", "Health", "Uptime", "Restarts", "Owner"]);
                        for r in rows {
                            t.add_row(vec![
                                r.instance,
                                r.model,
                                r.port.to_string(),
                                r.pid.map(|p| p.to_string()).unwrap_or_else(|| "-".into()),
                                if r.healthy { "ok".into() } else { "down".into() },
                                r.uptime_s
                                    .map(|s| humantime::format_duration(std::time::Duration::from_secs(s)).to_string())
                                    .unwrap_or_else(|| "-".into()),
                                r.restarts.to_string(),
                                r.owner,
                            ]);
                        }
                        println!("{t}");
                    }
                    ExitCode::SUCCESS
                }
            }
        }
    }
}

fn secrets_check(config: &WorkerConfig, ccr_cfg: &zo_worker::config::CcrConfig, secrets: &Secrets) -> ExitCode {
    if let Some(e) = &secrets.bws_error {
        println!("Bitwarden Secrets Manager: not used ({e})");
    }
    let mut missing = 0;
    for inst in &config.instances {
        let path = match &inst.ccr_config {
            Some(p) => config.resolve(p),
            None => config.resolve(&ccr_cfg.configs_dir).join(format!("{}.json", inst.name)),
        };
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) => {
                println!("{}: cannot read {}: {e}", inst.name, path.display());
                missing += 1;
                continue;
            }
        };
        for var in zo_worker::secrets::referenced_vars(&text) {
            match secrets.get(&var) {
                Some((_, src)) => println!("{}: {var} found in the {}", inst.name, src.as_str()),
                None => {
                    println!("{}: {var} MISSING (set it in Bitwarden, the environment or {})", inst.name, ccr_cfg.env_file.display());
                    missing += 1;
                }
            }
        }
    }
    if missing == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
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
