//! The helper as a task sees it: scripts and prompts, short and past the spill size.

use tokio::io::AsyncReadExt as _;

use crate::exec::local::LocalExecutor;
use crate::exec::{Executor, SPILL_OVER};

/// Runs `script` through a local helper: its stdout, stderr and exit code.
async fn through_helper(ex: &LocalExecutor, script: &str, prompt: Option<&str>) -> (String, String, Option<i32>) {
    let mut s = ex.spawn(script, prompt).await.expect("spawned");
    drop(s.stdin);
    let (mut out, mut err) = (String::new(), String::new());
    s.stdout.read_to_string(&mut out).await.expect("stdout");
    s.stderr.read_to_string(&mut err).await.expect("stderr");
    (out, err, s.wait.await.expect("exit"))
}

/// The helper runs a task's script as the other start paths do — short ones from the
/// environment, long ones (past the spill size) from a private file it removes once read —
/// with the prompt in `ZO_PROMPT` (or its file), quotes and `$` untouched. The long ones
/// are past Linux's 128 KiB limit for one environment string, so only the file can carry
/// them.
#[tokio::test]
async fn the_helper_runs_short_and_long_scripts_and_prompts() {
    if std::process::Command::new("perl").arg("-e1").status().map(|s| !s.success()).unwrap_or(true) {
        panic!("perl is needed for the helper (Debian: perl-base)");
    }
    let ex = LocalExecutor::new(true, None);
    let (out, err, code) = through_helper(&ex, "printf '%s|' \"$1\" 'it'\\''s' '$HOME'; exit 3", None).await;
    assert_eq!((out.as_str(), code), ("|it's|$HOME|", Some(3)), "{err}");
    let pad = "#".repeat(200 * 1024);
    let long = format!("{pad}\nprintf '%s' \"${{#ZO_PROMPT_FILE}}:${{ZO_SCRIPT_FILE:-gone}}:${{ZO_PROMPT:0:3}}\"; cat \"${{ZO_PROMPT_FILE:-/dev/null}}\" | wc -c\n");
    let prompt = "p".repeat(200 * 1024);
    let (out, err, code) = through_helper(&ex, &long, Some(&prompt)).await;
    assert_eq!(code, Some(0), "{err}");
    // The script's file is unset and removed before it runs; the prompt's is there to read.
    let mut parts = out.trim().splitn(3, ':');
    assert!(parts.next().is_some_and(|n| n != "0"), "a long prompt travels in a file: {out}");
    assert_eq!(parts.next(), Some("gone"), "{out}");
    let rest = parts.next().unwrap_or("");
    assert!(rest.ends_with(&(200 * 1024).to_string()), "the prompt file holds the whole prompt: {out}");
    assert!(long.len() > 2 * SPILL_OVER);
    ex.close().await;
}

/// Long text travels as a private file: mode 0600 in a directory of mode 0700, and both are
/// gone once the task ends — through the helper and when the task is started directly.
#[tokio::test]
async fn spill_files_are_private_and_removed() {
    for helper in [true, false] {
        let ex = LocalExecutor::new(helper, None);
        let pad = "#".repeat(SPILL_OVER + 1024);
        let script = format!("{pad}\nstat -c '%a %n' \"$ZO_PROMPT_FILE\" \"$(dirname \"$ZO_PROMPT_FILE\")\" | tr '\\n' ' '\n");
        let prompt = "p".repeat(SPILL_OVER + 1024);
        let (out, err, code) = through_helper(&ex, &script, Some(&prompt)).await;
        assert_eq!(code, Some(0), "helper {helper}: {err}");
        let f: Vec<&str> = out.split_whitespace().collect();
        assert_eq!((f.first().copied(), f.get(2).copied()), (Some("600"), Some("700")), "helper {helper}: {out}");
        let (file, dir) = (std::path::Path::new(f[1]), std::path::Path::new(f[3]));
        assert!(!file.exists(), "helper {helper}: the prompt's file outlived its task: {}", file.display());
        // The directory is the helper's (or the worker's, started directly): it goes with it.
        assert!(dir.exists(), "helper {helper}: {}", dir.display());
        ex.close().await;
        assert!(!dir.exists(), "helper {helper}: the private directory outlived the executor: {}", dir.display());
    }
}
