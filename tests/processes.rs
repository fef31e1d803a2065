//! When a task ends, every process it started is gone: background children of a task that
//! ended normally, children that left its session (`setsid`) before or at a timeout, and — with
//! the helper — its whole tree when the worker is killed. Checked with `ps` (pgrep) on every way
//! a task starts: the helper locally and over SSH (preferred), and without it (fallbacks).
//! Build the binaries first: `cargo build --bins` (the README's test command does).

use std::time::{Duration, Instant};

use zo_e2e::*;

const LIMIT: Duration = Duration::from_secs(120);

/// Waits until no process matches `needle`; false when one is still there after `within`.
fn gone_within(needle: &str, within: Duration) -> bool {
    let t = Instant::now();
    while process_alive(needle) {
        if t.elapsed() > within {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    true
}

/// Control: started by a plain shell, the same commands do outlive it (so the checks below
/// test the executors, not the commands).
fn outlives_a_plain_shell(command: &str, needle: &str) {
    let st = std::process::Command::new("bash").arg("-c").arg(command).stdout(std::process::Stdio::null()).status().unwrap();
    assert!(st.success());
    std::thread::sleep(Duration::from_millis(300));
    assert!(process_alive(needle), "control: `{command}` left nothing running");
    let _ = std::process::Command::new("pkill").args(["-KILL", "-f", needle]).status();
    assert!(gone_within(needle, Duration::from_secs(3)));
}

#[test]
fn nothing_a_task_started_outlives_it_on_any_executor() {
    let pid = std::process::id() % 100_000;
    outlives_a_plain_shell(&format!("sleep 70{pid} >/dev/null 2>&1 & echo started"), &format!("sleep 70{pid}"));
    outlives_a_plain_shell(&format!("setsid sleep 79{pid} >/dev/null 2>&1 < /dev/null & echo started"), &format!("sleep 79{pid}"));
    let redis = Redis::start();
    let sshd = Sshd::start();
    let ssh = sshd.executor_yaml();
    let paths = [
        ("local-helper", "executor: { kind: local }\n".to_string(), "local helper started"),
        ("local-direct", "executor: { kind: local, helper: false }\n".to_string(), ""),
        ("ssh-helper", ssh.clone(), "remote helper started"),
        ("ssh-session", format!("{ssh}  helper: false\n"), ""),
    ];
    for (n, (path, executor, logged)) in paths.iter().enumerate() {
        let ns = namespace(&format!("procs-{path}"));
        let dir = tempfile::tempdir().unwrap();
        let w = Worker::start(
            dir.path(),
            "w",
            &format!("{executor}agent: {{ mode: simulate }}\ninstances: [ {{ name: fast, concurrency: 4 }} ]\n"),
            &redis.url(),
            &ns,
        );
        // Distinct sleep lengths mark each case's processes.
        let bg = format!("sleep 71{n}{pid}");
        let escaped = format!("sleep 72{n}{pid}");
        let escaped_at_timeout = format!("sleep 73{n}{pid}");
        let yaml = format!(
            "tasks:\n  - {{ name: Background, ccr_instance: fast, command: \"{bg} >/dev/null 2>&1 & echo started\" }}\n  - {{ name: Setsid, ccr_instance: fast, command: \"setsid {escaped} >/dev/null 2>&1 < /dev/null & echo started\" }}\n  - {{ name: Timeout, ccr_instance: fast, timeout: 2s, command: \"setsid {escaped_at_timeout} >/dev/null 2>&1 < /dev/null & sleep 60\" }}\n"
        );
        write(dir.path(), "t.yaml", &yaml);
        let out = submit(dir.path(), &redis.url(), &ns, &["t.yaml", "--json", "--no-save", "--no-report"], LIMIT);
        let doc = json_doc(&out);
        let t = tasks_by_name(&doc);
        assert_eq!(t["Background"]["status"], "success", "{path}: {}", t["Background"]);
        assert_eq!(t["Setsid"]["status"], "success", "{path}: {}", t["Setsid"]);
        assert_eq!(t["Timeout"]["status"], "timeout", "{path}: {}", t["Timeout"]);
        assert!(gone_within(&bg, Duration::from_secs(3)), "{path}: a background child outlived its task");
        assert!(gone_within(&escaped, Duration::from_secs(3)), "{path}: a child that left the session outlived its task");
        assert!(gone_within(&escaped_at_timeout, Duration::from_secs(3)), "{path}: a child that left the session outlived the timeout");
        if !logged.is_empty() {
            assert!(w.log_text().contains(logged), "{path}: the worker says which path it uses:\n{}", w.log_text());
        }
    }
}

/// The local executor with the helper: a worker killed with SIGKILL takes its running tasks
/// with it, so the takeover does not run a second copy beside the first.
#[test]
fn a_killed_worker_takes_its_local_tasks_with_it() {
    let redis = Redis::start();
    let ns = namespace("procs-kill");
    let dir = tempfile::tempdir().unwrap();
    let mut w = Worker::start(
        dir.path(),
        "w",
        "executor: { kind: local }\nagent: { mode: simulate }\nlease: 2s\ninstances: [ { name: fast } ]\n",
        &redis.url(),
        &ns,
    );
    let marker = format!("sleep 74{}", std::process::id() % 100_000);
    write(dir.path(), "t.yaml", &format!("tasks:\n  - {{ name: Long, ccr_instance: fast, command: \"{marker}\" }}\n"));
    let out = submit(dir.path(), &redis.url(), &ns, &["t.yaml", "--detach"], LIMIT);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let t = Instant::now();
    while !process_alive(&marker) {
        assert!(t.elapsed() < Duration::from_secs(20), "the task never started");
        std::thread::sleep(Duration::from_millis(50));
    }
    w.kill9();
    assert!(gone_within(&marker, Duration::from_secs(5)), "the task outlived its killed worker");
    let run = out.stdout.trim().to_string();
    let _ = submit(dir.path(), &redis.url(), &ns, &["cancel", &run], LIMIT);
}

/// A 1 MB command and a 1 MB prompt work on every start path: the script reaches bash in a
/// private file (one environment string is limited to 128 KiB), the prompt reaches the agent
/// on stdin ahead of the command's output; plan time refuses only what is over 4 MiB.
#[test]
fn megabyte_commands_and_prompts_work_on_every_executor() {
    let redis = Redis::start();
    let sshd = Sshd::start();
    let ssh = sshd.executor_yaml();
    let paths = [
        ("local-helper", "executor: { kind: local }\n".to_string()),
        ("local-direct", "executor: { kind: local, helper: false }\n".to_string()),
        ("ssh-helper", ssh.clone()),
        ("ssh-session", format!("{ssh}  helper: false\n")),
    ];
    // A command of 1 MB (a long comment, then the work) and a prompt of 1 MB with a tail.
    let command = format!(": '{}'\necho done-{}", "c".repeat(1 << 20), std::process::id());
    let prompt = format!("{}THE-END", "p".repeat(1 << 20));
    for (path, executor) in &paths {
        let ns = namespace(&format!("sizes-{path}"));
        let dir = tempfile::tempdir().unwrap();
        let _w =
            Worker::start(dir.path(), "w", &format!("{executor}{}instances: [ {{ name: fast }} ]\n", sshd.agent_yaml()), &redis.url(), &ns);
        let yaml = format!(
            "tasks:\n  - name: Big\n    ccr_instance: fast\n    command: {}\n    prompt: {}\n",
            serde_json::to_string(&command).unwrap(),
            serde_json::to_string(&prompt).unwrap()
        );
        write(dir.path(), "t.yaml", &yaml);
        let out = submit(dir.path(), &redis.url(), &ns, &["t.yaml", "--json", "--no-save", "--no-report"], LIMIT);
        assert_eq!(out.code, 0, "{path}: {}", out.stderr);
        let t = tasks_by_name(&json_doc(&out));
        assert_eq!(t["Big"]["command"]["stdout"].as_str().unwrap().trim(), format!("done-{}", std::process::id()), "{path}");
        let (argv, stdin, _) = sshd.recorded("Big");
        let stdin = String::from_utf8_lossy(&stdin);
        assert!(stdin.starts_with(&format!("{prompt}\n\n")), "{path}: the prompt leads the agent's stdin ({} bytes)", stdin.len());
        assert!(stdin.ends_with(&format!("done-{}\n", std::process::id())), "{path}: the command's output follows it");
        assert!(argv.iter().all(|a| a.len() < 1000), "{path}: no long argument");
        let _ = std::fs::remove_dir_all(sshd.path("rec").join("Big"));
    }
    // Over the documented limit: refused at plan time with its position.
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "huge.yaml", &format!("tasks:\n  - {{ name: H, ccr_instance: fast, prompt: \"{}\" }}\n", "x".repeat(5 << 20)));
    let out = submit(dir.path(), "redis://127.0.0.1:1", "zo", &["plan", "huge.yaml"], LIMIT);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("huge.yaml:2:") && out.stderr.contains("more than the 4 MiB a task may carry"), "{}", out.stderr);
}
