//! `${{ … }}` templates end to end over SSH (a private `redis-server` and `sshd`, the real
//! binaries, the recording fake agent): hostile dependency outputs — quotes, `$(…)`,
//! backticks, a heredoc delimiter, newlines, non-UTF-8 bytes, 1 MB — reach commands
//! (unquoted, inside double quotes, in a heredoc) and prompts exactly, and run nothing.

use std::time::Duration;

use zo_e2e::*;

const LIMIT: Duration = Duration::from_secs(180);

#[test]
fn hostile_outputs_reach_commands_and_prompts_as_data() {
    let redis = Redis::start();
    let sshd = Sshd::start();
    let ns = namespace("templates-hostile");
    let dir = tempfile::tempdir().unwrap();
    let rec = sshd.path("rec");
    let mark = format!("/tmp/zo-pwn-{ns}");
    let _ = std::fs::remove_file(&mark);
    let evil = format!(
        "it's \"quoted\" $(touch {mark}) `touch {mark}` ${{HOME}} $HOME ${{{{ run.id }}}} \\ back\\slash {{{{ x }}}}\n\
         EOF\n'single' $'ansi' \"; touch {mark}; echo \"\n"
    );
    let mut payload = evil.clone().into_bytes();
    payload.extend_from_slice(&[0xff, 0xfe, b'\n']);
    for i in 0..10_000 {
        payload.extend_from_slice(format!("{i:06} {}\n", "x".repeat(93)).as_bytes());
    }
    assert!(payload.len() > 1_000_000);
    std::fs::write(rec.join("payload"), &payload).unwrap();
    std::fs::write(rec.join("small"), evil.as_bytes()).unwrap();
    let r = rec.display();
    let tasks = format!(
        r#"
tasks:
  - name: hostile
    ccr_instance: fast
    command: "cat {r}/payload"
  - name: Small Report
    ccr_instance: fast
    command: "cat {r}/small"
  - name: unquoted
    ccr_instance: fast
    dependencies: [hostile]
    command: "printf '%s' ${{{{ deps.hostile.output }}}} > {r}/unquoted.out"
  - name: quoted
    ccr_instance: fast
    dependencies: [hostile]
    command: "printf '%s' \"<${{{{ deps.hostile.output }}}}>\" > {r}/quoted.out"
  - name: heredoc
    ccr_instance: fast
    dependencies: [hostile]
    command: |
      cat > {r}/heredoc.out <<EOF
      [${{{{ deps.hostile.output }}}}]
      EOF
  - name: long_prompt
    ccr_instance: fast
    dependencies: [hostile]
    prompt: "Review: ${{{{ deps.hostile.output }}}}"
  - name: short_prompt
    ccr_instance: fast
    dependencies: [Small Report]
    prompt: "Review: ${{{{ deps['Small Report'].output }}}} (${{{{ deps['Small Report'].exit_code }}}}, ${{{{ deps['Small Report'].status }}}}, run ${{{{ run.id }}}}, ${{{{ task.name }}}})"
"#
    );
    write(dir.path(), "t.yaml", &tasks);
    let cfg = format!("{}{}instances:\n  - {{ name: fast, concurrency: 4 }}\n", sshd.executor_yaml(), sshd.agent_yaml());
    let _w = Worker::start(dir.path(), "w", &cfg, &redis.url(), &ns);
    let out = submit(dir.path(), &redis.url(), &ns, &["t.yaml", "--json", "--no-save", "--no-report"], LIMIT);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let doc = json_doc(&out);
    let t = tasks_by_name(&doc);
    let text = String::from_utf8_lossy(&payload).into_owned();
    assert!(text.contains('\u{FFFD}'), "invalid bytes are replaced, as in every output");
    assert_eq!(t["hostile"]["output"].as_str().unwrap(), text);
    let read = |name: &str| String::from_utf8(std::fs::read(rec.join(name)).unwrap()).unwrap();
    assert!(read("unquoted.out") == text, "unquoted: not the exact value");
    assert!(read("quoted.out") == format!("<{text}>"), "double quotes: not the exact value");
    assert!(read("heredoc.out") == format!("[{text}]\n"), "heredoc: not the exact value");
    assert!(!std::path::Path::new(&mark).exists(), "a value ran as code");

    // A prompt past the argument limit arrives on stdin, ahead of the (empty) command output.
    let (argv, stdin, _) = sshd.recorded("long_prompt");
    assert_eq!(argv.last().map(|a| String::from_utf8_lossy(a).into_owned()).as_deref(), Some("json"), "no prompt argument");
    assert!(stdin == format!("Review: {text}\n\n").into_bytes(), "the long prompt is not exact ({} bytes)", stdin.len());
    let (argv, _, _) = sshd.recorded("short_prompt");
    let run_id = doc["run_id"].as_str().unwrap();
    assert_eq!(String::from_utf8_lossy(argv.last().unwrap()), format!("Review: {evil} (0, success, run {run_id}, short_prompt)"));
    for name in ["unquoted", "quoted", "heredoc", "long_prompt", "short_prompt"] {
        assert_eq!(t[name]["status"], "success", "{name}: {}", t[name]["error"]);
    }
}

const SIMULATE: &str = "executor: { kind: simulate }\ninstances: [ { name: fast, concurrency: 4 }, { name: general, concurrency: 4 }, { name: reasoning, concurrency: 2 }, { name: code-review, concurrency: 2 }, { name: smart, concurrency: 2 } ]\n";

/// `tasks/examples/reports.yaml` as shipped: the summary's prompt holds the three answers and
/// its simulated answer is rendered from the JSON blocks they end with.
#[test]
fn the_reports_example_summary_reads_its_inputs() {
    let redis = Redis::start();
    let ns = namespace("templates-reports");
    let dir = tempfile::tempdir().unwrap();
    let _w = Worker::start(dir.path(), "w", SIMULATE, &redis.url(), &ns);
    let example = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../tasks/examples/reports.yaml")).unwrap();
    write(dir.path(), "reports.yaml", &example);
    let out = submit(dir.path(), &redis.url(), &ns, &["reports.yaml", "--json", "--no-save", "--no-report"], LIMIT);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let doc = json_doc(&out);
    let t = tasks_by_name(&doc);
    assert_eq!(
        t["Executive Summary"]["output"],
        "Security 7/10 (hard-coded token in config.py); performance 8/10 (N+1 queries in the orders view); tests 6/10 (payments module untested)."
    );
}

/// A `one_success` task that starts before its slow sibling ends sees it `pending` with empty
/// outputs; a template that reads a JSON field an output lacks fails its task with class
/// `template` and the reason, and what depends on it is skipped as after any failure.
#[test]
fn pending_dependencies_and_render_failures() {
    let redis = Redis::start();
    let ns = namespace("templates-pending");
    let dir = tempfile::tempdir().unwrap();
    let _w = Worker::start(dir.path(), "w", SIMULATE, &redis.url(), &ns);
    let tasks = r#"
tasks:
  - { name: slow, ccr_instance: fast, prompt: s, simulate: { duration: 3s, output: "slow done" } }
  - { name: quick, ccr_instance: fast, prompt: q, simulate: { duration: 100ms, output: "not json" } }
  - name: early
    ccr_instance: fast
    dependencies: [slow, quick]
    trigger_rule: one_success
    prompt: p
    simulate: { output: "slow=${{ deps.slow.status }}[${{ deps.slow.output }}|${{ deps.slow.exit_code }}] quick=${{ deps.quick.status }}[${{ deps.quick.output }}|${{ deps.quick.exit_code }}]" }
  - name: reads json
    ccr_instance: fast
    dependencies: [quick]
    prompt: "score ${{ deps.quick.json.score }}"
  - { name: after, ccr_instance: fast, prompt: a, dependencies: [reads json] }
"#;
    write(dir.path(), "t.yaml", tasks);
    let out = submit(dir.path(), &redis.url(), &ns, &["t.yaml", "--json", "--no-save", "--no-report"], LIMIT);
    assert_eq!(out.code, 1, "{}", out.stderr);
    let doc = json_doc(&out);
    let t = tasks_by_name(&doc);
    assert_eq!(t["early"]["output"], "slow=pending[|] quick=success[not json|0]");
    let r = &t["reads json"];
    assert_eq!((r["status"].as_str(), r["error_class"].as_str()), (Some("failed"), Some("template")), "{r}");
    let why = r["error"].as_str().unwrap();
    assert!(why.contains("deps.quick.json") && why.contains("holds no JSON"), "{why}");
    assert_eq!(t["after"]["status"], "skipped");
    assert_eq!(t["after"]["error_class"], "dependency");
}
