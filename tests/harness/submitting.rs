//! Starting `zo-submit` against a test's Redis and namespace: the command every helper that
//! runs it builds on, and a watcher started and left running.

use std::fs;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use super::bin;

/// `zo-submit ARGS` run in `dir` against `redis_url` and namespace `ns`, stdin closed.
pub(super) fn submit_command(dir: &Path, redis_url: &str, ns: &str, args: &[&str]) -> Command {
    let mut c = Command::new(bin("zo-submit"));
    c.args(args).current_dir(dir).env("ZO_REDIS_URL", redis_url).env("ZO_NAMESPACE", ns).stdin(Stdio::null());
    c
}

/// `zo-submit ARGS` started and left running (an attached watcher a test kills or waits
/// for), its stdout dropped and its stderr going to `stderr`, which the test reads meanwhile.
pub fn spawn_submit(dir: &Path, redis_url: &str, ns: &str, args: &[&str], stderr: &Path) -> Child {
    submit_command(dir, redis_url, ns, args)
        .stdout(Stdio::null())
        .stderr(fs::File::create(stderr).expect("stderr file"))
        .spawn()
        .expect("zo-submit")
}
