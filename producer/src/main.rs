//! `zo-submit` binary: parse arguments, run, map the outcome to an exit code.

use std::process::ExitCode;

use clap::Parser;
use zo_producer::cli::Args;
use zo_producer::exit;

#[path = "../../common/binshared/alloc.rs"]
mod alloc;

fn main() -> ExitCode {
    alloc::purge_freed_memory_promptly();
    let args = match Args::try_parse_from(zo_producer::argv::hoist_leading_options(std::env::args_os().collect())) {
        Ok(a) => a,
        Err(e) => {
            let code = if e.use_stderr() { exit::INVALID } else { exit::OK };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    if let Err(e) = zo_producer::logging::init(&args.log, "warn", zo_producer::color_on(args.color())) {
        eprintln!("zo-submit: {e}");
        return ExitCode::from(exit::INVALID);
    }
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
