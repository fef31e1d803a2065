//! Workflows end to end through the real binaries (a private `redis-server`, `zo-submit`,
//! `zo-worker` with the simulated executor): the shipped examples run to their stated
//! outcome, trigger rules start tasks early and skip them with the right class, and the exit
//! code counts a branch not taken as no failure.

use std::time::Duration;

use serde_json::Value;
use zo_e2e::*;

const LIMIT: Duration = Duration::from_secs(120);
const SIMULATE: &str = "executor: { kind: simulate }\ninstances: [ { name: fast, concurrency: 4 }, { name: general, concurrency: 4 } ]\n";

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
        "skipped: condition not met: it runs on on_success of `Check Code Quality`, which ended with status failed"
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
    let redis = Redis::start();
    let ns = namespace("wf-checks");
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path().join("work");
    std::fs::create_dir(&work).unwrap();
    let cfg = format!(
        "executor: {{ kind: local }}\nagent: {{ mode: simulate }}\nworkdir: {}\ninstances: [ {{ name: fast, concurrency: 4 }} ]\n",
        work.display()
    );
    let _w = Worker::start(dir.path(), "w", &cfg, &redis.url(), &ns);
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
