//! `zo-submit FILE --with-worker CONFIG`: one command starts a worker, runs the file and stops
//! the worker; the original tool's options for it; the worker never outlives zo-submit. (The
//! CCR options, with the real CCR, are in `tests/ccr.rs`.)

use std::process::{Command, Stdio};
use std::time::Duration;

use zo_e2e::*;

const LIMIT: Duration = Duration::from_secs(120);

fn worker_yaml(drain: &str) -> String {
    format!("executor: {{ kind: simulate }}\ndrain_timeout: {drain}\ninstances: [ {{ name: fast, concurrency: 4 }} ]\n")
}

#[test]
fn one_command_runs_a_file_with_its_own_worker_and_stops_it() {
    adopt_orphans();
    let redis = Redis::start();
    let ns = namespace("withworker");
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "own-worker.yaml", &worker_yaml("5s"));
    write(dir.path(), "t.yaml", &simulated_tasks(6, "50ms"));
    let out =
        submit(dir.path(), &redis.url(), &ns, &["t.yaml", "--with-worker", "own-worker.yaml", "--results-dir", "res", "--json"], LIMIT);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let doc = json_doc(&out);
    assert_eq!(doc["summary"]["successful"], 6, "{}", out.stderr);
    // Where its log went is said, and the log is the worker's.
    let log_line = out.stderr.lines().find(|l| l.starts_with("started worker ")).unwrap_or_else(|| panic!("{}", out.stderr));
    let log = dir.path().join(log_line.rsplit("its log: ").next().unwrap());
    assert!(log.starts_with(dir.path().join("res")) && log.file_name().unwrap().to_str().unwrap().starts_with("worker_"), "{log_line}");
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("worker started") && text.contains("shutting down"), "{text}");
    assert!(out.stderr.contains("stopping the worker (pid "), "{}", out.stderr);
    // Stopped and reaped: nothing runs with its config any more, and it left the namespace.
    // (zo-submit passes the config as given: `--config own-worker.yaml`.)
    assert!(!process_alive("--config own-worker.yaml"), "the worker outlived zo-submit");
    let workers = submit_json(dir.path(), &redis.url(), &ns, &["workers", "--json"], LIMIT);
    assert_eq!(workers.as_array().map(Vec::len), Some(0), "{workers}");
    // Its results name it as the worker that ran them.
    let id = log_line.trim_start_matches("started worker ").split(' ').next().unwrap();
    assert!(doc["tasks"].as_array().unwrap().iter().all(|t| t["worker"] == id), "{}", doc["tasks"]);
}

#[test]
fn the_worker_dies_with_zo_submit() {
    adopt_orphans();
    let redis = Redis::start();
    let ns = namespace("withworkerkill");
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "orphan-worker.yaml", &worker_yaml("1s"));
    write(dir.path(), "t.yaml", &simulated_tasks(2, "60s"));
    let args = ["t.yaml", "--with-worker", "orphan-worker.yaml", "--no-save", "--no-report"];
    let mut child = spawn_submit(dir.path(), &redis.url(), &ns, &args, &dir.path().join("submit.err"));
    let needle = "--config orphan-worker.yaml";
    wait_until("the run to start on the worker", LIMIT, || {
        std::fs::read_to_string(dir.path().join("submit.err")).unwrap_or_default().contains("submitted 2 tasks")
    });
    assert!(process_alive(needle), "the worker runs");
    child.kill().unwrap();
    child.wait().unwrap();
    // SIGTERM from the kernel when its parent died, then a drain of at most 1 s.
    wait_until("the orphaned worker to exit", Duration::from_secs(30), || !process_alive(needle));
}

#[test]
fn the_worker_options_need_with_worker_and_reach_the_worker() {
    let redis = Redis::start();
    let ns = namespace("withworkeropts");
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "w.yaml", &worker_yaml("1s"));
    write(dir.path(), "t.yaml", &simulated_tasks(1, "10ms"));
    let cases: [(&[&str], &str); 5] = [
        (&["--ssh-host", "box"], "--ssh-host applies to --with-worker CONFIG"),
        (&["--windows-host", "192.0.2.1"], "--windows-host applies to --with-worker CONFIG"),
        (&["--no-start-ccr"], "--no-start-ccr applies to --with-worker CONFIG"),
        (&["--stop-after"], "--stop-after applies to --with-worker CONFIG"),
        (&["--no-start-ccr", "--stop-after"], "--no-start-ccr, --stop-after apply to --with-worker CONFIG"),
    ];
    for (opts, want) in cases {
        let mut args = vec!["t.yaml"];
        args.extend_from_slice(opts);
        let out = submit(dir.path(), &redis.url(), &ns, &args, LIMIT);
        assert_eq!(out.code, 2, "{opts:?}: {}", out.stderr);
        assert!(out.stderr.starts_with(&format!("zo-submit: {want}")), "{opts:?}: {}", out.stderr);
        assert_eq!(out.stderr.lines().count(), 1, "one line: {}", out.stderr);
    }
    // Passed to the worker, which refuses what its config cannot take: zo-submit exits with
    // the worker's code and its words, and submits nothing.
    let out = submit(dir.path(), &redis.url(), &ns, &["t.yaml", "--with-worker", "w.yaml", "--ssh-host", "box"], LIMIT);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("the worker exited (exit status: 2) before it started"), "{}", out.stderr);
    assert!(out.stderr.contains("--ssh-host applies to an `executor: { kind: ssh }` config;"), "{}", out.stderr);
    let runs = submit_json(dir.path(), &redis.url(), &ns, &["runs", "--json"], LIMIT);
    assert_eq!(runs.as_array().map(Vec::len), Some(0), "nothing was submitted: {runs}");
    for conflict in ["--detach", "--dry-run"] {
        let out = submit(dir.path(), &redis.url(), &ns, &["t.yaml", "--with-worker", "w.yaml", conflict], LIMIT);
        assert_eq!(out.code, 2, "{}", out.stderr);
        assert!(out.stderr.contains(&format!("'--with-worker <CONFIG>' cannot be used with '{conflict}'")), "{}", out.stderr);
    }
}

/// With no Redis at the default URL, the message says how to start one.
#[test]
fn no_redis_at_the_default_url_says_how_to_start_one() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "t.yaml", &simulated_tasks(1, "10ms"));
    write(dir.path(), "w.yaml", &worker_yaml("1s"));
    // The default URL, in a network namespace of its own where nothing listens on 6379.
    let out = Command::new("unshare")
        .args(["--net", "sh", "-c", "ip link set lo up; exec \"$0\" \"$@\""])
        .arg(bin("zo-submit"))
        .args(["t.yaml", "--with-worker", "w.yaml"])
        .current_dir(dir.path())
        .env_remove("ZO_REDIS_URL")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.starts_with("zo-submit: cannot reach Redis at redis://127.0.0.1:6379: "), "{stderr}");
    assert!(stderr.contains("start one with `redis-server --daemonize yes"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(!dir.path().join("results").exists(), "nothing written, no worker started");
}
