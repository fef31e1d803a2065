//! The allocator both binaries use, and how it gives memory back (each `main.rs` includes
//! this file with `#[path]`). mimalloc: parsing, enqueueing and the worker's hot path allocate
//! many small, short-lived buffers; glibc malloc was ~15% of their CPU (BENCHMARKS.md).

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Has mimalloc give freed memory back to the system after 1 ms instead of its default 1 s.
/// - zo-submit frees its parse tree while it builds the job specs, and its parse threads'
///   freed pages are not reused by the main thread: with the default delay all of it stays
///   resident until exit (peak RSS of a 100,000-task submit: 169 MB; with 1 ms: 106–119 MB,
///   equally fast).
/// - A worker's template render that stops at its fuel frees up to 64 MiB at once; with the
///   default delay that memory, and what growing it copied, stays resident while the next
///   render allocates again (one render's peak: 161 MiB, with 1 ms 114 MiB; scenario 1 of the
///   benchmarks unchanged).
#[allow(unsafe_code)]
pub fn purge_freed_memory_promptly() {
    extern "C" {
        /// mimalloc's option setter, linked in with the allocator above.
        fn mi_option_set(option: std::ffi::c_int, value: std::ffi::c_long);
    }
    /// `mi_option_purge_delay`: 15 in mimalloc 2 and 3 (the option enum keeps its values).
    const PURGE_DELAY: std::ffi::c_int = 15;
    // SAFETY: sets one integer option of the allocator, which mimalloc allows at any time.
    unsafe { mi_option_set(PURGE_DELAY, 1) };
}
