//! `zo-worker` binary: parse arguments, set up logging, run the service until a signal.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use tokio_util::sync::CancellationToken;
use zo_worker::config::WorkerConfig;
use zo_worker::service::{self, WorkerError, WorkerOptions};

/// Take jobs from Redis and run them on the execution host.
#[derive(Parser, Debug)]
#[command(name = "zo-worker", version, about)]
struct Args {
    /// Worker config file (YAML); see configs/README.md.
    #[arg(long, short = 'c', env = "ZO_WORKER_CONFIG")]
    config: PathBuf,
    /// Redis URL.
    #[arg(long = "redis", env = "ZO_REDIS_URL")]
    redis: Option<String>,
    /// Key namespace.
    #[arg(long, env = "ZO_NAMESPACE")]
    namespace: Option<String>,
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
    let (config, catalog) = match WorkerConfig::load(&args.config) {
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
