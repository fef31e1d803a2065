//! `zo-submit` binary: parse arguments, run, map the outcome to an exit code.

use std::process::ExitCode;

use clap::Parser;
use zo_producer::cli::Args;
use zo_producer::exit;

// mimalloc: parsing and enqueueing allocate many small, short-lived buffers; glibc malloc was
// ~15% of a submit's CPU (BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Has mimalloc give freed memory back to the system after 1 ms instead of its default 1 s.
/// A submit frees its parse tree while it builds the job specs, and its parse threads' freed
/// pages are not reused by the main thread: with the default delay all of it stays resident
/// until exit (peak RSS of a 100,000-task submit: 169 MB; with 1 ms: 106–119 MB, equally fast).
#[allow(unsafe_code)]
fn purge_freed_memory_promptly() {
    extern "C" {
        /// mimalloc's option setter, linked in with the allocator above.
        fn mi_option_set(option: std::ffi::c_int, value: std::ffi::c_long);
    }
    /// `mi_option_purge_delay`: 15 in mimalloc 2 and 3 (the option enum keeps its values).
    const PURGE_DELAY: std::ffi::c_int = 15;
    // SAFETY: sets one integer option of the allocator, which mimalloc allows at any time.
    unsafe { mi_option_set(PURGE_DELAY, 1) };
}

fn main() -> ExitCode {
    purge_freed_memory_promptly();
    let args = match Args::try_parse() {
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
