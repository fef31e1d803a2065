//! Resource limits across workers (`resource_limits:`): concurrency caps held as slots in
//! Redis by every worker process, measured from the tasks' own start and end times; a worker
//! killed while holding slots; a capped run beside an uncapped one in the same stream.

use std::time::{Duration, Instant};

use serde_json::Value;
use zo_e2e::*;

const LIMIT: Duration = Duration::from_secs(240);

/// `n` tasks `PREFIXi` of `duration` per instance, round-robin over `instances`.
fn tasks(prefix: &str, n: usize, instances: &[&str], duration: &str) -> String {
    (0..n)
        .map(|i| {
            let inst = instances[i % instances.len()];
            format!("  - {{ name: {prefix}{i}, ccr_instance: {inst}, prompt: \"p\", simulate: {{ duration: {duration} }} }}\n")
        })
        .collect()
}

fn doc_of(out: &Outcome) -> Value {
    assert!(out.code == 0 || out.code == 1, "zo-submit exited {}:\n{}", out.code, out.stderr);
    serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}\nstderr:\n{}", out.stdout, out.stderr))
}

/// Each task's run as (start, end) in Unix ms, from its own record.
fn intervals(doc: &Value, instance: Option<&str>) -> Vec<(u64, u64)> {
    doc["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| instance.is_none_or(|i| t["ccr_instance"] == i))
        .map(|t| {
            let start = rfc3339_ms(t["started_at"].as_str().unwrap_or_else(|| panic!("no started_at: {t}")));
            (start, rfc3339_ms(t["timestamp"].as_str().unwrap()))
        })
        .collect()
}

/// The most intervals open at one instant (an end at the same millisecond as a start closes
/// first).
fn max_overlap(iv: &[(u64, u64)]) -> usize {
    let mut edges: Vec<(u64, i32)> = iv.iter().flat_map(|&(s, e)| [(s, 1), (e, -1)]).collect();
    edges.sort();
    let (mut open, mut max) = (0i32, 0i32);
    for (_, d) in edges {
        open += d;
        max = max.max(open);
    }
    max as usize
}

fn all_succeeded(doc: &Value) -> bool {
    doc["tasks"].as_array().unwrap().iter().all(|t| t["status"] == "success")
}

#[test]
fn overlap_is_a_pure_function_of_the_intervals() {
    assert_eq!(max_overlap(&[(0, 10), (5, 15), (10, 20)]), 2);
    assert_eq!(max_overlap(&[(0, 10), (1, 9), (2, 8)]), 3);
    assert_eq!(max_overlap(&[]), 0);
}

/// 3 workers × concurrency 4 could run 12 at once: `max_tasks_per_instance: 2` holds them
/// to exactly 2 on each instance, `max_concurrent_tasks: 3` to 3 over both instances.
#[test]
fn concurrency_caps_hold_across_three_workers() {
    let redis = Redis::start();
    let ns = namespace("caps");
    let dir = tempfile::tempdir().unwrap();
    let cfg = "executor: { kind: simulate }\ninstances: [ { name: fast, concurrency: 4 }, { name: general, concurrency: 4 } ]\n";
    let _workers: Vec<Worker> = (0..3).map(|i| Worker::start(dir.path(), &format!("w{i}"), cfg, &redis.url(), &ns)).collect();

    write(
        dir.path(),
        "per-instance.yaml",
        &format!("resource_limits:\n  max_tasks_per_instance: 2\ntasks:\n{}", tasks("p", 24, &["fast", "general"], "400ms")),
    );
    let out = submit(dir.path(), &redis.url(), &ns, &["per-instance.yaml", "--json", "--no-save", "--no-report"], LIMIT);
    let doc = doc_of(&out);
    assert!(all_succeeded(&doc), "{}", out.stdout);
    let (fast, general) = (max_overlap(&intervals(&doc, Some("fast"))), max_overlap(&intervals(&doc, Some("general"))));
    println!("max_tasks_per_instance 2: overlap fast {fast}, general {general}, both {}", max_overlap(&intervals(&doc, None)));
    assert_eq!((fast, general), (2, 2), "at most 2 per instance, and the cap is used");

    write(
        dir.path(),
        "per-run.yaml",
        &format!("resource_limits:\n  max_concurrent_tasks: 3\ntasks:\n{}", tasks("r", 24, &["fast", "general"], "400ms")),
    );
    let out = submit(dir.path(), &redis.url(), &ns, &["per-run.yaml", "--json", "--no-save", "--no-report"], LIMIT);
    let doc = doc_of(&out);
    assert!(all_succeeded(&doc), "{}", out.stdout);
    let both = max_overlap(&intervals(&doc, None));
    println!("max_concurrent_tasks 3 over two instances: overlap {both}");
    assert_eq!(both, 3);
    // Nothing is left holding a slot or parked once the run is over.
    let mut c = redis.client();
    let run = doc["run_id"].as_str().unwrap();
    for key in ["slots", "parked"] {
        let n: u64 = redis::cmd("ZCARD").arg(format!("{ns}:run:{{{run}}}:{key}")).query(&mut c).unwrap();
        assert_eq!(n, 0, "{key} is empty after the run");
    }
}

/// A worker killed with `kill -9` while it holds both slots of a capped run: the slots come
/// back when its leases lapse, another worker takes the tasks over, the run completes, and
/// the cap held throughout.
#[test]
fn a_killed_workers_slots_come_back_after_its_lease() {
    let redis = Redis::start();
    let ns = namespace("capkill");
    let dir = tempfile::tempdir().unwrap();
    let cfg = "executor: { kind: simulate }\nlease: 3s\ninstances: [ { name: fast, concurrency: 4 } ]\n";
    write(dir.path(), "t.yaml", &format!("resource_limits:\n  max_concurrent_tasks: 2\ntasks:\n{}", tasks("k", 8, &["fast"], "2s")));
    let mut w1 = Worker::start(dir.path(), "w1", cfg, &redis.url(), &ns);
    let out = submit(dir.path(), &redis.url(), &ns, &["t.yaml", "--detach", "--quiet"], LIMIT);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let run = out.stdout.trim().to_string();
    let mut c = redis.client();
    let t = Instant::now();
    loop {
        // A running task's slot is its running state (grants aside, slots.lua).
        let running: u64 =
            redis::cmd("HGET").arg(format!("{ns}:run:{{{run}}}:meta")).arg("running").query::<Option<u64>>(&mut c).unwrap().unwrap_or(0);
        if running == 2 {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(20), "the worker never held both slots");
        std::thread::sleep(Duration::from_millis(20));
    }
    let w1_pid = w1.pid().expect("w1 runs");
    w1.kill9();
    let killed = Instant::now();
    let w2 = Worker::start(dir.path(), "w2", cfg, &redis.url(), &ns);
    let out = submit(dir.path(), &redis.url(), &ns, &["watch", &run, "--json", "--no-save", "--no-report"], LIMIT);
    let took = killed.elapsed();
    let doc = doc_of(&out);
    assert!(all_succeeded(&doc), "{}", out.stdout);
    let overlap = max_overlap(&intervals(&doc, None));
    let by_w1 =
        doc["tasks"].as_array().unwrap().iter().filter(|t| t["worker"].as_str().unwrap_or("").contains(&format!("-{w1_pid}-"))).count();
    // The dead worker's slots free when its 3 s leases lapse; then 8 tasks of 2 s, 2 at a time.
    let bound = Duration::from_secs(3 + 8 + 5);
    println!(
        "killed while holding 2 slots: run done {:.1}s after the kill (bound {}s), overlap {overlap}",
        took.as_secs_f64(),
        bound.as_secs()
    );
    assert_eq!(overlap, 2);
    assert_eq!(by_w1, 0, "every result is from the live worker: the dead one's two tasks ran again");
    assert!(took < bound, "took {took:?}");
    drop(w2);
}

/// A run capped at one task at a time and an uncapped run share one instance's stream: the
/// capped run's tasks wait in their run, not in the stream, so the uncapped run behind them
/// goes at the workers' full speed.
#[test]
fn a_capped_run_never_delays_an_uncapped_one() {
    let redis = Redis::start();
    let ns = namespace("capfair");
    let dir = tempfile::tempdir().unwrap();
    let cfg = "executor: { kind: simulate }\ninstances: [ { name: fast, concurrency: 4 } ]\n";
    let _w = Worker::start(dir.path(), "w", cfg, &redis.url(), &ns);
    write(dir.path(), "capped.yaml", &format!("resource_limits:\n  max_concurrent_tasks: 1\ntasks:\n{}", tasks("c", 12, &["fast"], "1s")));
    write(dir.path(), "free.yaml", &format!("tasks:\n{}", tasks("f", 9, &["fast"], "1s")));
    let out = submit(dir.path(), &redis.url(), &ns, &["capped.yaml", "--detach", "--quiet"], LIMIT);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let capped = out.stdout.trim().to_string();
    let t = Instant::now();
    let out = submit(dir.path(), &redis.url(), &ns, &["free.yaml", "--json", "--no-save", "--no-report"], LIMIT);
    let free_took = t.elapsed();
    let doc = doc_of(&out);
    assert!(all_succeeded(&doc), "{}", out.stdout);
    // 9 one-second tasks on the 3 slots the capped run leaves: about 3 s; the capped run
    // alone needs 12 s.
    let mut c = redis.client();
    let done: u64 =
        redis::cmd("HGET").arg(format!("{ns}:run:{{{capped}}}:meta")).arg("done").query::<Option<u64>>(&mut c).unwrap().unwrap_or(0);
    println!("uncapped run of 9 × 1 s behind a run capped at 1: {:.1}s (capped run {done}/12 done by then)", free_took.as_secs_f64());
    assert!(free_took < Duration::from_secs(7), "the uncapped run took {free_took:?}");
    assert!(done < 12, "the capped run was still going");
    let out = submit(dir.path(), &redis.url(), &ns, &["watch", &capped, "--json", "--no-save", "--no-report"], LIMIT);
    let doc = doc_of(&out);
    assert!(all_succeeded(&doc), "{}", out.stdout);
    assert_eq!(max_overlap(&intervals(&doc, None)), 1);
}

/// A budget that stops a run part-way: each task costs $0.20 (200 simulated tokens at $1 per
/// 1k), the budget is $1.00 with the alert at half of it. One task at a time: the alert fires
/// once, after the third task; the fifth reaches the budget and the other five are cancelled
/// with class `budget`; exit 1 and the report says why.
#[test]
fn a_budget_stops_the_run_and_alerts_once() {
    let redis = Redis::start();
    let ns = namespace("budget");
    let dir = tempfile::tempdir().unwrap();
    let _w =
        Worker::start(dir.path(), "w", "executor: { kind: simulate }\ninstances: [ { name: smart, concurrency: 4 } ]\n", &redis.url(), &ns);
    let (prompt, answer) = ("p".repeat(400), "a".repeat(400));
    let mut yaml = String::from(
        "resource_limits:\n  max_concurrent_tasks: 1\n  models:\n    - name: smart\n      cost_per_1k_tokens: 1.00\n  budget:\n    max_cost_per_workflow: 1.00\n    alert_threshold: 0.5\ntasks:\n",
    );
    for i in 0..10 {
        yaml.push_str(&format!(
            "  - {{ name: b{i}, ccr_instance: smart, prompt: \"{prompt}\", simulate: {{ duration: 100ms, output: \"{answer}\" }} }}\n"
        ));
    }
    write(dir.path(), "b.yaml", &yaml);
    let out = submit(dir.path(), &redis.url(), &ns, &["b.yaml", "--json", "--results-dir", "res"], LIMIT);
    assert_eq!(out.code, 1, "a run its budget stopped exits 1: {}", out.stderr);
    let doc: Value = serde_json::from_str(&out.stdout).unwrap();
    let tasks = doc["tasks"].as_array().unwrap();
    let done: Vec<&Value> = tasks.iter().filter(|t| t["status"] == "success").collect();
    let cancelled: Vec<&Value> = tasks.iter().filter(|t| t["status"] == "cancelled").collect();
    assert_eq!((done.len(), cancelled.len()), (5, 5), "{}", out.stdout);
    assert!(done.iter().all(|t| t["cost"] == 0.2), "each task cost $0.20: {}", out.stdout);
    assert!(cancelled.iter().all(|t| t["error_class"] == "budget"), "{}", out.stdout);
    assert!(cancelled[0]["error"].as_str().unwrap().contains("spent its budget ($1.00 of $1.00)"), "{}", cancelled[0]["error"]);
    let b = &doc["summary"]["budget"];
    assert_eq!((b["max_cost"].as_f64(), b["spent"].as_f64(), b["cancelled_tasks"].as_u64()), (Some(1.0), Some(1.0), Some(5)), "{b}");
    assert!(b["alerted_at"].is_string() && b["stopped_at"].is_string(), "{b}");
    assert_eq!(doc["summary"]["cost"], 1.0);
    assert_eq!(doc["results_by_instance"]["smart"]["cost"], 1.0);
    // The alert fired once, when the third task had been recorded ($0.60 ≥ $0.50).
    let run = doc["run_id"].as_str().unwrap();
    let mut c = redis.client();
    let events: redis::streams::StreamRangeReply =
        redis::cmd("XRANGE").arg(format!("{ns}:run:{{{run}}}:events")).arg("-").arg("+").query(&mut c).unwrap();
    let alerts: Vec<u64> = events
        .ids
        .iter()
        .filter(|e| e.get::<String>("event").as_deref() == Some("budget_alert"))
        .map(|e| e.get::<u64>("spent").unwrap())
        .collect();
    assert_eq!(alerts, vec![600_000_000], "one alert, at $0.60 spent");
    assert!(out.stderr.contains("budget alert: $0.6000 of $1.00 spent (60% of the budget)"), "{}", out.stderr);
    assert!(out.stderr.contains("budget reached: $1.00 of $1.00 spent"), "{}", out.stderr);
    let report = std::fs::read_dir(dir.path().join("res"))
        .unwrap()
        .flatten()
        .find(|e| e.file_name().to_string_lossy().starts_with("report_") && e.file_name().to_string_lossy().ends_with(".md"))
        .expect("a Markdown report");
    let md = std::fs::read_to_string(report.path()).unwrap();
    assert!(md.contains("| Budget | $1.00 of $1.00 spent; alert at 50% ("), "{md}");
    assert!(md.contains("budget reached at") && md.contains("5 cancelled"), "{md}");
    assert!(md.contains("## Cost by instance"), "{md}");
}

/// `--dry-run` on a file that ran before: each task estimated from its earlier run, the run's
/// duration from the critical path, within 25% of what the rerun then takes; ready with a
/// live worker. Without Redis: still valid (exit 0), estimates unavailable, not ready; with
/// `--require-ready` that exits 3.
#[test]
fn dry_run_estimates_from_history_and_says_whether_it_is_ready() {
    let redis = Redis::start();
    let ns = namespace("dryrun");
    let dir = tempfile::tempdir().unwrap();
    let yaml = "name: Estimates\nresource_limits:\n  models:\n    - name: fast\n      cost_per_1k_tokens: 0.50\ntasks:\n  - { name: A, ccr_instance: fast, prompt: p, simulate: { duration: 1s } }\n  - { name: B, ccr_instance: fast, prompt: p, dependencies: [A], simulate: { duration: 2s } }\n  - { name: C, ccr_instance: fast, prompt: p, dependencies: [A], simulate: { duration: 1500ms } }\n  - { name: D, ccr_instance: fast, prompt: p, dependencies: [B, C], simulate: { duration: 1s } }\n";
    write(dir.path(), "e.yaml", yaml);
    // Before any run and any worker: estimates by timeout only, not ready.
    let out = submit(dir.path(), &redis.url(), &ns, &["e.yaml", "--dry-run"], LIMIT);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.contains("DRY RUN: Estimates") && out.stdout.contains("Validation: PASSED"), "{}", out.stdout);
    assert!(out.stdout.contains("Ready to execute: NO\n  - no live worker serves instance `fast`"), "{}", out.stdout);
    assert!(out.stdout.contains("(timeout)"), "{}", out.stdout);
    // Priced by the file: a first-run estimate from the prompts, said to be one.
    assert!(
        out.stdout.contains("Estimated Cost: $0.2020 - $2.00 (4 tasks of it a first-run estimate: tokens from the prompt's length"),
        "{}",
        out.stdout
    );
    let out = submit(dir.path(), &redis.url(), &ns, &["e.yaml", "--dry-run", "--require-ready"], LIMIT);
    assert_eq!(out.code, 3, "not ready exits 3 with --require-ready");

    let _w =
        Worker::start(dir.path(), "w", "executor: { kind: simulate }\ninstances: [ { name: fast, concurrency: 4 } ]\n", &redis.url(), &ns);
    let first = submit(dir.path(), &redis.url(), &ns, &["e.yaml", "--json", "--no-save", "--no-report"], LIMIT);
    assert_eq!(first.code, 0, "{}", first.stderr);
    let out = submit(dir.path(), &redis.url(), &ns, &["e.yaml", "--dry-run", "--require-ready"], LIMIT);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    let text = &out.stdout;
    assert!(text.contains("Ready to execute: YES"), "{text}");
    assert!(
        text.contains("Estimates from: 4 by earlier runs of the same task, 0 by their instance's median, 0 by their timeout only"),
        "{text}"
    );
    assert!(text.contains("· after A · ~2s, $0.0"), "B's estimate, priced: {text}");
    assert!(text.contains("Estimated Cost: $0.0") && !text.contains("first-run"), "{text}");
    // The same tasks in a file that sets no price: no cost, never the earlier run's prices.
    write(dir.path(), "u.yaml", &yaml.replace("resource_limits:\n  models:\n    - name: fast\n      cost_per_1k_tokens: 0.50\n", ""));
    let unpriced = submit(dir.path(), &redis.url(), &ns, &["u.yaml", "--dry-run"], LIMIT).stdout;
    assert!(unpriced.contains("Estimated Cost: unknown (no task has a price;") && !unpriced.contains(", $0"), "{unpriced}");
    let line = text.lines().find(|l| l.starts_with("Estimated Duration: ")).unwrap();
    let range: Vec<f64> =
        line.trim_start_matches("Estimated Duration: ").trim_end_matches(" seconds").split('-').map(|x| x.parse().unwrap()).collect();
    let estimate = (range[0] + range[1]) / 2.0;
    let rerun = submit(dir.path(), &redis.url(), &ns, &["e.yaml", "--json", "--no-save", "--no-report"], LIMIT);
    let actual = serde_json::from_str::<Value>(&rerun.stdout).unwrap()["summary"]["wall_time"].as_f64().unwrap();
    println!("dry run: estimated {line:?}, the rerun took {actual:.2}s");
    assert!((estimate - actual).abs() <= 0.25 * actual, "estimate {estimate}s vs actual {actual}s");

    // Without Redis: valid, estimates unavailable, not ready; 3 only when asked.
    let gone = format!("redis://127.0.0.1:{}", free_port());
    let out = submit(dir.path(), &gone, &ns, &["e.yaml", "--dry-run"], LIMIT);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout.contains("Estimates: unavailable") && out.stdout.contains("Ready to execute: NO\n  - Redis is unreachable"),
        "{}",
        out.stdout
    );
    let t = Instant::now();
    let out = submit(dir.path(), &gone, &ns, &["e.yaml", "--dry-run", "--require-ready"], LIMIT);
    assert_eq!(out.code, 3);
    assert!(t.elapsed() < Duration::from_secs(5), "it waits about a second for Redis");
}

/// The catalog's `max_concurrent: 2` for `fast` holds over two runs and 3 workers ×
/// concurrency 4 (the tasks of both runs together never run more than 2 at once); a worker
/// whose catalog says otherwise is warned about.
#[test]
fn the_catalogs_max_concurrent_holds_across_runs_and_workers() {
    let redis = Redis::start();
    let ns = namespace("nscap");
    let dir = tempfile::tempdir().unwrap();
    let catalog = |cap: u32| {
        format!("instances:\n  - {{ name: fast, port: 3457, model: m, max_concurrent: {cap} }}\n  - {{ name: general, port: 3456, model: m }}\n")
    };
    write(dir.path(), "catalog.yaml", &catalog(2));
    write(dir.path(), "other-catalog.yaml", &catalog(3));
    let cat = dir.path().join("catalog.yaml").display().to_string();
    let cfg =
        |catalog: &str| format!("executor: {{ kind: simulate }}\ncatalog: {catalog}\ninstances: [ {{ name: fast, concurrency: 4 }} ]\n");
    let _workers: Vec<Worker> =
        (0..3).map(|i| Worker::start(dir.path(), &format!("w{i}"), &cfg("catalog.yaml"), &redis.url(), &ns)).collect();
    write(dir.path(), "a.yaml", &format!("tasks:\n{}", tasks("a", 8, &["fast"], "300ms")));
    write(dir.path(), "b.yaml", &format!("tasks:\n{}", tasks("b", 8, &["fast"], "300ms")));
    let out = submit(dir.path(), &redis.url(), &ns, &["a.yaml", "--detach", "--quiet", "--catalog", &cat], LIMIT);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let a = out.stdout.trim().to_string();
    let out = submit(dir.path(), &redis.url(), &ns, &["b.yaml", "--json", "--no-save", "--no-report", "--catalog", &cat], LIMIT);
    let b_doc = doc_of(&out);
    let out = submit(dir.path(), &redis.url(), &ns, &["watch", &a, "--json", "--no-save", "--no-report"], LIMIT);
    let a_doc = doc_of(&out);
    assert!(all_succeeded(&a_doc) && all_succeeded(&b_doc));
    let mut both = intervals(&a_doc, None);
    both.extend(intervals(&b_doc, None));
    let overlap = max_overlap(&both);
    println!("catalog max_concurrent 2 over two runs and 3 workers: overlap {overlap}");
    assert_eq!(overlap, 2);
    let w = Worker::start(dir.path(), "w-other", &cfg("other-catalog.yaml"), &redis.url(), &ns);
    let t = Instant::now();
    while !w.log_text().contains("another worker's to max_concurrent 2") {
        assert!(t.elapsed() < Duration::from_secs(10), "no warning about the other catalog: {}", w.log_text());
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Host quotas, read on the execution host through the executor: a host over
/// `max_memory_gb` holds the task back, visibly, for `quota_wait`, then fails it with class
/// `quota`; ceilings the host is under let tasks run.
#[test]
fn quotas_hold_tasks_back_then_fail_them_as_quota() {
    let redis = Redis::start();
    let ns = namespace("quota");
    let dir = tempfile::tempdir().unwrap();
    let _w = Worker::start(
        dir.path(),
        "w",
        "executor: { kind: local }\nagent: { mode: simulate }\ninstances: [ { name: fast } ]\n",
        &redis.url(),
        &ns,
    );
    write(
        dir.path(),
        "over.yaml",
        "resource_limits:\n  quotas:\n    max_memory_gb: 0.0001\n    quota_wait: 3s\ntasks:\n  - { name: held, ccr_instance: fast, command: \"echo ran\" }\n",
    );
    let t = Instant::now();
    let out = submit(dir.path(), &redis.url(), &ns, &["over.yaml", "--json", "--no-save", "--no-report"], LIMIT);
    let took = t.elapsed();
    assert_eq!(out.code, 1, "{}", out.stderr);
    let doc: Value = serde_json::from_str(&out.stdout).unwrap();
    let task = &doc["tasks"][0];
    assert_eq!((task["status"].as_str(), task["error_class"].as_str()), (Some("failed"), Some("quota")), "{task}");
    assert!(task["error"].as_str().unwrap().contains("stayed over the run's quotas for 3s: memory"), "{task}");
    assert!(task["output"].as_str().unwrap_or("").is_empty(), "it never ran: {task}");
    assert!(out.stderr.contains("waits for its host to come under quota (memory"), "{}", out.stderr);
    assert!(took >= Duration::from_secs(3), "it waited quota_wait first ({took:?})");
    write(
        dir.path(),
        "under.yaml",
        "resource_limits:\n  quotas: { max_cpu_percent: 100, max_memory_gb: 100000, max_disk_gb: 100000000 }\ntasks:\n  - { name: free, ccr_instance: fast, command: \"echo ran\" }\n",
    );
    let out = submit(dir.path(), &redis.url(), &ns, &["under.yaml", "--json", "--no-save", "--no-report"], LIMIT);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let doc: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(doc["tasks"][0]["output"], "ran\n");
}

/// `tasks/examples/limits.yaml` — the seed's `resource_limits` block as written — runs with
/// the simulated agent: at most 3 at once, starts at least 1.2 s apart (50 per minute), each
/// task and the run priced, the budget untouched, exit 0.
#[test]
fn the_seeds_resource_limits_example_runs_as_written() {
    let redis = Redis::start();
    let ns = namespace("seedlimits");
    let dir = tempfile::tempdir().unwrap();
    let _workers: Vec<Worker> = (0..2)
        .map(|i| {
            Worker::start(
                dir.path(),
                &format!("w{i}"),
                "executor: { kind: simulate }\ninstances: [ { name: smart, concurrency: 4 } ]\n",
                &redis.url(),
                &ns,
            )
        })
        .collect();
    let file = concat!(env!("CARGO_MANIFEST_DIR"), "/../tasks/examples/limits.yaml");
    let out = submit(dir.path(), &redis.url(), &ns, &[file, "--json", "--no-save", "--no-report"], LIMIT);
    let doc = doc_of(&out);
    assert!(all_succeeded(&doc), "{}", out.stdout);
    let iv = intervals(&doc, None);
    let mut starts: Vec<u64> = iv.iter().map(|i| i.0).collect();
    starts.sort_unstable();
    let gaps: Vec<u64> = starts.windows(2).map(|w| w[1] - w[0]).collect();
    println!("seed limits example: overlap {}, start gaps {gaps:?} ms, cost {}", max_overlap(&iv), doc["summary"]["cost"]);
    assert!(max_overlap(&iv) <= 3);
    // 50 per minute: the starts after the first come no sooner than 1.2 s apart on average
    // (the first starts at once; a late wake-up of a later one only widens the span).
    let span = starts[starts.len() - 1] - starts[0];
    assert!(span + 100 >= (starts.len() as u64 - 1) * 1200, "50 per minute: {} starts in {span} ms ({gaps:?})", starts.len());
    assert!(doc["tasks"].as_array().unwrap().iter().all(|t| t["cost"].as_f64().is_some_and(|c| c > 0.0)), "{}", out.stdout);
    let b = &doc["summary"]["budget"];
    assert_eq!((b["max_cost"].as_f64(), b["alerted_at"].is_null(), b["stopped_at"].is_null()), (Some(5.0), true, true), "{b}");
}

/// A worker killed with `kill -9` while it holds both of the catalog's `max_concurrent`
/// slots: they lapse with its leases, the live worker takes the tasks over and the run
/// completes within the cap.
#[test]
fn a_killed_workers_shared_slots_lapse_with_its_leases() {
    let redis = Redis::start();
    let ns = namespace("nskill");
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "catalog.yaml", "instances:\n  - { name: fast, port: 3457, model: m, max_concurrent: 2 }\n");
    let cfg = "executor: { kind: simulate }\ncatalog: catalog.yaml\nlease: 3s\ninstances: [ { name: fast, concurrency: 4 } ]\n";
    write(dir.path(), "t.yaml", &format!("tasks:\n{}", tasks("s", 6, &["fast"], "2s")));
    let mut w1 = Worker::start(dir.path(), "w1", cfg, &redis.url(), &ns);
    let out = submit(dir.path(), &redis.url(), &ns, &["t.yaml", "--detach", "--quiet"], LIMIT);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let run = out.stdout.trim().to_string();
    let mut c = redis.client();
    let t = Instant::now();
    let held = format!("{ns}:limit:{{fast}}:held");
    while redis::cmd("HGET").arg(&held).arg("total").query::<Option<u64>>(&mut c).unwrap().unwrap_or(0) < 2 {
        assert!(t.elapsed() < Duration::from_secs(20), "the worker never held both shared slots");
        std::thread::sleep(Duration::from_millis(20));
    }
    let w1_pid = w1.pid().expect("w1 runs");
    w1.kill9();
    let killed = Instant::now();
    let _w2 = Worker::start(dir.path(), "w2", cfg, &redis.url(), &ns);
    let out = submit(dir.path(), &redis.url(), &ns, &["watch", &run, "--json", "--no-save", "--no-report"], LIMIT);
    let took = killed.elapsed();
    let doc = doc_of(&out);
    assert!(all_succeeded(&doc), "{}", out.stdout);
    let by_w1 =
        doc["tasks"].as_array().unwrap().iter().filter(|t| t["worker"].as_str().unwrap_or("").contains(&format!("-{w1_pid}-"))).count();
    let overlap = max_overlap(&intervals(&doc, None));
    println!("killed holding 2 shared slots: run done {:.1}s after the kill, overlap {overlap}", took.as_secs_f64());
    assert_eq!((overlap, by_w1), (2, 0));
    assert!(took < Duration::from_secs(3 + 6 + 8), "took {took:?}");
}
