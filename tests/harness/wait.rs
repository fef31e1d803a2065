//! Waiting for things to happen outside the test: a condition, a process.

use std::process::Command;
use std::time::{Duration, Instant};

/// Whether any process's command line contains `needle`.
pub fn process_alive(needle: &str) -> bool {
    let out = Command::new("pgrep").args(["-f", needle]).output().expect("pgrep");
    out.status.success()
}

/// Waits (polling every 100 ms) until `f` holds; fails the test after `limit`.
pub fn wait_until(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}
