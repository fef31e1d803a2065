//! Bad input and missing infrastructure through the real binaries: an unreachable Redis, an
//! invalid task file or worker config, `plan` without Redis, and junk in a job stream.
//! Build the binaries first: `cargo build --bins` (the README's test command does).

use std::time::Duration;

use zo_e2e::*;

const LIMIT: Duration = Duration::from_secs(120);

#[test]
fn redis_unreachable_exits_3_and_leaves_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "t.yaml", "tasks:\n  - { name: A, ccr_instance: fast, command: ls }\n");
    let url = format!("redis://127.0.0.1:{}", free_port());
    let out = submit(dir.path(), &url, "zo", &["t.yaml", "--results-dir", "res"], LIMIT);
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert!(out.stderr.starts_with(&format!("zo-submit: cannot reach Redis at {url}: ")), "{}", out.stderr);
    assert_eq!(out.stderr.lines().count(), 1, "one clear line: {}", out.stderr);
    assert!(!dir.path().join("res").exists(), "no results for a run that never started");
}

#[test]
fn an_invalid_task_file_exits_2_with_its_position() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "t.yaml", "tasks:\n  - name: A\n    ccr_instance: fast\n    comand: ls\n");
    let out = submit(dir.path(), "redis://127.0.0.1:1", "zo", &["t.yaml"], LIMIT);
    assert_eq!(out.code, 2);
    assert_eq!(
        out.stderr,
        "t.yaml:4:5: unknown key `comand`; did you mean `command`?\nzo-submit: t.yaml has 1 error; nothing was submitted\n"
    );
    let missing = submit(dir.path(), "redis://127.0.0.1:1", "zo", &["nope.yaml"], LIMIT);
    assert_eq!(missing.code, 2);
    assert!(missing.stderr.starts_with("nope.yaml: cannot read file: "), "{}", missing.stderr);
    let usage = submit(dir.path(), "redis://127.0.0.1:1", "zo", &["t.yaml", "--bogus"], LIMIT);
    assert_eq!(usage.code, 2);
}

#[test]
fn plan_needs_no_redis() {
    let dir = tempfile::tempdir().unwrap();
    let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tasks/example.yaml");
    for args in [vec!["plan", example.to_str().unwrap()], vec![example.to_str().unwrap(), "--dry-run"]] {
        let out = submit(dir.path(), "redis://127.0.0.1:1", "zo", &args, LIMIT);
        assert_eq!(out.code, 0, "{}", out.stderr);
        assert!(out.stdout.contains("Batch 1 (3 tasks in parallel):"), "{}", out.stdout);
        assert!(out.stdout.contains("Batch 3 (1 task):\n  - Executive Summary [smart"), "{}", out.stdout);
        if args[0] == "plan" {
            assert!(out.stdout.ends_with("Validation: PASSED\n"), "{}", out.stdout);
        } else {
            // A dry run without Redis still validates, says why it has no estimates and that
            // it is not ready.
            assert!(out.stdout.starts_with("DRY RUN: "), "{}", out.stdout);
            assert!(
                out.stdout.contains("Validation: PASSED\nEstimates: unavailable (cannot reach Redis at redis://127.0.0.1:1"),
                "{}",
                out.stdout
            );
            assert!(out.stdout.contains("Ready to execute: NO\n  - Redis is unreachable"), "{}", out.stdout);
        }
    }
}

#[test]
fn an_invalid_worker_config_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(dir.path(), "w.yaml", "executor: { kind: ssh }\ninstances: [ { name: fats } ]\n");
    let out = std::process::Command::new(bin("zo-worker")).arg("--config").arg(&cfg).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        format!("zo-worker: {}: instance `fats` is not in the catalog; did you mean `fast`?\n", cfg.display())
    );
}

#[test]
fn malformed_stream_entries_are_dead_lettered_and_valid_work_goes_on() {
    let redis = Redis::start();
    let ns = namespace("dead");
    let dir = tempfile::tempdir().unwrap();
    let mut conn = redis.client();
    let stream = format!("{ns}:jobs:{{fast}}");
    let _: () =
        redis::cmd("XGROUP").arg("CREATE").arg(&stream).arg(format!("{ns}-workers")).arg("0").arg("MKSTREAM").query(&mut conn).unwrap();
    let _: String = redis::cmd("XADD").arg(&stream).arg("*").arg("hello").arg("world").query(&mut conn).unwrap();
    let _: String = redis::cmd("XADD")
        .arg(&stream)
        .arg("*")
        .arg("run")
        .arg("R")
        .arg("idx")
        .arg("0")
        .arg("attempt")
        .arg("1")
        .arg("payload")
        .arg(vec![0xc1u8, 0xff, 0x00])
        .query(&mut conn)
        .unwrap();
    let huge = "x".repeat(1 << 20);
    let _: String = redis::cmd("XADD").arg(&stream).arg("*").arg("run").arg(&huge).arg("idx").arg("nope").query(&mut conn).unwrap();
    // 47 more: unknown runs, wrong instances, truncated payloads, binary junk.
    let spec = |run: &str, idx: u32, instance: &str| {
        let _ = (run, idx);
        zo_common::model::TaskSpec { command: Some("echo".into()), timeout_ms: 1000, ..zo_common::model::TaskSpec::new("x", instance) }
            .encode()
    };
    for i in 0..47u32 {
        let mut cmd = redis::cmd("XADD");
        cmd.arg(&stream).arg("*");
        match i % 4 {
            0 => cmd.arg("run").arg(format!("ghost-{i}")).arg("idx").arg(0).arg("attempt").arg(1).arg("payload").arg(spec(
                &format!("ghost-{i}"),
                0,
                "fast",
            )),
            1 => cmd.arg("run").arg("R").arg("idx").arg(0).arg("attempt").arg(1).arg("payload").arg(spec("R", 0, "smart")),
            2 => cmd.arg("run").arg("R").arg("idx").arg(0).arg("attempt").arg(1).arg("payload").arg(spec("R", 0, "fast")[..5].to_vec()),
            _ => cmd.arg(vec![0xffu8, 0xfe, i as u8]).arg(vec![0u8; 64]),
        };
        let _: String = cmd.query(&mut conn).unwrap();
    }
    let _w = Worker::start(dir.path(), "w", "executor: { kind: simulate }\ninstances: [ { name: fast } ]\n", &redis.url(), &ns);
    write(dir.path(), "t.yaml", "tasks:\n  - { name: A, ccr_instance: fast, command: \"echo hi\", prompt: \"go\" }\n");
    let out = submit(dir.path(), &redis.url(), &ns, &["t.yaml", "--json", "--no-save", "--no-report"], LIMIT);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let dead: Vec<(String, std::collections::HashMap<String, Vec<u8>>)> = {
        let reply: redis::streams::StreamRangeReply =
            redis::cmd("XRANGE").arg(format!("{ns}:dead")).arg("-").arg("+").query(&mut conn).unwrap();
        reply
            .ids
            .into_iter()
            .map(|e| (e.id, e.map.into_iter().map(|(k, v)| (k, redis::from_redis_value::<Vec<u8>>(v).unwrap())).collect()))
            .collect()
    };
    let reasons: Vec<String> = dead.iter().map(|(_, m)| String::from_utf8_lossy(&m["reason"]).into_owned()).collect();
    assert_eq!(reasons.len(), 50, "every garbage entry is dead-lettered: {reasons:?}");
    assert_eq!(
        reasons.iter().filter(|r| r.starts_with("run ghost-") && r.ends_with("(an unknown run, or one that expired)")).count(),
        12,
        "{reasons:?}"
    );
    assert_eq!(reasons.iter().filter(|r| r.starts_with("payload is for instance `smart`")).count(), 12, "{reasons:?}");
    assert!(reasons.contains(&"missing field `run`".to_string()), "{reasons:?}");
    assert!(reasons.iter().any(|r| r.starts_with("payload is not a task spec")), "{reasons:?}");
    assert!(reasons.contains(&"field `idx` is not a number".to_string()), "{reasons:?}");
    assert!(dead.iter().all(|(_, m)| m.values().all(|v| v.len() <= 4096)), "dead letters keep at most 4 KiB per field");
    let len: usize = redis::cmd("XLEN").arg(&stream).query(&mut conn).unwrap();
    assert_eq!(len, 0, "handled entries leave the stream");
}

/// `cancel` and `watch` of a run that does not exist: exit 2 with one clear line, and nothing
/// is created in Redis — also for ids that could never be run ids.
#[test]
fn unknown_runs_exit_2_and_create_nothing() {
    let redis = Redis::start();
    let ns = namespace("unknownrun");
    let dir = tempfile::tempdir().unwrap();
    let huge = "x".repeat(100_000);
    for (args, says) in [
        (vec!["cancel", "20260101-000000-abcd"], "does not exist"),
        (vec!["watch", "20260101-000000-abcd"], "does not exist"),
        (vec!["cancel", "*"], "is not a run id"),
        (vec!["watch", "{x}"], "is not a run id"),
        (vec!["cancel", huge.as_str()], "is not a run id"),
    ] {
        let out = submit(dir.path(), &redis.url(), &ns, &args, LIMIT);
        assert_eq!(out.code, 2, "{:?}: {}", &args[..1], out.stderr);
        assert!(out.stderr.contains(says), "{:?}: {}", &args[..1], out.stderr);
        assert_eq!(out.stderr.lines().count(), 1, "one line: {}", out.stderr);
        assert!(out.stderr.len() < 400, "the message stays short: {}", out.stderr.len());
    }
    let mut c = redis.client();
    let keys: Vec<String> = redis::cmd("KEYS").arg(format!("{ns}:*")).query(&mut c).unwrap();
    assert!(keys.is_empty(), "nothing is created: {keys:?}");
}

/// A task's `output_file` is confined to the output directory: a symlinked directory leading
/// out is refused (exit 1, the file named), nothing lands outside, other outputs are written;
/// an unwritable results directory is exit 1 as well.
#[test]
fn output_files_never_leave_the_output_directory_and_unwritable_outputs_exit_1() {
    let redis = Redis::start();
    let ns = namespace("confine");
    let dir = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(outside.path(), dir.path().join("link")).unwrap();
    let _w = Worker::start(dir.path(), "w", "executor: { kind: simulate }\ninstances: [ { name: fast } ]\n", &redis.url(), &ns);
    write(
        dir.path(),
        "t.yaml",
        "tasks:\n  - { name: A, ccr_instance: fast, command: \"echo a\", output_file: link/evil.txt }\n  - { name: B, ccr_instance: fast, command: \"echo b\", output_file: ok/b.txt }\n",
    );
    let out = submit(dir.path(), &redis.url(), &ns, &["t.yaml", "--no-report", "--results-dir", "res"], LIMIT);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(out.stderr.contains("refusing output_file `link/evil.txt`"), "{}", out.stderr);
    assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0, "nothing is written outside");
    assert!(dir.path().join("ok/b.txt").is_file(), "the other output is written");

    std::fs::write(dir.path().join("blocker"), "a file, not a directory").unwrap();
    write(dir.path(), "u.yaml", "tasks:\n  - { name: C, ccr_instance: fast, command: \"echo c\" }\n");
    let out = submit(dir.path(), &redis.url(), &ns, &["u.yaml", "--results-dir", "blocker/res"], LIMIT);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(out.stderr.contains("cannot write blocker/res/results_"), "{}", out.stderr);
}

/// Input that would exhaust memory or block: a device, a FIFO, an alias bomb, a file over the
/// size limit. Each ends at once in exit 2 with one clear message; none reads without bound.
#[test]
fn unbounded_or_blocking_task_files_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo.yaml");
    assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    let mut bomb = format!("tasks:\n  - {{name: t0, ccr_instance: fast, prompt: &a \"{}\"}}\n", "x".repeat(100_000));
    for i in 1..6000 {
        bomb.push_str(&format!("  - {{name: t{i}, ccr_instance: fast, prompt: *a}}\n"));
    }
    write(dir.path(), "bomb.yaml", &bomb);
    write(dir.path(), "ok.yaml", "tasks:\n  - { name: A, ccr_instance: fast, command: ls }\n");
    let cases: [(Vec<&str>, &str); 5] = [
        (vec!["plan", "/dev/zero"], "/dev/zero: is not a regular file"),
        (vec!["plan", fifo.to_str().unwrap()], "fifo.yaml: is not a regular file"),
        (vec!["plan", "bomb.yaml"], "the file expands to too much text"),
        (
            vec!["plan", "ok.yaml", "--max-file-size", "10"],
            "ok.yaml: is larger than 10 bytes; split it, or allow more with --max-file-size",
        ),
        (vec!["plan", dir.path().to_str().unwrap()], "is not a regular file"),
    ];
    for (args, says) in cases {
        let started = std::time::Instant::now();
        let out = submit(dir.path(), "redis://127.0.0.1:1", "zo", &args, Duration::from_secs(30));
        assert_eq!(out.code, 2, "{args:?}: {}", out.stderr);
        assert!(out.stderr.contains(says), "{args:?}: {}", out.stderr);
        assert!(!out.stderr.contains("budget") && !out.stderr.contains("ScalarBytes"), "no library jargon: {}", out.stderr);
        assert!(started.elapsed() < Duration::from_secs(10), "{args:?} took {:?}", started.elapsed());
    }
}

/// `zo-submit plan FILE | head`: the reader goes away early; zo-submit neither panics nor
/// prints a backtrace.
#[test]
fn a_closed_stdout_is_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let mut yaml = String::from("tasks:\n");
    for i in 0..5000 {
        yaml.push_str(&format!("  - {{ name: t{i}, ccr_instance: fast, command: ls }}\n"));
    }
    let file = write(dir.path(), "big.yaml", &yaml);
    let mut child = std::process::Command::new(bin("zo-submit"))
        .args(["plan", file.to_str().unwrap()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = [0u8; 16];
    std::io::Read::read_exact(child.stdout.as_mut().unwrap(), &mut first).unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// The 333 inputs of the public YAML conformance suite (`tests/data/yaml-test-suite`, with
/// its MIT licence): none is a task file, so each must end in exit 2 with a message that says what
/// to change — never a crash, a hang or the parser's or serde's own words.
#[test]
fn every_yaml_conformance_input_gets_a_clear_refusal() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("data/yaml-test-suite");
    let mut inputs: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("the YAML conformance inputs are expected in {} ({e})", dir.display()))
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    inputs.sort();
    assert!(inputs.len() >= 333, "{} inputs in {}", inputs.len(), dir.display());
    let jargon = ["unexpected event", "Option<", "from_multiple", "deserialize", "budget", "invalid type:"];
    let mut bad = Vec::new();
    let work = tempfile::tempdir().unwrap();
    for input in &inputs {
        let out = submit(work.path(), "redis://127.0.0.1:1", "zo", &["plan", input.to_str().unwrap()], Duration::from_secs(20));
        let first = out.stderr.lines().next().unwrap_or("").to_string();
        if out.code != 2 || first.is_empty() || jargon.iter().any(|j| out.stderr.contains(j)) || out.stderr.contains("panicked") {
            bad.push(format!("{}: exit {}: {first}", input.file_name().unwrap().to_string_lossy(), out.code));
        }
    }
    assert!(bad.is_empty(), "{} of {} inputs:\n{}", bad.len(), inputs.len(), bad.join("\n"));
}

/// Redis that refuses (a password is required), is out of memory, or a URL that is not one:
/// each one clear line that says what to change, with its documented exit code, and nothing
/// written.
#[test]
fn redis_refusals_and_malformed_urls_say_what_to_change() {
    let redis = Redis::start();
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "t.yaml", "tasks:\n  - { name: A, ccr_instance: fast, command: ls }\n");
    let mut c = redis.client();
    let _: () = redis::cmd("CONFIG").arg("SET").arg("maxmemory").arg(1).query(&mut c).unwrap();
    let out = submit(dir.path(), &redis.url(), &namespace("oom"), &["t.yaml", "--results-dir", "res"], LIMIT);
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert!(out.stderr.contains("Redis is out of memory") && out.stderr.contains("maxmemory"), "{}", out.stderr);
    let _: () = redis::cmd("CONFIG").arg("SET").arg("maxmemory").arg(0).query(&mut c).unwrap();
    let _: () = redis::cmd("CONFIG").arg("SET").arg("requirepass").arg("s3cret").query(&mut c).unwrap();
    let out = submit(dir.path(), &redis.url(), &namespace("auth"), &["t.yaml", "--results-dir", "res"], LIMIT);
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert!(out.stderr.contains("Redis refused the command") && out.stderr.contains("password"), "{}", out.stderr);
    let cfg = write(dir.path(), "w.yaml", "executor: { kind: simulate }\ninstances: [ { name: fast } ]\n");
    let worker = std::process::Command::new("timeout")
        .arg("30")
        .arg(bin("zo-worker"))
        .args(["--config", cfg.to_str().unwrap(), "--redis", &redis.url()])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&worker.stderr);
    assert_eq!(worker.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("Redis refused the command"), "{stderr}");
    for url in ["localhost:6379", "redis//x", "http://127.0.0.1:1"] {
        let out = submit(dir.path(), url, "zo", &["t.yaml"], LIMIT);
        assert_eq!(out.code, 2, "{url}: {}", out.stderr);
        assert!(out.stderr.contains("is not a Redis URL") && out.stderr.contains("redis://"), "{url}: {}", out.stderr);
        assert!(!out.stderr.contains("InvalidClientConfig") && !out.stderr.contains("creating a new object"), "{}", out.stderr);
    }
    assert!(!dir.path().join("res").exists(), "nothing is written");
}

/// `watch` of a finished run with `--no-save --no-report` writes nothing (no report, no
/// `output_file`); without them it writes them again.
#[test]
fn watch_writes_only_what_it_is_asked_to() {
    let redis = Redis::start();
    let ns = namespace("watchsave");
    let dir = tempfile::tempdir().unwrap();
    let _w = Worker::start(dir.path(), "w", "executor: { kind: simulate }\ninstances: [ { name: fast } ]\n", &redis.url(), &ns);
    write(dir.path(), "t.yaml", "tasks:\n  - { name: A, ccr_instance: fast, command: \"echo a\", output_file: out/a.txt }\n");
    let out = submit(dir.path(), &redis.url(), &ns, &["t.yaml", "--detach"], LIMIT);
    assert!(out.stderr.contains("submitted 1 task as run"), "1 task, not 1 tasks: {}", out.stderr);
    // The plan comes first, as the original tool printed it; `--quiet` leaves it out.
    assert!(
        out.stderr.starts_with("Execution plan: t.yaml\nTotal tasks: 1   Batches: 1\n\nBatch 1 (1 task):\n  - A [fast"),
        "{}",
        out.stderr
    );
    let quiet = submit(dir.path(), &redis.url(), &ns, &["execute", "t.yaml", "--detach", "--quiet"], LIMIT);
    assert!(quiet.code == 0 && quiet.stderr.is_empty(), "{}", quiet.stderr);
    let run = out.stdout.trim().to_string();
    // Connection options before the subcommand are the subcommand's.
    let before = std::process::Command::new(bin("zo-submit"))
        .args(["--redis", &redis.url(), "--namespace", &ns, "show", &run, "--json"])
        .env_remove("ZO_REDIS_URL")
        .env_remove("ZO_NAMESPACE")
        .output()
        .unwrap();
    assert!(before.status.success(), "{}", String::from_utf8_lossy(&before.stderr));
    assert!(String::from_utf8_lossy(&before.stdout).contains(&run), "{}", String::from_utf8_lossy(&before.stdout));
    let out = submit(dir.path(), &redis.url(), &ns, &["watch", &run, "--no-save", "--no-report", "--results-dir", "res"], LIMIT);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(!dir.path().join("res").exists() && !dir.path().join("out").exists(), "nothing written: {}", out.stderr);
    let out = submit(dir.path(), &redis.url(), &ns, &["watch", &run, "--results-dir", "res"], LIMIT);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(dir.path().join("out/a.txt").is_file(), "{}", out.stderr);
    let mut written: Vec<String> =
        std::fs::read_dir(dir.path().join("res")).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    written.sort();
    let exts: Vec<&str> = written.iter().map(|n| n.rsplit('.').next().unwrap()).collect();
    // report_….html, report_….md, results_….json: the document and both reports.
    assert_eq!(exts, ["html", "md", "json"], "{written:?}");
}

/// A task with 100,000 dependencies validates in linear time (it took 27 s when repeats were
/// looked for in a list); the plan shows two layers. Linear, not a fixed time: twice the
/// dependencies take at most about twice as long (the best of two runs each; quadratic
/// validation took four times as long, and more than 20 s).
#[test]
fn a_task_with_a_hundred_thousand_dependencies_validates() {
    let dir = tempfile::tempdir().unwrap();
    let file = |n: usize| -> String {
        let mut yaml = String::from("tasks:\n");
        for i in 0..n {
            yaml.push_str(&format!("  - {{ name: t{i}, ccr_instance: fast, command: ls }}\n"));
        }
        let deps: Vec<String> = (0..n).map(|i| format!("t{i}")).collect();
        yaml.push_str(&format!("  - {{ name: last, ccr_instance: fast, command: ls, dependencies: [{}] }}\n", deps.join(", ")));
        yaml
    };
    write(dir.path(), "half.yaml", &file(50_000));
    write(dir.path(), "deps.yaml", &file(100_000));
    let best = |name: &str| -> f64 {
        (0..2)
            .map(|_| {
                let t = std::time::Instant::now();
                let out = submit(dir.path(), "redis://127.0.0.1:1", "zo", &["plan", name], Duration::from_secs(120));
                assert_eq!(out.code, 0, "{}", out.stderr);
                if name == "deps.yaml" {
                    assert!(out.stdout.contains("Total tasks: 100001   Batches: 2"), "{}", &out.stdout[..200.min(out.stdout.len())]);
                }
                t.elapsed().as_secs_f64()
            })
            .fold(f64::INFINITY, f64::min)
    };
    let (half, full) = (best("half.yaml"), best("deps.yaml"));
    println!("validation: 50,000 dependencies {half:.2}s, 100,000 {full:.2}s");
    assert!(full <= 3.0 * half + 0.5, "not linear: 50,000 dependencies took {half:.2}s, 100,000 took {full:.2}s");
}
