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

/// The cases of `tests/data/shell-places.txt`: (command, the refusal's fragment or `None`).
fn place_cases() -> Vec<(String, Option<String>)> {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/data/shell-places.txt")).unwrap();
    let mut cases: Vec<(String, Option<String>)> = Vec::new();
    for line in text.lines() {
        match line.strip_prefix("=== ") {
            Some(head) => cases.push((String::new(), head.strip_prefix("refuse ").map(str::to_string))),
            None if !cases.is_empty() => cases.last_mut().unwrap().0.push_str(&format!("{line}\n")),
            None => {}
        }
    }
    cases.into_iter().map(|(c, w)| (format!("{}\n", c.trim_end()), w)).collect()
}

/// Every accepted form, rendered with a value that runs code wherever bash would evaluate
/// it, runs in real bash on this machine and creates nothing; an accepted `| int` form fails
/// to render. (Over SSH, below, through the whole chain.)
#[test]
fn accepted_places_run_hostile_values_as_data_in_bash() {
    let dir = tempfile::tempdir().unwrap();
    let mark = dir.path().join("pwned");
    let hostile = format!("a[$(touch {m})]\n$(touch {m}) `touch {m}`; touch {m}\nEOF\ntouch {m}", m = mark.display());
    // The value does run code where bash evaluates it, and the mark shows it.
    let control = std::process::Command::new("bash")
        .arg("-c")
        .arg("x=${1%%$'\\n'*}; (( x )) 2>/dev/null; :")
        .arg("_")
        .arg(&hostile)
        .current_dir(dir.path())
        .status();
    assert!(control.is_ok() && mark.exists(), "the control did not run the value");
    std::fs::remove_file(&mark).unwrap();
    let mut ran = 0;
    for (cmd, want) in place_cases() {
        if want.is_some() {
            continue;
        }
        let script = match zo_common::template::render_command(&cmd, &dep_a(&hostile)) {
            Ok(s) => s,
            Err(e) => {
                assert!(cmd.contains("| int") && e.contains("is not a number"), "{cmd:?}: {e}");
                continue;
            }
        };
        let out = std::process::Command::new("bash")
            .arg("-c")
            .arg(&script)
            .current_dir(dir.path())
            .stdin(std::process::Stdio::null())
            .output()
            .expect("bash runs");
        ran += 1;
        assert!(!mark.exists(), "{cmd:?} ran the value as code: {}", String::from_utf8_lossy(&out.stderr));
    }
    assert!(ran > 30, "{ran} forms ran");
}

/// Inputs where dependency `a` succeeded with `output`.
fn dep_a(output: &str) -> zo_common::template::Inputs {
    use zo_common::template::{DepInput, Inputs};
    let mut i = Inputs { run_id: "run-1".into(), task: "me".into(), ..Default::default() };
    let d = DepInput { status: "success".into(), output: output.into(), command_output: String::new(), exit_code: Some(0) };
    i.deps.insert("a".into(), (d, false));
    i
}

/// A task file with one task per command, each reading the output of task `a`.
fn place_tasks(a_command: &str, cases: &[(usize, &String)]) -> String {
    let mut y = format!("tasks:\n  - name: a\n    ccr_instance: fast\n    command: \"{a_command}\"\n");
    for (i, cmd) in cases {
        let body: String = cmd.lines().map(|l| format!("      {l}\n")).collect();
        y.push_str(&format!("  - name: place-{i}\n    ccr_instance: fast\n    dependencies: [a]\n    command: |\n{body}"));
    }
    y
}

/// Every refused place of the cases file is refused by `plan` (exit 2, each with its own
/// line); every accepted one runs over SSH with a value that runs code wherever bash would
/// evaluate it, and nothing is created; `| int` forms fail with class `template` instead.
#[test]
fn every_shell_place_is_refused_at_plan_time_or_runs_a_hostile_value_as_data() {
    let cases = place_cases();
    let refused: Vec<(usize, &String)> = cases.iter().enumerate().filter(|(_, (_, w))| w.is_some()).map(|(i, (c, _))| (i, c)).collect();
    let accepted: Vec<(usize, &String)> = cases.iter().enumerate().filter(|(_, (_, w))| w.is_none()).map(|(i, (c, _))| (i, c)).collect();
    assert!(refused.len() > 60 && accepted.len() > 30, "{} refused, {} accepted", refused.len(), accepted.len());
    let dir = tempfile::tempdir().unwrap();

    write(dir.path(), "refused.yaml", &place_tasks("echo x", &refused));
    let out = submit(dir.path(), "redis://127.0.0.1:1", "zo", &["plan", "refused.yaml"], LIMIT);
    assert_eq!(out.code, 2, "{}", out.stderr);
    for (i, _) in &refused {
        let fragment = cases[*i].1.as_deref().unwrap();
        let name = format!("task `place-{i}`");
        assert!(
            out.stderr.lines().any(|l| l.contains(&name) && l.contains(fragment)),
            "{:?} not refused with {fragment:?}:\n{}",
            cases[*i].0,
            out.stderr
        );
    }

    let redis = Redis::start();
    let sshd = Sshd::start();
    let ns = namespace("templates-places");
    let rec = sshd.path("rec");
    let mark = format!("/tmp/zo-pwn-{ns}");
    let _ = std::fs::remove_file(&mark);
    let hostile = format!("a[$(touch {mark})]\n$(touch {mark}) `touch {mark}`; touch {mark}\nEOF\ntouch {mark}");
    std::fs::write(rec.join("hostile"), &hostile).unwrap();
    write(dir.path(), "accepted.yaml", &place_tasks(&format!("cat {}/hostile", rec.display()), &accepted));
    let cfg = format!("{}{}instances:\n  - {{ name: fast, concurrency: 4 }}\n", sshd.executor_yaml(), sshd.agent_yaml());
    let _w = Worker::start(dir.path(), "w", &cfg, &redis.url(), &ns);
    let out = submit(dir.path(), &redis.url(), &ns, &["accepted.yaml", "--json", "--no-save", "--no-report"], LIMIT);
    assert!(out.code <= 1, "{}", out.stderr);
    let doc = json_doc(&out);
    let t = tasks_by_name(&doc);
    assert_eq!(t["a"]["output"].as_str(), Some(hostile.as_str()));
    for (i, cmd) in &accepted {
        let r = &t[format!("place-{i}").as_str()];
        let template_failure = r["error_class"] == "template";
        assert_eq!(template_failure, cmd.contains("| int") && !cmd.contains("default="), "{cmd:?}: {r}");
        if template_failure {
            assert!(r["error"].as_str().unwrap().contains("is not a number: a[$(touch"), "{r}");
        }
    }
    assert!(!std::path::Path::new(&mark).exists(), "an accepted place ran the value as code");
}

/// The worker's peak resident memory so far (`VmHWM`), in MiB.
fn peak_mib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() / 1024
}

/// A template that would build gigabytes passes `plan` but stops at its fuel on the worker:
/// the task fails with class `template`, the worker lives on (no redelivery), and its peak
/// memory grows by about 100 MB at most for one such render, and for four at once (each on
/// a fresh worker, whose peak says what the renders cost).
#[test]
fn a_template_bomb_fails_its_task_and_leaves_the_worker_standing() {
    let redis = Redis::start();
    let dir = tempfile::tempdir().unwrap();
    let bomb = r#"${{ range(100000) | join("y" * 100000) | length }}"#;
    let file = |n: usize| -> String {
        std::iter::once("tasks:\n".to_string())
            .chain((0..n).map(|i| format!("  - {{ name: bomb{i}, ccr_instance: fast, prompt: '{bomb}' }}\n")))
            .collect()
    };
    write(dir.path(), "one.yaml", &file(1));
    write(dir.path(), "four.yaml", &file(4));
    write(dir.path(), "warm.yaml", "tasks:\n  - { name: warm, ccr_instance: fast, prompt: '${{ run.id }}' }\n");
    let plan = submit(dir.path(), &redis.url(), "zo", &["plan", "one.yaml"], LIMIT);
    assert_eq!(plan.code, 0, "{}", plan.stderr);
    for (name, n) in [("one.yaml", 1), ("four.yaml", 4)] {
        let ns = namespace("templates-bomb");
        let mut w = Worker::start(dir.path(), &format!("w{n}"), SIMULATE, &redis.url(), &ns);
        // Warm: the worker has run a task, so its peak is what any task costs.
        assert_eq!(submit(dir.path(), &redis.url(), &ns, &["warm.yaml", "--no-save", "--no-report"], LIMIT).code, 0);
        let pid = w.pid().unwrap();
        let base = peak_mib(pid);
        let out = submit(dir.path(), &redis.url(), &ns, &[name, "--json", "--no-save", "--no-report"], LIMIT);
        assert_eq!(out.code, 1, "{}", out.stderr);
        let doc = json_doc(&out);
        let tasks = doc["tasks"].as_array().unwrap();
        assert_eq!(tasks.len(), n);
        for t in tasks {
            assert_eq!((t["error_class"].as_str(), t["attempts"].as_u64()), (Some("template"), Some(1)), "{t}");
            assert!(t["error"].as_str().unwrap().contains("rendering stopped at its limit"), "{t}");
        }
        let grew = peak_mib(pid).saturating_sub(base);
        eprintln!("{n} render(s) at once: the worker's peak grew by {grew} MiB");
        let bound = n as u64 * 130;
        assert!(grew <= bound, "{n} render(s) at once raised the worker's peak by {grew} MiB (at most {bound})");
        assert!(w.is_running(), "the worker died");
    }
}
