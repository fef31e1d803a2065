//! `zo-submit` binary: parse arguments, run, map the outcome to an exit code.

use std::process::ExitCode;

use clap::Parser;
use zo_producer::cli::Args;
use zo_producer::exit;

// mimalloc: parsing and enqueueing allocate many small, short-lived buffers; glibc malloc was
// ~15% of a submit's CPU (BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let args = match Args::try_parse() {
        Ok(a) => a,
        Err(e) => {
            let code = if e.use_stderr() { exit::INVALID } else { exit::OK };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()))
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    // One worker thread besides the main one: zo-submit parses, then mostly waits on Redis; a
    // second worker only adds cross-thread wake-ups (a 20k-task submit: ~0.29 s with two,
    // ~0.21 s with one). A current-thread runtime is as fast but held ~28 MB more at the peak
    // of a 100k-task submit (the allocator keeps freed pages longer on a single busy thread).
    let rt = match tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("zo-submit: cannot start the runtime: {e}");
            return ExitCode::from(exit::INFRA);
        }
    };
    let code = rt.block_on(zo_producer::run(args));
    // A Ctrl-C prompt may still be blocked reading stdin: do not wait for it.
    rt.shutdown_timeout(std::time::Duration::from_millis(100));
    ExitCode::from(code)
}
