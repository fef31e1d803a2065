//! Workflows end to end through the real binaries (a private `redis-server`, `zo-submit`,
//! `zo-worker` with the simulated executor): the shipped examples run to their stated
//! outcome, trigger rules start tasks early and skip them with the right class, and the exit
//! code counts a branch not taken as no failure.

use std::time::Duration;

use serde_json::Value;
use zo_e2e::*;

const LIMIT: Duration = Duration::from_secs(120);
const SIMULATE: &str = "executor: { kind: simulate }\ninstances: [ { name: fast, concurrency: 4 }, { name: general, concurrency: 4 } ]\n";

/// A private Redis and a worker with the local executor (simulated agent) whose tasks run in
/// `work`, so they can count their runs in files.
struct Local {
    redis: Redis,
    ns: String,
    dir: tempfile::TempDir,
    work: std::path::PathBuf,
    _worker: Worker,
}

impl Local {
    fn start(test: &str) -> Local {
        let redis = Redis::start();
        let ns = namespace(test);
        let dir = tempfile::tempdir().unwrap();
        let work = dir.path().join("work");
        std::fs::create_dir(&work).unwrap();
        let cfg = format!(
            "executor: {{ kind: local }}\nagent: {{ mode: simulate }}\nworkdir: {}\ninstances: [ {{ name: fast, concurrency: 4 }} ]\n",
            work.display()
        );
        let _worker = Worker::start(dir.path(), "w", &cfg, &redis.url(), &ns);
        Local { redis, ns, dir, work, _worker }
    }
}

fn ms(t: &Value, field: &str) -> u64 {
    rfc3339_ms(t[field].as_str().unwrap_or_else(|| panic!("{field} missing in {t}")))
}

/// `tasks/examples/conditional.yaml` as shipped: the check fails, its `on_failure` tasks run,
/// the deployment is skipped by its condition, the `all_done` summary runs; exit 1 (the check
/// failed). Without the failure the other branch runs and the run succeeds (exit 0) although
/// two tasks were skipped.
#[test]
fn the_conditional_example_takes_the_branch_its_check_decides() {
    let redis = Redis::start();
    let ns = namespace("wf-conditional");
    let dir = tempfile::tempdir().unwrap();
    let _w = Worker::start(dir.path(), "w", SIMULATE, &redis.url(), &ns);
    let example = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../tasks/examples/conditional.yaml")).unwrap();
    write(dir.path(), "failing.yaml", &example);
    let out = submit(dir.path(), &redis.url(), &ns, &["failing.yaml", "--json", "--no-save", "--no-report"], LIMIT);
    assert_eq!(out.code, 1, "the check failed: {}", out.stderr);
    let doc = json_doc(&out);
    let t = tasks_by_name(&doc);
    let status = |n: &str| t[n]["status"].as_str().unwrap().to_string();
    assert_eq!(status("Check Code Quality"), "failed");
    assert_eq!(status("Fix Code Issues"), "success");
    assert_eq!(status("Run Tests"), "success");
    assert_eq!(status("Summary"), "success");
    let deploy = &t["Deploy to Production"];
    assert_eq!(deploy["status"], "skipped");
    assert_eq!(deploy["error_class"], "condition");
    assert_eq!(
        deploy["error"],
        "skipped: condition not met: it runs when `Check Code Quality` succeeds (`on_success`), and `Check Code Quality` ended with status failed"
    );
    assert_eq!(deploy["conditions"], serde_json::json!([{ "task": "Check Code Quality", "when": "succeeded" }]));
    assert_eq!(t["Summary"]["trigger_rule"], "all_done");
    assert!(ms(&t["Fix Code Issues"], "started_at") >= ms(&t["Check Code Quality"], "timestamp"), "fixes start after the check");

    let passing = example.replace("simulate: { duration: 300ms, fail: true }", "simulate: { duration: 300ms }");
    assert_ne!(passing, example);
    write(dir.path(), "passing.yaml", &passing);
    let out = submit(dir.path(), &redis.url(), &ns, &["passing.yaml", "--json", "--no-save", "--no-report"], LIMIT);
    assert_eq!(out.code, 0, "a branch not taken is no failure: {}", out.stderr);
    let doc = json_doc(&out);
    let t = tasks_by_name(&doc);
    assert_eq!(t["Deploy to Production"]["status"], "success");
    for n in ["Fix Code Issues", "Run Tests"] {
        assert_eq!((t[n]["status"].as_str(), t[n]["error_class"].as_str()), (Some("skipped"), Some("condition")), "{n}");
    }
    assert_eq!(t["Summary"]["status"], "success");
    assert_eq!(doc["summary"]["skipped"], 2);
}

/// `one_success` starts as soon as its fast dependency succeeded, while the slow one still
/// runs; `all_success` after a failure is skipped with class `dependency` and makes the exit
/// code 1, and its `none_failed` dependent is skipped too (a failure's skip counts as failed).
#[test]
fn rules_start_early_and_skip_with_their_class() {
    let redis = Redis::start();
    let ns = namespace("wf-rules");
    let dir = tempfile::tempdir().unwrap();
    let _w = Worker::start(dir.path(), "w", SIMULATE, &redis.url(), &ns);
    write(
        dir.path(),
        "t.yaml",
        "tasks:
  - { name: Fast, ccr_instance: fast, prompt: p, simulate: { duration: 100ms } }
  - { name: Slow, ccr_instance: fast, prompt: p, simulate: { duration: 4s } }
  - { name: First, ccr_instance: fast, prompt: p, dependencies: [Fast, Slow], trigger_rule: one_success, simulate: { duration: 100ms } }
  - { name: Broken, ccr_instance: general, prompt: p, simulate: { duration: 100ms, fail: true } }
  - { name: Needs Broken, ccr_instance: general, prompt: p, dependencies: [Broken] }
  - { name: After That, ccr_instance: general, prompt: p, dependencies: [Needs Broken], trigger_rule: none_failed }
  - { name: Cleanup, ccr_instance: general, prompt: p, dependencies: [Needs Broken, Slow], trigger_rule: all_done, simulate: { duration: 100ms } }
",
    );
    let out = submit(dir.path(), &redis.url(), &ns, &["t.yaml", "--json", "--no-save", "--no-report"], LIMIT);
    assert_eq!(out.code, 1, "{}", out.stderr);
    let doc = json_doc(&out);
    let t = tasks_by_name(&doc);
    assert_eq!(t["First"]["status"], "success");
    let (first_start, slow_end) = (ms(&t["First"], "started_at"), ms(&t["Slow"], "timestamp"));
    assert!(
        first_start + 2000 < slow_end,
        "one_success started at {first_start}, {} ms before its slow sibling ended",
        slow_end - first_start
    );
    for n in ["Needs Broken", "After That"] {
        assert_eq!((t[n]["status"].as_str(), t[n]["error_class"].as_str()), (Some("skipped"), Some("dependency")), "{n}: {}", t[n]);
    }
    assert_eq!(t["After That"]["error"], "skipped: trigger rule none_failed can no longer be met: dependency `Needs Broken` was skipped");
    assert_eq!(t["Cleanup"]["status"], "success", "all_done runs whatever happened");
    assert!(ms(&t["Cleanup"], "started_at") >= slow_end, "all_done waits for every dependency");
}

/// `zo-submit cancel RUN --task NAME` counts as a failure for the cancelled task's
/// dependents: its `all_done` dependent runs, its plain one is skipped; the run goes on.
#[test]
fn cancelling_one_task_lets_its_all_done_dependents_run() {
    let redis = Redis::start();
    let ns = namespace("wf-cancel");
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "t.yaml",
        "tasks:
  - { name: Gate, ccr_instance: fast, prompt: p, simulate: { duration: 100ms } }
  - { name: Work, ccr_instance: fast, prompt: p, dependencies: [Gate], simulate: { duration: 100ms } }
  - { name: Plain, ccr_instance: fast, prompt: p, dependencies: [Work] }
  - { name: Report, ccr_instance: fast, prompt: p, dependencies: [Work], trigger_rule: all_done, simulate: { duration: 100ms } }
",
    );
    // No worker yet: cancel `Work` while it waits, then let a worker run the rest.
    let out = submit(dir.path(), &redis.url(), &ns, &["t.yaml", "--detach"], LIMIT);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let run = out.stdout.trim().to_string();
    let c = submit(dir.path(), &redis.url(), &ns, &["cancel", &run, "--task", "Work"], LIMIT);
    assert_eq!(c.code, 0, "{}", c.stderr);
    let _w = Worker::start(dir.path(), "w", SIMULATE, &redis.url(), &ns);
    let out = submit(dir.path(), &redis.url(), &ns, &["watch", &run, "--json", "--no-save", "--no-report"], LIMIT);
    assert_eq!(out.code, 1, "a cancelled task fails the run: {}", out.stderr);
    let t = tasks_by_name(&json_doc(&out));
    assert_eq!(t["Gate"]["status"], "success");
    assert_eq!(t["Work"]["status"], "cancelled");
    assert_eq!((t["Plain"]["status"].as_str(), t["Plain"]["error_class"].as_str()), (Some("skipped"), Some("dependency")));
    assert_eq!(t["Report"]["status"], "success");
}

/// `expect:` and `gate:` run on the worker after the task: met, they change nothing; unmet,
/// the task fails with class `validation` / `gate` and the reason, its output kept; a gate over
/// a field the output lacks fails with that message; `retry_on: [gate]` retries a flaky answer
/// until it passes (here a command whose second run scores higher).
#[test]
fn checks_and_gates_pass_fail_and_retry() {
    let Local { redis, ns, dir, work, _worker } = Local::start("wf-checks");
    write(
        dir.path(),
        "t.yaml",
        r#"tasks:
  - name: Lint
    ccr_instance: fast
    command: "echo '{\"quality_score\": 8.5, \"coverage\": \"85%\"}'"
    gate: "quality_score > 8.0 and coverage > 80%"
    expect: { json: true, contains: quality_score, json_schema: { type: object, required: [coverage] } }
  - name: Low
    ccr_instance: fast
    command: "printf 'The result:\n```json\n{\"quality_score\": 6}\n```\n'"
    gate: "quality_score > 8.0"
  - name: Missing
    ccr_instance: fast
    command: "echo '{\"lines\": 10}'"
    gate: "coverage > 80%"
  - name: Wordy
    ccr_instance: fast
    command: "echo 'Traceback: something broke'"
    expect: { not_regex: "(?i)traceback", min_length: 5 }
  - name: Flaky
    ccr_instance: fast
    command: "n=$(cat runs 2>/dev/null || echo 0); echo $((n+1)) > runs; if [ \"$n\" -ge 1 ]; then echo '{\"score\": 9}'; else echo '{\"score\": 3}'; fi"
    gate: "score > 8"
    retry_policy: { max_retries: 2, retry_on: [gate], base_delay: 100ms, jitter: false }
"#,
    );
    let out = submit(dir.path(), &redis.url(), &ns, &["t.yaml", "--json", "--no-save", "--no-report"], LIMIT);
    assert_eq!(out.code, 1, "{}", out.stderr);
    let t = tasks_by_name(&json_doc(&out));
    assert_eq!(t["Lint"]["status"], "success", "{}", t["Lint"]);
    let low = &t["Low"];
    assert_eq!((low["status"].as_str(), low["error_class"].as_str()), (Some("failed"), Some("gate")));
    assert_eq!(low["error"], "gate `quality_score > 8.0` not met: quality_score = 6");
    assert!(low["output"].as_str().unwrap().contains("```json"), "the output is kept: {}", low["output"]);
    assert_eq!(t["Missing"]["error"], "gate `coverage > 80%`: the output has no field `coverage`");
    let wordy = &t["Wordy"];
    assert_eq!((wordy["status"].as_str(), wordy["error_class"].as_str()), (Some("failed"), Some("validation")));
    assert_eq!(wordy["error"], "expect: the output matches regex `(?i)traceback` (at `Traceback`)");
    let flaky = &t["Flaky"];
    assert_eq!(flaky["status"], "success", "{flaky}");
    assert_eq!(flaky["attempts"], 2);
    assert_eq!(flaky["attempt_history"][0]["error_class"], "gate");
    assert_eq!(std::fs::read_to_string(work.join("runs")).unwrap().trim(), "2", "ran twice, no more");
}

/// Wait until stage `stage` of the run says `want` (the producer is detached).
fn wait_stage(redis: &Redis, ns: &str, run: &str, stage: &str, want: &str) {
    redis.wait_run_field(ns, run, "stages", stage, want, LIMIT);
}

/// The seed's pipeline example as shipped, detached: both gates pass, Production waits in
/// `awaiting_approval` (its keys without an expiry), `approve` runs it (who and when in the
/// results); `reject` skips it with class `rejected` and the run still exits 0. Approving an
/// unknown run, an unknown stage, a stage not awaiting approval: exit 2, nothing changed.
#[test]
fn the_pipeline_example_waits_for_approval_then_runs_or_is_rejected() {
    let redis = Redis::start();
    let ns = namespace("wf-pipeline");
    let dir = tempfile::tempdir().unwrap();
    let cfg = "executor: { kind: simulate }\ninstances: [ { name: fast }, { name: general }, { name: smart } ]\n";
    let _w = Worker::start(dir.path(), "w", cfg, &redis.url(), &ns);
    let example = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../tasks/examples/pipeline.yaml")).unwrap();
    write(dir.path(), "pipeline.yaml", &example);
    for decision in ["approve", "reject"] {
        let out = submit(dir.path(), &redis.url(), &ns, &["pipeline.yaml", "--detach"], LIMIT);
        assert_eq!(out.code, 0, "{}", out.stderr);
        let run = out.stdout.trim().to_string();
        wait_stage(&redis, &ns, &run, "Production", "awaiting");
        let state: String = redis::cmd("HGET").arg(format!("{ns}:run:{{{run}}}:state")).arg(2).query(&mut redis.client()).unwrap();
        assert_eq!(state, "awaiting_approval");
        let ttl: i64 = redis::cmd("TTL").arg(format!("{ns}:run:{{{run}}}:meta")).query(&mut redis.client()).unwrap();
        assert_eq!(ttl, -1, "a run waiting for approval does not expire");
        // An attached zo-submit says which command approves, and keeps waiting.
        let waiting = submit_for(dir.path(), &redis.url(), &ns, &["watch", &run, "--no-save", "--no-report"], Duration::from_secs(2));
        assert!(waiting.contains(&format!("stage `Production` awaits approval: run `zo-submit approve {run} Production`")), "{waiting}");
        for (args, msg) in [
            (vec!["approve", "20000101-000000-0000", "Production"], "does not exist"),
            (vec!["approve", run.as_str(), "Prod"], "has no stage `Prod`; its stages: Development, Testing, Production"),
            (vec!["approve", run.as_str(), "Testing"], "needs no approval"),
        ] {
            let bad = submit(dir.path(), &redis.url(), &ns, &args, LIMIT);
            assert_eq!(bad.code, 2, "{args:?}: {}", bad.stderr);
            assert!(bad.stderr.contains(msg), "{args:?}: {}", bad.stderr);
        }
        let args: Vec<&str> = if decision == "approve" {
            vec!["approve", &run, "Production"]
        } else {
            vec!["reject", &run, "Production", "--reason", "not today"]
        };
        let d = submit(dir.path(), &redis.url(), &ns, &args, LIMIT);
        assert_eq!(d.code, 0, "{}", d.stderr);
        assert!(
            d.stderr.starts_with(&format!("{decision}{} stage `Production`", if decision == "approve" { "d" } else { "ed" })),
            "{}",
            d.stderr
        );
        let again = submit(dir.path(), &redis.url(), &ns, &args, LIMIT);
        assert_eq!(again.code, 2, "a decided stage: {}", again.stderr);
        assert!(again.stderr.contains("is not awaiting approval: it was"), "{}", again.stderr);
        let out = submit(dir.path(), &redis.url(), &ns, &["watch", &run, "--json", "--no-save", "--no-report"], LIMIT);
        assert_eq!(out.code, 0, "{decision}: {}", out.stderr);
        let doc = json_doc(&out);
        let late = submit(dir.path(), &redis.url(), &ns, &["cancel", &run], LIMIT);
        assert_eq!((late.code, late.stderr.trim()), (0, format!("run {run} had already finished; nothing was cancelled").as_str()));
        let t = tasks_by_name(&doc);
        assert_eq!(t["Lint Code"]["status"], "success");
        assert_eq!(t["Run Tests"]["status"], "success");
        assert_eq!(t["Deploy"]["stage"], "Production");
        let stage = &doc["stages"][0];
        assert_eq!(stage["name"], "Production");
        assert!(stage["by"].as_str().unwrap().contains('@'), "who decided: {stage}");
        assert!(stage["at"].as_str().is_some());
        if decision == "approve" {
            assert_eq!(t["Deploy"]["status"], "success");
            assert_eq!(stage["status"], "approved");
        } else {
            assert_eq!((t["Deploy"]["status"].as_str(), t["Deploy"]["error_class"].as_str()), (Some("skipped"), Some("rejected")));
            assert!(t["Deploy"]["error"].as_str().unwrap().ends_with(": not today"), "{}", t["Deploy"]["error"]);
            assert_eq!((stage["status"].as_str(), stage["reason"].as_str()), (Some("rejected"), Some("not today")));
        }
    }
}

/// The reliability suite on a workflow: a pipeline with trigger rules, gates, an
/// `on_success`/`on_failure` branch and an approval, run detached while one of three workers
/// is killed with SIGKILL every second (six times) and Redis (AOF) is killed and restarted. Every task ends as
/// its rules say, once, and the approval takes effect.
#[test]
fn a_workflow_survives_kill_9_and_a_redis_restart() {
    let mut redis = Redis::start_aof();
    let ns = namespace("wf-faults");
    let dir = tempfile::tempdir().unwrap();
    let n = 40;
    let mut yaml = String::from("pipeline:\n  name: faults\n  stages:\n    - name: Build\n      tasks:\n");
    for i in 0..n {
        let ms = 300 + (i * 53) % 700;
        yaml.push_str(&format!(
            "        - {{ name: b{i}, ccr_instance: fast, command: \"build {i}\", gate: \"score >= 5\", simulate: {{ duration: {ms}ms, output: '{{\"score\": {}}}' }} }}\n",
            5 + i % 5
        ));
    }
    yaml.push_str(
        "        - { name: Check, ccr_instance: fast, prompt: p, simulate: { duration: 500ms, fail: true }, on_success: [Ship], on_failure: [Fix] }
        - { name: Ship, ccr_instance: fast, prompt: p }
        - { name: Fix, ccr_instance: fast, prompt: p, simulate: { duration: 400ms } }
    - name: Verify
      requires: Build
      tasks:
        - { name: Any, ccr_instance: fast, prompt: p, dependencies: [Fix, Ship], trigger_rule: one_success }
        - { name: Report, ccr_instance: fast, prompt: p, dependencies: [Ship, Fix], trigger_rule: all_done }
    - name: Release
      requires: Verify
      approval_required: true
      tasks:
        - { name: Deploy, ccr_instance: fast, prompt: p, simulate: { duration: 300ms } }
",
    );
    write(dir.path(), "wf.yaml", &yaml);
    let cfg = "executor: { kind: simulate }\nlease: 2s\nmax_deliveries: 50\ninstances: [ { name: fast, concurrency: 4 } ]\n";
    let mut workers: Vec<Worker> = (0..3).map(|i| Worker::start(dir.path(), &format!("w{i}-0"), cfg, &redis.url(), &ns)).collect();
    let out = submit(dir.path(), &redis.url(), &ns, &["wf.yaml", "--detach"], LIMIT);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let run = out.stdout.trim().to_string();
    let deadline = std::time::Instant::now() + LIMIT;
    let (mut kills, mut restarted) = (0, false);
    loop {
        std::thread::sleep(Duration::from_millis(1000));
        let stage: Option<String> = match redis.client_checked() {
            Some(mut c) => redis::cmd("HGET").arg(format!("{ns}:run:{{{run}}}:stages")).arg("Release").query(&mut c).unwrap_or(None),
            None => None,
        };
        if stage.as_deref() == Some("awaiting") {
            break;
        }
        if std::time::Instant::now() > deadline {
            let mut c = redis.client();
            let meta: std::collections::HashMap<String, String> =
                redis::cmd("HGETALL").arg(format!("{ns}:run:{{{run}}}:meta")).query(&mut c).unwrap();
            let states: std::collections::HashMap<String, String> =
                redis::cmd("HGETALL").arg(format!("{ns}:run:{{{run}}}:state")).query(&mut c).unwrap();
            let logs: Vec<String> = workers.iter_mut().map(|w| w.log_text().lines().rev().take(5).collect::<Vec<_>>().join("\n")).collect();
            panic!("the run never reached its approval: {meta:?}\nstates {states:?}\nlogs {logs:?}");
        }
        if kills >= 6 {
            continue;
        }
        let victim = kills % workers.len();
        workers[victim].kill9();
        kills += 1;
        workers[victim] = Worker::start(dir.path(), &format!("w{victim}-{kills}"), cfg, &redis.url(), &ns);
        if kills == 3 && !restarted {
            redis.restart();
            restarted = true;
        }
    }
    assert!(kills >= 2 && restarted, "the faults happened (kills {kills}, Redis restarted {restarted})");
    let d = submit(dir.path(), &redis.url(), &ns, &["approve", &run, "Release"], LIMIT);
    assert_eq!(d.code, 0, "{}", d.stderr);
    let out = submit(dir.path(), &redis.url(), &ns, &["watch", &run, "--json", "--no-save", "--no-report"], LIMIT);
    assert_eq!(out.code, 1, "Check failed: {}", out.stderr);
    let doc = json_doc(&out);
    let tasks = doc["tasks"].as_array().unwrap();
    assert_eq!(tasks.len(), n + 6);
    let t = tasks_by_name(&doc);
    // Each task counted once by Redis as it ended (the document has one row per task whatever
    // happened): every task done, one failed (Check), one skipped (Ship, no result stored).
    let r = redis.recorded(&ns, &run);
    let ok = tasks.iter().filter(|t| t["status"] == "success").count() as u64;
    let all = (n + 6) as u64;
    assert_eq!((r.done, r.success, r.failed, r.skipped, r.results), (all, ok, 1, 1, all - 1), "each task recorded once: {r:?}");
    for i in 0..n {
        assert_eq!(t[&format!("b{i}")]["status"], "success", "b{i}: {}", t[&format!("b{i}")]);
    }
    let status = |name: &str| t[name]["status"].as_str().unwrap().to_string();
    assert_eq!(status("Check"), "failed");
    assert_eq!((status("Ship"), t["Ship"]["error_class"].as_str()), ("skipped".to_string(), Some("condition")));
    for name in ["Fix", "Any", "Report", "Deploy"] {
        assert_eq!(status(name), "success", "{name}: {}", t[name]);
    }
    for task in tasks {
        assert!(task["attempts"].as_u64().unwrap() <= 1, "{} ran twice: {task}", task["task_name"]);
    }
    assert_eq!(doc["stages"][0]["status"], "approved");
}

/// `zo-submit resume RUN` after a failure: the failed task runs again as attempt 2, the tasks
/// it had skipped (by its failure, or by an `on_success` condition) are evaluated again and
/// run; successes are reused, not run again. Resuming a running run or a task that succeeded
/// changes nothing (exit 2).
#[test]
fn resume_runs_what_did_not_succeed_and_reuses_the_rest() {
    let Local { redis, ns, dir, work, _worker } = Local::start("wf-resume");
    let count = |name: &str| format!("n=$(cat {name} 2>/dev/null || echo 0); echo $((n+1)) > {name}");
    write(
        dir.path(),
        "t.yaml",
        &format!(
            "tasks:
  - {{ name: Prep, ccr_instance: fast, command: \"{}\" }}
  - {{ name: Check, ccr_instance: fast, command: \"{}; [ $n -ge 1 ]\", dependencies: [Prep], on_success: [Ship], on_failure: [Fix] }}
  - {{ name: Ship, ccr_instance: fast, command: \"{}\" }}
  - {{ name: Fix, ccr_instance: fast, command: \"{}\" }}
  - {{ name: After, ccr_instance: fast, command: \"true\", dependencies: [Check] }}
",
            count("prep"),
            count("check"),
            count("ship"),
            count("fix")
        ),
    );
    let out = submit(dir.path(), &redis.url(), &ns, &["t.yaml", "--json", "--no-save", "--no-report"], LIMIT);
    assert_eq!(out.code, 1, "{}", out.stderr);
    let doc = json_doc(&out);
    let run = doc["run_id"].as_str().unwrap().to_string();
    let t = tasks_by_name(&doc);
    let got = |t: &std::collections::HashMap<String, Value>, n: &str| {
        (t[n]["status"].as_str().unwrap().to_string(), t[n]["error_class"].as_str().map(String::from))
    };
    assert_eq!(got(&t, "Check"), ("failed".into(), Some("command".into())));
    assert_eq!(got(&t, "Ship"), ("skipped".into(), Some("condition".into())));
    assert_eq!(got(&t, "After"), ("skipped".into(), Some("dependency".into())));
    assert_eq!(got(&t, "Fix").0, "success");

    let bad = submit(dir.path(), &redis.url(), &ns, &["resume", &run, "--task", "Prep"], LIMIT);
    assert_eq!(bad.code, 2, "{}", bad.stderr);
    assert!(bad.stderr.contains("cannot be resumed: it is success"), "{}", bad.stderr);
    let bad = submit(dir.path(), &redis.url(), &ns, &["resume", &run, "--task", "After"], LIMIT);
    assert!(bad.stderr.contains("skipped because `Check` did not succeed; resume that one"), "{}", bad.stderr);

    let out = submit(dir.path(), &redis.url(), &ns, &["resume", &run, "--json", "--no-save", "--no-report"], LIMIT);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let doc = json_doc(&out);
    assert_eq!(doc["run_id"], run.as_str(), "the same run");
    let t = tasks_by_name(&doc);
    for n in ["Prep", "Check", "Ship", "Fix", "After"] {
        assert_eq!(t[n]["status"], "success", "{n}: {}", t[n]);
    }
    assert_eq!(t["Check"]["attempts"], 2);
    assert_eq!(t["Check"]["attempt_history"][0]["status"], "failed");
    for (file, runs) in [("prep", "1"), ("check", "2"), ("ship", "1"), ("fix", "1")] {
        assert_eq!(std::fs::read_to_string(work.join(file)).unwrap().trim(), runs, "{file} ran {runs} time(s)");
    }
    let again = submit(dir.path(), &redis.url(), &ns, &["resume", &run], LIMIT);
    assert_eq!(again.code, 0);
    assert!(again.stderr.contains("nothing to resume"), "{}", again.stderr);
}

/// Wait until the run's task `idx` is in state `want`.
fn wait_state(redis: &Redis, ns: &str, run: &str, idx: u32, want: &str) {
    redis.wait_run_field(ns, run, "state", &idx.to_string(), want, LIMIT);
}

/// Approval belongs to the stage, not an attempt: a run cancelled while its gated stage
/// waited and then resumed (whole, or `--task` of the gated task) waits for the approval
/// again, the watcher naming the command, and runs the stage only once approved (the
/// approver in the results); a stage approved before the cancel stays approved; `dead retry`
/// of the task that feeds the stage brings it to the approval, not past it; a rejected stage
/// is not run by `resume`.
#[test]
fn resume_and_dead_retry_wait_for_the_approval_again() {
    let Local { redis, ns, dir, work, _worker } = Local::start("wf-approval-resume");
    write(
        dir.path(),
        "p.yaml",
        r#"
pipeline:
  name: gated
  stages:
    - name: Dev
      tasks:
        - { name: Check, ccr_instance: fast, command: "[ -f ok ]", retry_policy: { max_retries: 0, retry_on: [command] } }
    - name: Prod
      requires: Dev
      approval_required: true
      tasks:
        - name: Deploy
          ccr_instance: fast
          command: "echo x >> deploys; if [ -f hold ]; then rm hold; sleep 60; fi"
"#,
    );
    let deploys = || std::fs::read_to_string(work.join("deploys")).map(|s| s.lines().count()).unwrap_or(0);
    let detach = |args: &[&str]| {
        let out = submit(dir.path(), &redis.url(), &ns, args, LIMIT);
        assert_eq!(out.code, 0, "{args:?}: {}", out.stderr);
        out.stdout.trim().to_string()
    };
    let finished = |run: &str| redis.wait_run_field(&ns, run, "meta", "status", "finished", LIMIT);
    std::fs::write(work.join("ok"), "").unwrap();

    // Cancelled while waiting, resumed whole or by `--task Deploy`: waits again.
    for resume in [vec!["resume"], vec!["resume", "--task", "Deploy"]] {
        let run = detach(&["p.yaml", "--detach"]);
        wait_stage(&redis, &ns, &run, "Prod", "awaiting");
        detach(&["cancel", &run]);
        finished(&run);
        let mut args = resume.clone();
        args.insert(1, &run);
        args.push("--detach");
        detach(&args);
        wait_state(&redis, &ns, &run, 1, "awaiting_approval");
        let waiting = submit_for(dir.path(), &redis.url(), &ns, &["watch", &run, "--no-save", "--no-report"], Duration::from_secs(2));
        assert!(waiting.contains(&format!("stage `Prod` awaits approval: run `zo-submit approve {run} Prod`")), "{waiting}");
        assert_eq!(deploys(), 0, "Deploy ran without its approval after {resume:?}");
        detach(&["approve", &run, "Prod"]);
        let out = submit(dir.path(), &redis.url(), &ns, &["watch", &run, "--json", "--no-save", "--no-report"], LIMIT);
        assert_eq!(out.code, 0, "{}", out.stderr);
        let doc = json_doc(&out);
        let t = tasks_by_name(&doc);
        // Its first attempt: cancelled while it waited, it had never run.
        assert_eq!((t["Deploy"]["status"].as_str(), t["Deploy"]["attempts"].as_u64()), (Some("success"), Some(1)), "{}", t["Deploy"]);
        let stage = &doc["stages"][0];
        assert_eq!(stage["status"], "approved", "{stage}");
        assert!(stage["by"].as_str().unwrap().contains('@'), "{stage}");
        assert_eq!(deploys(), 1);
        std::fs::remove_file(work.join("deploys")).unwrap();
    }

    // Approved, then cancelled while the stage runs: resumed, it runs without a new approval.
    std::fs::write(work.join("hold"), "").unwrap();
    let run = detach(&["p.yaml", "--detach"]);
    wait_stage(&redis, &ns, &run, "Prod", "awaiting");
    detach(&["approve", &run, "Prod"]);
    wait_state(&redis, &ns, &run, 1, "running");
    detach(&["cancel", &run]);
    finished(&run);
    let out = submit(dir.path(), &redis.url(), &ns, &["resume", &run, "--json", "--no-save", "--no-report"], LIMIT);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let doc = json_doc(&out);
    assert_eq!(tasks_by_name(&doc)["Deploy"]["status"], "success");
    assert_eq!(doc["stages"][0]["status"], "approved");
    assert_eq!(deploys(), 2, "the cancelled attempt and the resumed one");
    std::fs::remove_file(work.join("deploys")).unwrap();

    // The task feeding the stage fails; `dead retry` runs it and the stage waits; rejected,
    // `resume` does not run it.
    std::fs::remove_file(work.join("ok")).unwrap();
    let run = detach(&["p.yaml", "--detach"]);
    finished(&run);
    std::fs::write(work.join("ok"), "").unwrap();
    detach(&["dead", "retry", "--all", "--run", &run]);
    wait_state(&redis, &ns, &run, 1, "awaiting_approval");
    assert_eq!(deploys(), 0);
    detach(&["reject", &run, "Prod", "--reason", "no"]);
    finished(&run);
    let again = submit(dir.path(), &redis.url(), &ns, &["resume", &run, "--task", "Deploy"], LIMIT);
    assert_eq!(again.code, 2, "{}", again.stderr);
    let again = submit(dir.path(), &redis.url(), &ns, &["resume", &run], LIMIT);
    assert!(again.stderr.contains("nothing to resume"), "{}", again.stderr);
    assert_eq!(deploys(), 0, "a rejected stage never runs");
}

/// Four `resume`s of one failed run at once: exactly one resumes it (exit 0, the failed task
/// runs once more). The others exit 2 saying the run is already running — or, when one
/// starts only after the resumed run has finished (a loaded machine can delay a process
/// start past the task's 2 s), exit 0 finding nothing to resume.
#[test]
fn concurrent_resumes_resume_once() {
    let Local { redis, ns, dir, work, _worker } = Local::start("wf-resume-race");
    // Once it succeeds it takes 2 s, so the resumed run is still going while the others look.
    write(dir.path(), "t.yaml", "tasks:\n  - { name: Flaky, ccr_instance: fast, command: \"echo x >> runs; [ -f ok ] && sleep 2\" }\n");
    let out = submit(dir.path(), &redis.url(), &ns, &["t.yaml", "--json", "--no-save", "--no-report"], LIMIT);
    assert_eq!(out.code, 1, "{}", out.stderr);
    let run = json_doc(&out)["run_id"].as_str().unwrap().to_string();
    std::fs::write(work.join("ok"), "").unwrap();
    let outs: Vec<Outcome> = std::thread::scope(|s| {
        let handles: Vec<_> =
            (0..4).map(|_| s.spawn(|| submit(dir.path(), &redis.url(), &ns, &["resume", &run, "--detach"], LIMIT))).collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let said: Vec<(i32, &str)> = outs.iter().map(|o| (o.code, o.stderr.trim())).collect();
    let won: Vec<&Outcome> = outs.iter().filter(|o| o.stderr.contains("resumed run")).collect();
    assert_eq!(won.len(), 1, "{said:?}");
    assert_eq!(won[0].code, 0, "{said:?}");
    for lost in outs.iter().filter(|o| !o.stderr.contains("resumed run")) {
        let refused = lost.code == 2 && (lost.stderr.contains("is already running") || lost.stderr.contains("is still running"));
        let too_late = lost.code == 0 && lost.stderr.contains("nothing to resume");
        assert!(refused || too_late, "{said:?}");
    }
    let out = submit(dir.path(), &redis.url(), &ns, &["watch", &run, "--json", "--no-save", "--no-report"], LIMIT);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(tasks_by_name(&json_doc(&out))["Flaky"]["attempts"], 2);
    assert_eq!(std::fs::read_to_string(work.join("runs")).unwrap().lines().count(), 2, "ran twice: the first time and one resume");
}
