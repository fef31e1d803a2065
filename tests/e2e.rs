//! End to end through the real binaries: `zo-submit` and `zo-worker` processes, a private
//! `redis-server`, and a private `sshd` that the workers reach with the `ssh` executor.
//! Build the binaries first: `cargo build --bins` (the README's test command does).

use std::time::{Duration, Instant};

use serde_json::Value;
use zo_e2e::*;

const LIMIT: Duration = Duration::from_secs(120);

fn ssh_worker_config(sshd: &Sshd, instances: &str) -> String {
    format!("{}{}instances:\n{instances}", sshd.executor_yaml(), sshd.agent_yaml())
}

fn all_instances(concurrency: usize) -> String {
    ["general", "fast", "reasoning", "code-review", "smart"]
        .iter()
        .map(|i| format!("  - {{ name: {i}, concurrency: {concurrency} }}\n"))
        .collect()
}

fn start_ms(t: &Value) -> f64 {
    rfc3339_ms(t["started_at"].as_str().unwrap()) as f64
}

fn finish_ms(t: &Value) -> f64 {
    rfc3339_ms(t["timestamp"].as_str().unwrap()) as f64
}

#[test]
fn diamond_runs_in_dependency_order_without_batch_barriers_on_two_workers() {
    let redis = Redis::start();
    let sshd = Sshd::start();
    let ns = namespace("diamond");
    let dir = tempfile::tempdir().unwrap();
    let cfg = ssh_worker_config(&sshd, &all_instances(2));
    let _w1 = Worker::start(dir.path(), "w1", &cfg, &redis.url(), &ns);
    let _w2 = Worker::start(dir.path(), "w2", &cfg, &redis.url(), &ns);
    // A → B, C → D is the diamond. `Slow` sits in A's batch; B must not wait for it.
    let tasks = r#"
tasks:
  - { name: A, ccr_instance: fast, command: "sleep 0.2; echo a" }
  - { name: B, ccr_instance: general, command: "sleep 0.3; echo b", dependencies: [A] }
  - { name: C, ccr_instance: general, command: "sleep 0.3; echo c", dependencies: [A] }
  - { name: D, ccr_instance: smart, command: "cat /etc/hostname >/dev/null; echo d", prompt: "join B and C", dependencies: [B, C] }
  - { name: Slow, ccr_instance: reasoning, command: "sleep 3; echo slow" }
  - { name: P1, ccr_instance: code-review, command: "sleep 1; echo p1" }
  - { name: P2, ccr_instance: code-review, command: "sleep 1; echo p2" }
  - { name: P3, ccr_instance: fast, command: "sleep 1; echo p3" }
  - { name: P4, ccr_instance: fast, command: "sleep 1; echo p4" }
"#;
    write(dir.path(), "t.yaml", tasks);
    let out = submit(dir.path(), &redis.url(), &ns, &["t.yaml", "--json", "--no-save", "--no-report"], LIMIT);
    assert_eq!(out.code, 0, "stderr:\n{}", out.stderr);
    let doc = json_doc(&out);
    let t = tasks_by_name(&doc);
    for name in ["A", "B", "C", "D", "Slow"] {
        assert_eq!(t[name]["status"], "success", "{name}: {}", t[name]);
    }
    assert!(start_ms(&t["B"]) >= finish_ms(&t["A"]) - 5.0, "B started before A finished");
    assert!(start_ms(&t["C"]) >= finish_ms(&t["A"]) - 5.0, "C started before A finished");
    assert!(start_ms(&t["D"]) >= finish_ms(&t["B"]).max(finish_ms(&t["C"])) - 5.0, "D started before B and C finished");
    assert!(start_ms(&t["B"]) < finish_ms(&t["Slow"]), "B waited for Slow: a batch barrier");
    assert!(start_ms(&t["D"]) < finish_ms(&t["Slow"]), "D waited for Slow: a batch barrier");
    assert_eq!(t["D"]["output"], "fake answer: prompt 12 chars, input 2 bytes");
    assert_eq!(t["D"]["command"]["stdout"], "d\n");
    assert_eq!(t["D"]["input_tokens"], 13);
    // Two workers share the queue; which takes what is theirs to race for, so only that no
    // third one appears is certain.
    let workers: std::collections::HashSet<&str> = doc["tasks"].as_array().unwrap().iter().map(|t| t["worker"].as_str().unwrap()).collect();
    assert!((1..=2).contains(&workers.len()), "{workers:?}");
    assert_eq!(doc["summary"]["total_tasks"], 9);
    assert_eq!(doc["summary"]["successful"], 9);
    assert_eq!(doc["results_by_instance"]["fast"]["total"], 3);
}

#[test]
fn a_failure_skips_its_dependents_and_the_rest_completes() {
    let redis = Redis::start();
    let sshd = Sshd::start();
    let ns = namespace("skip");
    let dir = tempfile::tempdir().unwrap();
    let cfg = format!("workdir: /tmp\n{}", ssh_worker_config(&sshd, &all_instances(2)));
    let _w = Worker::start(dir.path(), "w", &cfg, &redis.url(), &ns);
    write(
        dir.path(),
        "t.yaml",
        r#"
tasks:
  - { name: Broken, ccr_instance: fast, command: "echo partial; echo 'boom: disk on fire' >&2; exit 3", prompt: "never asked" }
  - { name: Child, ccr_instance: fast, command: "echo x", dependencies: [Broken] }
  - { name: Grandchild, ccr_instance: general, prompt: "p", dependencies: [Child] }
  - { name: Independent, ccr_instance: general, command: "echo fine; pwd >&2", output_file: "out/independent.txt" }
  - { name: Missing, ccr_instance: fast, command: "zo-no-such-command" }
"#,
    );
    let out = submit(dir.path(), &redis.url(), &ns, &["t.yaml", "--results-dir", "res"], LIMIT);
    assert_eq!(out.code, 1, "a failed task means exit 1; stderr:\n{}", out.stderr);
    let files: Vec<_> = std::fs::read_dir(dir.path().join("res")).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    let json = files.iter().find(|f| f.starts_with("results_") && f.ends_with(".json")).expect("results file");
    assert!(files.iter().any(|f| f.starts_with("report_") && f.ends_with(".md")), "{files:?}");
    let doc: Value = serde_json::from_slice(&std::fs::read(dir.path().join("res").join(json)).unwrap()).unwrap();
    let t = tasks_by_name(&doc);
    assert_eq!(t["Broken"]["status"], "failed");
    assert_eq!(t["Broken"]["error_class"], "command");
    assert_eq!(t["Broken"]["exit_code"], 3);
    assert_eq!(t["Broken"]["error"], "command exited with code 3: boom: disk on fire");
    assert_eq!(t["Broken"]["command"]["stdout"], "partial\n");
    assert_eq!(t["Child"]["status"], "skipped");
    assert_eq!(t["Child"]["error"], "skipped: dependency `Broken` ended with status failed");
    assert_eq!(t["Grandchild"]["status"], "skipped");
    assert_eq!(t["Grandchild"]["error"], "skipped: dependency `Child` was skipped");
    assert_eq!(t["Independent"]["status"], "success");
    assert_eq!(t["Independent"]["output"], "fine\n");
    assert_eq!(t["Independent"]["command"]["stderr"], "/tmp\n", "commands run in the configured workdir");
    assert_eq!(std::fs::read_to_string(dir.path().join("out/independent.txt")).unwrap(), "fine\n", "output_file is written");
    // A command that is not found is the command's failure, not a host without bash.
    assert_eq!(t["Missing"]["status"], "failed");
    assert_eq!(t["Missing"]["error_class"], "command", "{}", t["Missing"]);
    assert_eq!(t["Missing"]["exit_code"], 127);
    assert_eq!(doc["summary"]["failed"], 2);
    assert_eq!(doc["summary"]["skipped"], 2);
    assert!(out.stdout.contains("EXECUTION SUMMARY"), "dashboard on stdout:\n{}", out.stdout);
    let no_agent_for_broken = !sshd.path("rec").join("Broken").exists();
    assert!(no_agent_for_broken, "the agent must not run after a failed command");
}

#[test]
fn a_timeout_kills_the_remote_process_tree() {
    timeout_kills_the_process_tree(Exec::Helper, 7000);
}

#[test]
fn a_timeout_kills_the_remote_process_tree_without_the_helper() {
    timeout_kills_the_process_tree(Exec::Wrapper, 8000);
}

#[test]
fn a_timeout_kills_the_local_process_tree() {
    timeout_kills_the_process_tree(Exec::Local, 9000);
}

enum Exec {
    Helper,
    Wrapper,
    Local,
}

/// A task that hangs (with a background child) times out, and nothing of it survives on the
/// host: through the remote helper, with one session and the wrapper per task, or locally.
fn timeout_kills_the_process_tree(exec: Exec, base: u32) {
    let redis = Redis::start();
    let sshd = Sshd::start();
    let ns = namespace("timeout");
    let dir = tempfile::tempdir().unwrap();
    let executor = match exec {
        Exec::Helper => sshd.executor_yaml(),
        Exec::Wrapper => format!("{}  helper: false\n", sshd.executor_yaml()),
        Exec::Local => "executor: { kind: local }\n".into(),
    };
    let cfg = format!("{executor}{}instances:\n{}", sshd.agent_yaml(), all_instances(2));
    let w = Worker::start(dir.path(), "w", &cfg, &redis.url(), &ns);
    let marker = format!("{}", base + std::process::id() % 1000);
    write(
        dir.path(),
        "t.yaml",
        &format!(
            "tasks:\n  - {{ name: Hang, ccr_instance: fast, command: \"sleep 3{marker}1 & sleep 3{marker}2; echo never\", timeout: 2 }}\n  - {{ name: After, ccr_instance: fast, command: \"echo ok\", dependencies: [Hang] }}\n"
        ),
    );
    let started = Instant::now();
    let out = submit(dir.path(), &redis.url(), &ns, &["t.yaml", "--json", "--no-save", "--no-report"], LIMIT);
    assert_eq!(out.code, 1, "stderr:\n{}", out.stderr);
    assert!(started.elapsed() < Duration::from_secs(30));
    let doc = json_doc(&out);
    let t = tasks_by_name(&doc);
    assert_eq!(t["Hang"]["status"], "timeout");
    assert_eq!(t["Hang"]["error_class"], "timeout");
    assert!(t["Hang"]["error"].as_str().unwrap().starts_with("timed out after 2s"), "{}", t["Hang"]);
    assert_eq!(t["After"]["status"], "skipped");
    let deadline = Instant::now() + Duration::from_secs(5);
    while (process_alive(&format!("sleep 3{marker}1")) || process_alive(&format!("sleep 3{marker}2"))) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(!process_alive(&format!("sleep 3{marker}1")), "the background sleep survived the timeout");
    assert!(!process_alive(&format!("sleep 3{marker}2")), "the foreground sleep survived the timeout");
    drop(w);
}

#[test]
fn a_host_without_perl_runs_each_task_in_its_own_session() {
    let redis = Redis::start();
    // The login's PATH holds bash and base64 (what the wrapper needs) but no perl.
    let tools = tempfile::tempdir().unwrap();
    std::fs::set_permissions(tools.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    for tool in ["bash", "sh", "base64", "cat"] {
        std::os::unix::fs::symlink(which(tool), tools.path().join(tool)).unwrap();
    }
    let sshd = Sshd::start_with(&format!("SetEnv PATH={}\n", tools.path().display()));
    let ns = namespace("noperl");
    let dir = tempfile::tempdir().unwrap();
    let w = Worker::start(dir.path(), "w", &ssh_worker_config(&sshd, &all_instances(2)), &redis.url(), &ns);
    write(dir.path(), "t.yaml", "tasks:\n  - { name: A, ccr_instance: fast, command: \"echo one\" }\n  - { name: B, ccr_instance: fast, command: \"echo two; exit 3\" }\n");
    let out = submit(dir.path(), &redis.url(), &ns, &["t.yaml", "--json", "--no-save", "--no-report"], LIMIT);
    let doc = json_doc(&out);
    let t = tasks_by_name(&doc);
    assert_eq!(t["A"]["status"], "success", "{}", t["A"]);
    assert_eq!(t["A"]["command"]["stdout"].as_str().unwrap().trim(), "one", "{}", t["A"]);
    assert_eq!(t["B"]["status"], "failed");
    assert_eq!(t["B"]["command"]["exit_code"], 3, "{}", t["B"]);
    let log = w.log_text();
    assert!(log.contains("cannot start the remote helper"), "the fallback must be logged:\n{log}");
    assert!(!log.contains("remote helper started"), "{log}");
}

#[test]
fn a_killed_worker_leaves_no_task_running_on_the_host() {
    let redis = Redis::start();
    let sshd = Sshd::start();
    let ns = namespace("orphans");
    let dir = tempfile::tempdir().unwrap();
    let mut w = Worker::start(dir.path(), "w", &ssh_worker_config(&sshd, &all_instances(2)), &redis.url(), &ns);
    let marker = format!("{}", 6000 + std::process::id() % 1000);
    write(
        dir.path(),
        "t.yaml",
        &format!("tasks:\n  - {{ name: Long, ccr_instance: fast, command: \"sleep 4{marker}1 & sleep 4{marker}2\" }}\n"),
    );
    let out = submit(dir.path(), &redis.url(), &ns, &["t.yaml", "--detach"], LIMIT);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !process_alive(&format!("sleep 4{marker}2")) {
        assert!(Instant::now() < deadline, "the task never started:\n{}", w.log_text());
        std::thread::sleep(Duration::from_millis(50));
    }
    w.kill9();
    let deadline = Instant::now() + Duration::from_secs(10);
    while (process_alive(&format!("sleep 4{marker}1")) || process_alive(&format!("sleep 4{marker}2"))) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(!process_alive(&format!("sleep 4{marker}1")), "the task's background child outlived the killed worker");
    assert!(!process_alive(&format!("sleep 4{marker}2")), "the task outlived the killed worker");
}

fn which(tool: &str) -> std::path::PathBuf {
    let out = std::process::Command::new("sh").args(["-c", &format!("command -v {tool}")]).output().unwrap();
    let p = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert!(!p.is_empty(), "{tool} is not installed");
    std::fs::canonicalize(p).unwrap()
}

/// YAML double-quoted scalars accept JSON string syntax.
fn yaml_str(s: &str) -> String {
    serde_json::to_string(s).unwrap()
}

#[test]
fn adversarial_prompts_arrive_byte_exact_at_the_agent() {
    let redis = Redis::start();
    let sshd = Sshd::start();
    let ns = namespace("prompts");
    let dir = tempfile::tempdir().unwrap();
    let _w = Worker::start(dir.path(), "w", &ssh_worker_config(&sshd, &all_instances(4)), &redis.url(), &ns);
    let big: String = (0..100 * 1024).map(|i| (b'a' + (i % 26) as u8) as char).collect();
    let corpus: Vec<(&str, String)> = vec![
        ("quotes", r#"it's "quoted" and 'single' and \"escaped\""#.to_string()),
        ("subst", "$(touch /tmp/zo-pwned) `touch /tmp/zo-pwned2` ${HOME} $$ $1 \\$x".to_string()),
        ("newlines", "line one\nline two\n\n\ttabbed\r\ncrlf\n\n".to_string()),
        ("unicode", "héllo wörld — 日本語 — 🦀🚀 — \u{200b}zero width".to_string()),
        ("dash", "-p --help -- not an option".to_string()),
        ("percent", "%s %d %n %% \\n \\0 \\x41".to_string()),
        ("glob", "* ? [a-z] ~ ~root !! !$ ; | & > < >> 2>&1".to_string()),
        ("big", big),
    ];
    let mut yaml = String::from("tasks:\n");
    for (name, prompt) in &corpus {
        yaml.push_str(&format!("  - name: {name}\n    ccr_instance: fast\n    command: \"printf 'in:%s\\\\n' {name}; printf 'it'\\\\''s $x \\\\\\\\n'\"\n    prompt: {}\n", yaml_str(prompt)));
    }
    yaml.push_str("  - name: nocommand\n    ccr_instance: smart\n    prompt: \"no stdin here\"\n");
    write(dir.path(), "t.yaml", &yaml);
    let out = submit(dir.path(), &redis.url(), &ns, &["t.yaml", "--json", "--no-save", "--no-report"], LIMIT);
    assert_eq!(out.code, 0, "stderr:\n{}", out.stderr);
    let doc = tasks_by_name(&json_doc(&out));
    for (name, prompt) in &corpus {
        let (argv, stdin, env) = sshd.recorded(name);
        assert_eq!(argv.last().map(|a| a.as_slice()), Some(prompt.as_bytes()), "prompt of {name} changed on the way");
        assert_eq!(argv[..2], [b"-p".to_vec(), b"--output-format".to_vec()], "{name}");
        assert_eq!(String::from_utf8_lossy(&stdin), format!("in:{name}\nit's $x \\n"), "stdin of {name}; task: {}", doc[*name]);
        assert!(env.lines().any(|l| l == "ANTHROPIC_BASE_URL=http://127.0.0.1:3457"), "{name}: {env}");
        assert!(env.lines().any(|l| l == format!("ZO_TASK={name}")), "{name}");
        assert!(!env.contains("ZO_PROMPT="), "the prompt must not linger in the agent's environment");
    }
    let (argv, stdin, env) = sshd.recorded("nocommand");
    assert_eq!(argv.last().unwrap(), b"no stdin here");
    assert!(stdin.is_empty(), "a task without a command gives the agent no stdin");
    assert!(env.lines().any(|l| l == "ANTHROPIC_BASE_URL=http://127.0.0.1:3460"));
    let (argv, _, _) = sshd.recorded("dash");
    assert_eq!(argv[argv.len() - 2], b"--", "a prompt starting with '-' follows `--`");
    assert!(
        !std::path::Path::new("/tmp/zo-pwned").exists() && !std::path::Path::new("/tmp/zo-pwned2").exists(),
        "a prompt was executed by a shell"
    );
}

#[test]
fn detach_then_watch_gets_the_same_report() {
    let redis = Redis::start();
    let ns = namespace("detach");
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "t.yaml",
        "tasks:\n  - { name: One, ccr_instance: fast, command: \"echo 1\", prompt: \"sum up\", simulate: { duration: 200ms } }\n  - { name: Two, ccr_instance: general, prompt: \"think\", dependencies: [One], simulate: { duration: 300ms, fail: true } }\n",
    );
    let out = submit(dir.path(), &redis.url(), &ns, &["t.yaml", "--detach"], LIMIT);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let run_id = out.stdout.trim().to_string();
    assert_eq!(run_id.len(), "20261123-204535-e8ac".len(), "stdout is the run id: {run_id:?}");
    // The run waits in Redis until a worker shows up.
    let _w = Worker::start(
        dir.path(),
        "w",
        "executor: { kind: local }\nagent: { mode: simulate }\ninstances: [ { name: fast }, { name: general } ]\n",
        &redis.url(),
        &ns,
    );
    let first = submit(dir.path(), &redis.url(), &ns, &["watch", &run_id, "--json", "--no-save", "--no-report"], LIMIT);
    assert_eq!(first.code, 1, "{}", first.stderr);
    let second = submit(dir.path(), &redis.url(), &ns, &["watch", &run_id, "--json", "--no-save", "--no-report"], LIMIT);
    assert_eq!(second.code, 1);
    let (a, b) = (json_doc(&first), json_doc(&second));
    assert_eq!(a, b, "watching a finished run again must give the same document");
    let t = tasks_by_name(&a);
    assert_eq!(a["run_id"], run_id.as_str());
    assert_eq!(t["One"]["status"], "success");
    assert!(t["One"]["output"].as_str().unwrap().starts_with("[simulated answer from fast"), "{}", t["One"]);
    assert_eq!(t["Two"]["status"], "failed");
    assert_eq!(t["Two"]["error_class"], "model");
    let missing = submit(dir.path(), &redis.url(), &ns, &["watch", "20000101-000000-0000"], LIMIT);
    assert_eq!(missing.code, 2);
    assert!(missing.stderr.contains("run `20000101-000000-0000` does not exist"), "{}", missing.stderr);
}

/// A host that goes down after the worker started (its start-up checks passed): tasks fail
/// as network errors, retried by the default policy, and the worker keeps serving. (A host
/// down at start, or a refused login, is `tests/preflight.rs`.)
#[test]
fn an_ssh_host_that_goes_down_gives_network_errors_and_the_worker_keeps_serving() {
    let redis = Redis::start();
    let mut sshd = Sshd::start();
    let ns = namespace("sshfail");
    let dir = tempfile::tempdir().unwrap();
    let cfg = format!("{}{}instances: [ {{ name: fast }} ]\n", sshd.executor_yaml(), sshd.agent_yaml());
    let mut w = Worker::start(dir.path(), "w", &cfg, &redis.url(), &ns);
    write(dir.path(), "ok.yaml", "tasks:\n  - { name: Up, ccr_instance: fast, command: \"echo up\" }\n");
    let out = submit(dir.path(), &redis.url(), &ns, &["ok.yaml", "--json", "--no-save", "--no-report"], LIMIT);
    assert_eq!(out.code, 0, "the host answers first: {}", out.stderr);
    sshd.kill();
    // Network errors are retried by default; one quick retry here.
    write(
        dir.path(),
        "t.yaml",
        "tasks:\n  - { name: A, ccr_instance: fast, command: \"echo hi\", retry_policy: { max_retries: 1, base_delay: 100ms } }\n",
    );
    for _ in 0..2 {
        let out = submit(dir.path(), &redis.url(), &ns, &["t.yaml", "--json", "--no-save", "--no-report"], LIMIT);
        assert_eq!(out.code, 1, "{}", out.stderr);
        let t = tasks_by_name(&json_doc(&out));
        assert_eq!(t["A"]["error_class"], "network", "{}", t["A"]);
        let err = t["A"]["error"].as_str().unwrap();
        assert!(err.contains(&format!("{SSH_USER}@127.0.0.1:{}", sshd.port)), "the error names the host: {err}");
        assert_eq!(t["A"]["attempts"], 2, "one retry of a network error");
        assert_eq!(t["A"]["attempt_history"].as_array().unwrap().len(), 2);
        assert!(w.is_running(), "the worker must keep serving");
    }
    sshd.restart();
    let out = submit(dir.path(), &redis.url(), &ns, &["ok.yaml", "--json", "--no-save", "--no-report"], LIMIT);
    assert_eq!(out.code, 0, "back once the host is: {}", out.stderr);
}

#[test]
fn megabytes_of_output_on_both_streams_flow_through_the_helper_and_are_capped() {
    let redis = Redis::start();
    let sshd = Sshd::start();
    let ns = namespace("bigout");
    let dir = tempfile::tempdir().unwrap();
    let cfg = format!("max_output_bytes: 1048576\n{}", ssh_worker_config(&sshd, &all_instances(2)));
    let _w = Worker::start(dir.path(), "w", &cfg, &redis.url(), &ns);
    // 3 MB on stdout and 2 MB on stderr, interleaved, then piped into the agent.
    let cmd = "for i in 1 2 3; do head -c 1000000 /dev/zero | tr '\\\\0' x; head -c 666666 /dev/zero | tr '\\\\0' y >&2; done";
    write(dir.path(), "t.yaml", &format!("tasks:\n  - {{ name: Big, ccr_instance: fast, command: \"{cmd}\", prompt: summarize }}\n"));
    let out = submit(dir.path(), &redis.url(), &ns, &["t.yaml", "--json", "--no-save", "--no-report"], LIMIT);
    assert_eq!(out.code, 0, "stderr:\n{}", out.stderr);
    let doc = json_doc(&out);
    let t = &tasks_by_name(&doc)["Big"];
    assert_eq!(t["command"]["exit_code"], 0, "{}", t["command"]["stderr"]);
    assert_eq!(t["command"]["truncated"], true);
    let stdout = t["command"]["stdout"].as_str().unwrap();
    assert_eq!(stdout.len(), 1_048_576);
    assert!(stdout.bytes().all(|b| b == b'x'));
    let stderr = t["command"]["stderr"].as_str().unwrap();
    assert!(stderr.len() <= 1_048_576 && stderr.len() >= 1_000_000, "{}", stderr.len());
    assert!(stderr.bytes().all(|b| b == b'y'));
    let (_, stdin, _) = sshd.recorded("Big");
    assert_eq!(stdin.len(), 1_048_576, "the agent gets the capped output");
    assert!(stdin.iter().all(|&b| b == b'x'));
}

/// Scripts carry the agent's key, and `ps` shows every user's command lines: on every way a
/// task starts (the SSH helper, one SSH session per task, the local executor) neither the
/// command nor the agent's key is on a command line while the task runs. A local task's
/// environment holds none of the worker's own variables, only the documented ones.
#[test]
fn no_script_or_key_is_on_a_command_line_and_local_tasks_get_a_clean_environment() {
    let redis = Redis::start();
    let sshd = Sshd::start();
    let ssh = sshd.executor_yaml();
    let local = "executor:\n  kind: local\n  env: { ZO_EXTRA: \"given\" }\n  pass_env: [ZO_PASSED]\n".to_string();
    for (case, executor) in [("helper", ssh.clone()), ("session", format!("{ssh}  helper: false\n")), ("local", local)] {
        let ns = namespace(&format!("argv-{case}"));
        let dir = tempfile::tempdir().unwrap();
        let key = format!("zo-key-{case}-{}", std::process::id());
        let marker = format!("zo-marker-{case}-{}", std::process::id());
        let cfg = format!("{executor}{}    FAKE_AGENT_SLEEP: \"2\"\n  api_key: {key}\ninstances:\n{}", sshd.agent_yaml(), all_instances(2));
        let envs = [("ZO_WORKER_SECRET", "worker-only-value"), ("ZO_PASSED", "passed-on")];
        let _w = Worker::start_with_env(dir.path(), "w", &cfg, &redis.url(), &ns, &envs);
        // A sleep of its own length, so the scan cannot mistake another test's for it.
        let sleep = format!("sleep 2.{:06}", rand_suffix() % 1_000_000);
        let yaml = format!("tasks:\n  - {{ name: Quiet, ccr_instance: fast, command: \"{sleep}; echo {marker}\", prompt: go }}\n");
        write(dir.path(), "t.yaml", &yaml);
        let out = submit(dir.path(), &redis.url(), &ns, &["t.yaml", "--detach"], LIMIT);
        assert_eq!(out.code, 0, "{}", out.stderr);
        let run = out.stdout.trim().to_string();
        // Scan the command lines until the task ends: the command's sleep, then the agent's.
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut saw_sleep = false;
        loop {
            assert!(!process_alive(&marker), "{case}: the task's script is visible on a command line");
            assert!(!process_alive(&key), "{case}: the agent's key is visible on a command line");
            saw_sleep |= process_alive(&sleep);
            let done: Option<String> =
                redis::cmd("HGET").arg(format!("{ns}:run:{{{run}}}:meta")).arg("status").query(&mut redis.client()).unwrap();
            if done.as_deref() == Some("finished") || Instant::now() > deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(saw_sleep, "{case}: the scan never saw the task running");
        let out = submit(dir.path(), &redis.url(), &ns, &["watch", &run, "--json", "--no-save", "--no-report"], LIMIT);
        assert_eq!(out.code, 0, "{case}: {}", out.stderr);
        let doc = json_doc(&out);
        assert_eq!(tasks_by_name(&doc)["Quiet"]["command"]["stdout"].as_str().unwrap().trim(), marker);
        let (_, _, env) = sshd.recorded("Quiet");
        assert!(!env.contains("worker-only-value"), "{case}: a worker variable reached the task:\n{env}");
        assert!(env.lines().any(|l| l == format!("ANTHROPIC_API_KEY={key}")), "{case}: {env}");
        assert!(!env.lines().any(|l| l.starts_with("ZO_SCRIPT=")), "{case}: {env}");
        if case == "local" {
            assert!(env.lines().any(|l| l == "ZO_EXTRA=given") && env.lines().any(|l| l == "ZO_PASSED=passed-on"), "{env}");
            assert!(env.lines().any(|l| l.starts_with("PATH=")) && env.lines().any(|l| l.starts_with("HOME=")), "{env}");
            // Nothing but the documented variables and what the script exports.
            let allowed = [
                "PATH",
                "HOME",
                "LANG",
                "LC_ALL",
                "USER",
                "LOGNAME",
                "TZ",
                "TMPDIR",
                "PWD",
                "SHLVL",
                "_",
                "OLDPWD",
                "API_TIMEOUT_MS",
                "FAKE_AGENT_DIR",
                "FAKE_AGENT_SLEEP",
            ];
            for l in env.lines() {
                let name = l.split('=').next().unwrap_or("");
                assert!(
                    allowed.contains(&name) || name.starts_with("ZO_") || name.starts_with("ANTHROPIC_") || name.starts_with("CLAUDE_"),
                    "undocumented variable in a local task: {l}"
                );
            }
        }
        let _ = std::fs::remove_dir_all(sshd.path("rec").join("Quiet"));
    }
}

/// Over SSH, a script and a prompt past the spill size (64 KiB) travel as files of mode 0600
/// in a directory of mode 0700, each removed once read — through the helper and through the
/// plain wrapper. The sshd puts a `bash` of the test's first on its user's `PATH`: it records
/// the files a task's bash was handed (`stat` of each and of its directory) before the real
/// bash reads them; after the run none of them may exist.
#[test]
fn long_scripts_and_prompts_travel_over_ssh_as_private_files_that_are_removed() {
    let redis = Redis::start();
    let probe_dir = tempfile::Builder::new().prefix("zo-probe").tempdir().unwrap();
    std::fs::set_permissions(probe_dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    let log = probe_dir.path().join("seen");
    let probe = write(
        probe_dir.path(),
        "bash",
        &format!(
            "#!/bin/sh\nfor f in \"${{ZO_SCRIPT_FILE:-}}\" \"${{ZO_PROMPT_FILE:-}}\"; do\n  \
             [ -n \"$f\" ] && stat -c '%a %n' -- \"$f\" \"${{f%/*}}\" >> {}\ndone\nexec /bin/bash \"$@\"\n",
            log.display()
        ),
    );
    std::fs::set_permissions(&probe, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let sshd = Sshd::start_with(&format!("SetEnv PATH={}:/usr/local/bin:/usr/bin:/bin\n", probe_dir.path().display()));
    let dir = tempfile::tempdir().unwrap();
    let pad = "x".repeat(100 * 1024);
    // Past the spill size, short of the length that goes to the agent's stdin (100 KiB).
    let prompt = "p".repeat(80 * 1024);
    write(
        dir.path(),
        "t.yaml",
        &format!("tasks:\n  - {{ name: Long, ccr_instance: fast, command: \"echo ran # {pad}\", prompt: \"{prompt}\" }}\n"),
    );
    for helper in [true, false] {
        let _ = std::fs::remove_file(&log);
        let ns = namespace(&format!("spill-{helper}"));
        let cfg = format!("{}  helper: {helper}\n{}instances:\n  - {{ name: fast }}\n", sshd.executor_yaml(), sshd.agent_yaml());
        let mut w = Worker::start(dir.path(), &format!("w-{helper}"), &cfg, &redis.url(), &ns);
        let out = submit(dir.path(), &redis.url(), &ns, &["t.yaml", "--json", "--no-save", "--no-report"], LIMIT);
        assert_eq!(out.code, 0, "helper {helper}: {}", out.stderr);
        let t = tasks_by_name(&json_doc(&out));
        assert_eq!(t["Long"]["status"], "success", "helper {helper}: {}", t["Long"]);
        assert_eq!(t["Long"]["command"]["stdout"], "ran\n", "helper {helper}");
        // The agent was handed the whole prompt, as its last argument.
        let (argv, _, _) = sshd.recorded("Long");
        assert_eq!(argv.last().map(Vec::len), Some(prompt.len()), "helper {helper}");
        assert!(argv.last().is_some_and(|a| a == prompt.as_bytes()), "helper {helper}: the prompt arrived changed");
        let seen = std::fs::read_to_string(&log).unwrap_or_default();
        let rows: Vec<(&str, &str)> = seen.lines().filter_map(|l| l.split_once(' ')).collect();
        // Two files (the command's script, the agent's prompt), each with its directory.
        assert_eq!(rows.len(), 4, "helper {helper}: the probe saw {seen:?}");
        let mut dirs = Vec::new();
        for pair in rows.chunks(2) {
            let ((file_mode, file), (dir_mode, parent)) = (pair[0], pair[1]);
            assert_eq!((file_mode, dir_mode), ("600", "700"), "helper {helper}: {seen}");
            assert!(!std::path::Path::new(file).exists(), "helper {helper}: {file} outlived its task");
            dirs.push(parent.to_string());
        }
        w.stop();
        // The helper removes its directory when its connection closes, the wrapper at the
        // task's end.
        for d in dirs {
            wait_until(&format!("helper {helper}: the private directory {d} to go with the worker"), Duration::from_secs(10), || {
                !std::path::Path::new(&d).exists()
            });
        }
    }
}
