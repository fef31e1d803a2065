//! Run history: finished runs archived exactly once (worker or attached zo-submit, whoever
//! is first), read back by `runs`, `show`, `diff`, `search` and `stats` after Redis forgot the
//! run; `diff` of two runs and `stats` over them.

use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use zo_e2e::*;

const LIMIT: Duration = Duration::from_secs(120);

fn json(dir: &Path, redis: &Redis, ns: &str, args: &[&str]) -> Value {
    submit_json(dir, &redis.url(), ns, args, LIMIT)
}

fn file(a_output: &str, b_fails: bool, extra: &str) -> String {
    format!(
        "tasks:\n  - {{ name: A, ccr_instance: fast, prompt: p, tags: [alpha], simulate: {{ duration: 200ms, output: \"{a_output}\" }} }}\n  - name: B\n    ccr_instance: general\n    prompt: p\n    retry_policy: {{ max_retries: 1, retry_on: [model], backoff: fixed, base_delay: 100ms }}\n    simulate: {{ duration: 100ms, fail: {b_fails} }}\n{extra}"
    )
}

#[test]
fn runs_are_archived_once_and_outlive_redis() {
    let redis = Redis::start();
    let ns = namespace("history");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let arch = d.join("arch");
    let arch_arg = arch.to_str().unwrap();
    let w = Worker::start(
        d,
        "w",
        "executor: { kind: simulate }\narchive: arch\ninstances: [ { name: fast }, { name: general } ]\n",
        &redis.url(),
        &ns,
    );

    // A detached run: the worker that records its last result archives it.
    write(d, "one.yaml", &file("alpha one\\nsame line", true, ""));
    let sub = submit(d, &redis.url(), &ns, &["one.yaml", "--detach"], LIMIT);
    let one = sub.stdout.trim().to_string();
    let out = submit(d, &redis.url(), &ns, &["watch", &one, "--no-save", "--no-report", "--quiet"], LIMIT);
    assert_eq!(out.code, 1, "B failed: {}", out.stderr);
    wait_until("the worker archived the run", Duration::from_secs(20), || arch.join(format!("{one}.json")).is_file());
    let archived: Value = serde_json::from_str(&std::fs::read_to_string(arch.join(format!("{one}.json"))).unwrap()).unwrap();
    assert_eq!((archived["run_id"].as_str(), archived["summary"]["total_tasks"].as_u64()), (Some(one.as_str()), Some(2)));

    // An attached run with --archive on the same directory: archived once, by one of the two.
    write(
        d,
        "two.yaml",
        &file("alpha two\\nsame line", false, "  - { name: C, ccr_instance: fast, prompt: p, simulate: { duration: 100ms } }\n"),
    );
    let out = submit(d, &redis.url(), &ns, &["two.yaml", "--archive", arch_arg, "--no-save", "--no-report"], LIMIT);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let two = out.stderr.split("as run ").nth(1).and_then(|r| r.split_whitespace().next()).unwrap().to_string();
    std::thread::sleep(Duration::from_secs(1));
    let by_producer = out.stderr.contains(&format!("archived {}", arch.join(format!("{two}.json")).display()));
    let by_worker = w.log_text().lines().any(|l| l.contains("archived the finished run") && l.contains(&format!("{two}.json")));
    assert!(by_producer ^ by_worker, "exactly one process archived run {two} (producer {by_producer}, worker {by_worker})");
    assert_eq!(std::fs::read_dir(&arch).unwrap().count(), 2);

    // diff: the output diff of A, B's status, C only in the second run.
    let diff = json(d, &redis, &ns, &["diff", &one, &two, "--json"]);
    let task = |n: &str| diff["tasks"].as_array().unwrap().iter().find(|t| t["task_name"] == n).unwrap().clone();
    let a = task("A");
    let od = a["output_diff"].as_str().unwrap();
    assert!(od.contains("-alpha one") && od.contains("+alpha two") && od.contains(" same line"), "{od}");
    assert_eq!((task("B")["a"]["status"].as_str(), task("B")["b"]["status"].as_str()), (Some("failed"), Some("success")));
    assert!(task("C")["a"].is_null() && task("C")["changed"] == true);
    let text = submit(d, &redis.url(), &ns, &["diff", &one, &two, "--changed"], LIMIT);
    assert!(text.stdout.contains("+alpha two") && text.stdout.contains("differs"), "{}", text.stdout);

    // search, with filters.
    let hits = json(d, &redis, &ns, &["search", "ALPHA", "--json"]);
    assert_eq!(hits["hits"].as_array().unwrap().len(), 2, "{hits}");
    assert!(hits["hits"].as_array().unwrap().iter().all(|h| h["task_name"] == "A" && h["field"] == "output"));
    assert_eq!(json(d, &redis, &ns, &["search", "alpha", "--instance", "general", "--json"])["hits"], serde_json::json!([]));
    assert_eq!(json(d, &redis, &ns, &["search", "alpha", "--tag", "alpha", "--json"])["hits"].as_array().unwrap().len(), 2);

    // stats over both runs: B failed once for good after a retry, then succeeded.
    let st = json(d, &redis, &ns, &["stats", "--json"]);
    assert_eq!((st["runs"].as_u64(), st["runs_succeeded"].as_u64(), st["tasks"].as_u64()), (Some(2), Some(1), Some(5)), "{st}");
    let general = &st["by_instance"]["general"];
    assert_eq!(
        (general["tasks"].as_u64(), general["successful"].as_u64(), general["completion_rate"].as_f64()),
        (Some(2), Some(1), Some(0.5))
    );
    assert_eq!(general["retries"]["model"], 1, "{general}");
    assert!(st["by_instance"]["fast"]["duration_p95"].as_f64().unwrap() >= 0.1);

    // Redis forgets the first run (as its retention would): the archive still answers.
    let mut c = redis.client();
    let keys: Vec<String> = redis::cmd("KEYS").arg(format!("{ns}:run:{{{one}}}:*")).query(&mut c).unwrap();
    let _: () = redis::cmd("DEL").arg(&keys).query(&mut c).unwrap();
    let gone = submit(d, &redis.url(), &ns, &["show", &one], LIMIT);
    assert_eq!(gone.code, 2, "without the archive the run is unknown: {}", gone.stderr);
    let shown = json(d, &redis, &ns, &["show", &one, "--archive", arch_arg, "--json"]);
    assert_eq!((shown["run"]["status"].as_str(), shown["run"]["failed"].as_u64()), (Some("finished"), Some(1)));
    let runs = json(d, &redis, &ns, &["runs", "--archive", arch_arg, "--json"]);
    let ids: Vec<&str> = runs.as_array().unwrap().iter().map(|r| r["run_id"].as_str().unwrap()).collect();
    assert_eq!(ids, [two.as_str(), one.as_str()], "newest first, Redis and the archive together");
    assert_eq!(json(d, &redis, &ns, &["runs", "--json"]).as_array().unwrap().len(), 1);
    let diff = json(d, &redis, &ns, &["diff", &one, &two, "--archive", arch_arg, "--json"]);
    assert_eq!(diff["run_a"], one.as_str());
    assert_eq!(json(d, &redis, &ns, &["stats", "--archive", arch_arg, "--json"])["runs"], 2);
    let html = submit(d, &redis.url(), &ns, &["export", &one, "--format", "html", "--archive", arch_arg], LIMIT);
    assert!(html.code == 0 && html.stdout.contains("<svg"), "{}", html.stderr);
}

/// Runs that end without a worker recording their last result — cancelled from the command
/// line before any worker ran, or while their tasks wait for an instance no worker serves — are
/// archived by a worker's sweep, once.
#[test]
fn runs_ended_from_the_command_line_are_archived_by_a_worker() {
    let redis = Redis::start();
    let ns = namespace("history-sweep");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let arch = d.join("arch");
    write(d, "idle.yaml", "tasks:\n  - { name: Waits, ccr_instance: reasoning, prompt: p }\n  - { name: After, ccr_instance: reasoning, prompt: p, dependencies: [Waits] }\n");
    let detach = |what: &str| {
        let sub = submit(d, &redis.url(), &ns, &["idle.yaml", "--detach"], LIMIT);
        assert_eq!(sub.code, 0, "{what}: {}", sub.stderr);
        let run = sub.stdout.trim().to_string();
        let out = submit(d, &redis.url(), &ns, &["cancel", &run], LIMIT);
        assert_eq!(out.code, 0, "cancel {what}: {}", out.stderr);
        run
    };
    let before = detach("the run cancelled before any worker");
    let w = Worker::start(d, "w", "executor: { kind: simulate }\narchive: arch\ninstances: [ { name: fast } ]\n", &redis.url(), &ns);
    let during = detach("the run cancelled while a worker runs");
    for run in [&before, &during] {
        let path = arch.join(format!("{run}.json"));
        wait_until("the worker's sweep archived the cancelled run", Duration::from_secs(20), || path.is_file());
        let doc: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let states: Vec<&str> = doc["tasks"].as_array().unwrap().iter().map(|t| t["status"].as_str().unwrap()).collect();
        assert_eq!(states, ["cancelled", "cancelled"], "{doc}");
    }
    // Settled runs are not archived again on later sweeps.
    std::thread::sleep(Duration::from_secs(6));
    let lines = w.log_text().lines().filter(|l| l.contains("archived the finished run")).count();
    assert_eq!(lines, 2, "each run archived once:\n{}", w.log_text());

    // A run reopened by `resume` is archived again, once, with its new outcome.
    write(d, "slow.yaml", "tasks:\n  - { name: Slow, ccr_instance: fast, prompt: p, simulate: { duration: 2s } }\n");
    let sub = submit(d, &redis.url(), &ns, &["slow.yaml", "--detach"], LIMIT);
    let run = sub.stdout.trim().to_string();
    wait_until("the task to start", LIMIT, || {
        json(d, &redis, &ns, &["show", &run, "--json"])["running"].as_array().is_some_and(|r| !r.is_empty())
    });
    assert_eq!(submit(d, &redis.url(), &ns, &["cancel", &run], LIMIT).code, 0);
    let path = arch.join(format!("{run}.json"));
    let status = || -> Option<String> {
        let doc: Value = serde_json::from_str(&std::fs::read_to_string(&path).ok()?).ok()?;
        doc["tasks"][0]["status"].as_str().map(str::to_string)
    };
    wait_until("the cancelled run archived", Duration::from_secs(20), || status().as_deref() == Some("cancelled"));
    let out = submit(d, &redis.url(), &ns, &["resume", &run, "--quiet", "--no-save", "--no-report"], LIMIT);
    assert_eq!(out.code, 0, "{}", out.stderr);
    wait_until("the archive rewritten with the new outcome", Duration::from_secs(20), || status().as_deref() == Some("success"));
    std::thread::sleep(Duration::from_secs(6));
    let times = w.log_text().lines().filter(|l| l.contains("archived the finished run") && l.contains(&run)).count();
    assert_eq!(times, 2, "once per outcome:\n{}", w.log_text());
    let runs = json(d, &redis, &ns, &["runs", "--json"]);
    assert!(runs.as_array().unwrap().iter().any(|r| r["run_id"] == run.as_str() && r["failed"] == 0), "{runs}");

    // stats counts the cancelled tasks as cancelled (the two cancelled runs), not as failures.
    let st = json(d, &redis, &ns, &["stats", "--json"]);
    assert_eq!((st["cancelled"].as_u64(), st["by_instance"]["reasoning"]["cancelled"].as_u64()), (Some(4), Some(4)), "{st}");
    assert_eq!(st["by_instance"]["reasoning"]["failed"], 0, "{st}");
    let text = submit(d, &redis.url(), &ns, &["stats"], LIMIT).stdout;
    assert!(text.contains("not run to the end: 4 cancelled · 0 skipped because of a failure") && text.contains("Cancelled"), "{text}");
}
