//! The worker's start-up checks through the real binary: a missing agent on the SSH host and
//! a missing `ccr` stop it at once with one line each and exit 2; an SSH host that is down
//! keeps it idle (the task stays queued, no attempt is spent) until the host is back.

use std::time::{Duration, Instant};

use serde_json::Value;
use zo_e2e::*;

const LIMIT: Duration = Duration::from_secs(120);

/// Runs `zo-worker --config` on `yaml` to its end (it must exit by itself).
fn worker_exits(dir: &std::path::Path, redis: &Redis, yaml: &str) -> Outcome {
    let cfg = write(dir, "bad-worker.yaml", yaml);
    worker_cmd(&["--config", cfg.to_str().unwrap()], &[("ZO_REDIS_URL", &redis.url()), ("ZO_NAMESPACE", &namespace("preflight"))])
}

#[test]
fn a_missing_agent_or_ccr_stops_the_worker_with_the_fix() {
    let redis = Redis::start();
    let sshd = Sshd::start();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let agent = "agent:\n  mode: command\n  command: \"/opt/nowhere/claude -p --output-format json\"\n";
    let out = worker_exits(d, &redis, &format!("{}{agent}instances: [ {{ name: fast }} ]\n", sshd.executor_yaml()));
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr.contains(
            "agent.command `/opt/nowhere/claude -p --output-format json`: `/opt/nowhere/claude` is not an executable on zo-e2e@127.0.0.1:"
        ) && out.stderr.contains("; install the Claude Code CLI there"),
        "{}",
        out.stderr
    );
    // Both problems at once: a missing `ccr` on this machine and the missing agent.
    let ccr = format!("ccr:\n  command: \"/opt/nowhere/ccr start\"\n  state_dir: {}\n", d.join("state").display());
    let out = worker_exits(d, &redis, &format!("{}{agent}{ccr}instances: [ {{ name: fast }} ]\n", sshd.executor_yaml()));
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr.contains(
            "ccr.command `/opt/nowhere/ccr start`: `/opt/nowhere/ccr` is not an executable on this machine; install Claude Code Router 2"
        ),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("`/opt/nowhere/claude` is not an executable on"), "{}", out.stderr);
    assert!(!std::fs::exists(d.join("state/fast")).unwrap_or(false), "no CCR was started");
    // A login the host refuses is the config's problem too.
    let refused = sshd
        .executor_yaml()
        .replace(&format!("identity_file: {}", sshd.path("id").display()), &format!("identity_file: {}", d.join("no-key").display()));
    let out = worker_exits(d, &redis, &format!("{refused}agent: {{ mode: simulate }}\ninstances: [ {{ name: fast }} ]\n"));
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("fix the executor's host, user, identity_file or known_hosts"), "{}", out.stderr);
}

#[test]
fn a_worker_whose_host_is_down_takes_no_job_until_it_answers() {
    let redis = Redis::start();
    let mut sshd = Sshd::start();
    let ns = namespace("hostdown");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    sshd.kill();
    let cfg = format!("{}agent: {{ mode: simulate }}\ninstances: [ {{ name: fast }} ]\n", sshd.executor_yaml());
    let w = Worker::start(d, "w", &cfg, &redis.url(), &ns);
    write(d, "t.yaml", "tasks:\n  - { name: Remote, ccr_instance: fast, command: \"echo from-the-host\", prompt: p }\n");
    let sub = submit(d, &redis.url(), &ns, &["t.yaml", "--detach"], LIMIT);
    assert_eq!(sub.code, 0, "{}", sub.stderr);
    let run = sub.stdout.trim().to_string();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !w.log_text().contains("the execution host does not answer") {
        assert!(Instant::now() < deadline, "no warning that the host is down:\n{}", w.log_text());
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(3));
    let show = submit(d, &redis.url(), &ns, &["show", &run, "Remote", "--json"], LIMIT);
    let task: Value = serde_json::from_str(&show.stdout).unwrap();
    assert_eq!((task["task"]["status"].as_str(), task["task"]["attempts"].as_u64()), (Some("queued"), Some(0)), "nothing spent: {task}");
    assert!(w.log_text().contains("taking no jobs until it does"), "{}", w.log_text());
    sshd.restart();
    let out = submit(d, &redis.url(), &ns, &["watch", &run, "--json", "--no-save", "--no-report"], LIMIT);
    assert_eq!(out.code, 0, "the task ran once the host was back: {}\n{}", out.stderr, w.log_text());
    let doc: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(doc["tasks"][0]["attempts"], 1);
    assert_eq!(doc["tasks"][0]["command"]["stdout"].as_str().map(str::trim), Some("from-the-host"));
    assert!(w.log_text().contains("the execution host answers: taking jobs"), "{}", w.log_text());
}
