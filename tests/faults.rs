//! Fault tests: real processes killed and restarted for real, all on loopback and bounded in
//! time. Each prints its figures (tasks, kills, lost, duplicated, recovery).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::Value;
use zo_e2e::*;

const LIMIT: Duration = Duration::from_secs(240);

fn statuses(doc: &Value) -> HashMap<String, usize> {
    let mut m = HashMap::new();
    for t in doc["tasks"].as_array().unwrap() {
        *m.entry(t["status"].as_str().unwrap().to_string()).or_default() += 1;
    }
    m
}

/// The tasks that did not succeed, for assertion messages.
fn failed_tasks(out: &Outcome) -> String {
    match serde_json::from_str::<Value>(&out.stdout) {
        Ok(doc) => doc["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|t| t["status"] != "success")
            .map(|t| t.to_string())
            .collect::<Vec<_>>()
            .join("\n"),
        Err(_) => out.stderr.clone(),
    }
}

/// Polls the run's state hash until `pred` holds for the task states (at most 30 s).
fn wait_states(redis: &Redis, ns: &str, run: &str, pred: impl Fn(&HashMap<String, String>) -> bool) {
    let mut c = redis.client();
    let start = Instant::now();
    loop {
        let st: HashMap<String, String> = redis::cmd("HGETALL").arg(format!("{ns}:run:{{{run}}}:state")).query(&mut c).unwrap();
        if pred(&st) {
            return;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "states never matched: {st:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn kill_9_workers_repeatedly_loses_nothing_and_counts_nothing_twice() {
    let redis = Redis::start_aof();
    let ns = namespace("kill9");
    let dir = tempfile::tempdir().unwrap();
    let n = 300;
    let mut yaml = String::from("tasks:\n");
    for i in 0..n {
        let inst = ["general", "fast", "smart"][i % 3];
        let ms = 200 + (i * 37) % 600;
        yaml.push_str(&format!(
            "  - {{ name: t{i}, ccr_instance: {inst}, command: \"step {i}\", prompt: \"p{i}\", simulate: {{ duration: {ms}ms }} }}\n"
        ));
    }
    write(dir.path(), "t.yaml", &yaml);
    let cfg = "executor: { kind: simulate }\nlease: 2s\nmax_deliveries: 50\ninstances: [ { name: general, concurrency: 2 }, { name: fast, concurrency: 2 }, { name: smart, concurrency: 2 } ]\n";
    let mut workers: Vec<Worker> = (0..3).map(|i| Worker::start(dir.path(), &format!("w{i}-0"), cfg, &redis.url(), &ns)).collect();
    let started = Instant::now();
    let out = std::thread::scope(|s| {
        let url = redis.url();
        let (ns2, d) = (ns.clone(), dir.path().to_path_buf());
        let submitter = s.spawn(move || submit(&d, &url, &ns2, &["t.yaml", "--json", "--no-save", "--no-report"], LIMIT));
        let mut kills = 0;
        let mut kill_times: HashMap<u32, u64> = HashMap::new();
        let mut generation = 0;
        while !submitter.is_finished() {
            std::thread::sleep(Duration::from_millis(1000));
            if submitter.is_finished() {
                break;
            }
            let victim = kills % workers.len();
            let pid = workers[victim].pid().unwrap();
            workers[victim].kill9();
            kill_times.insert(pid, unix_ms());
            kills += 1;
            generation += 1;
            workers[victim] = Worker::start(dir.path(), &format!("w{victim}-{generation}"), cfg, &redis.url(), &ns);
        }
        (submitter.join().unwrap(), kills, kill_times)
    });
    let (out, kills, kill_times) = out;
    let elapsed = started.elapsed();
    assert_eq!(out.code, 0, "{}", out.stderr);
    let doc = json_doc(&out);
    let tasks = doc["tasks"].as_array().unwrap();
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for t in tasks {
        *seen.entry(t["task_name"].as_str().unwrap()).or_default() += 1;
    }
    let duplicated = seen.values().filter(|&&c| c > 1).count();
    let lost = n - tasks.iter().filter(|t| t["status"] == "success").count();
    // Recovery: from killing the worker that ran a task to another worker taking it over.
    // The run's event stream says who started each task when (worker ids embed the pid).
    let mut c = redis.client();
    let run = doc["run_id"].as_str().unwrap();
    let events: redis::streams::StreamRangeReply =
        redis::cmd("XRANGE").arg(format!("{ns}:run:{{{run}}}:events")).arg("-").arg("+").query(&mut c).unwrap();
    let mut starts: HashMap<String, Vec<(u64, String)>> = HashMap::new();
    for e in &events.ids {
        if e.get::<String>("state").as_deref() == Some("running") {
            let ms: u64 = e.id.split('-').next().unwrap().parse().unwrap();
            // Workers name the tasks they started in batches (`idxs`, comma-separated).
            let worker = e.get::<String>("worker").unwrap();
            for idx in e.get::<String>("idxs").unwrap().split(',') {
                starts.entry(idx.to_string()).or_default().push((ms, worker.clone()));
            }
        }
    }
    let pid_of = |worker: &str| worker.rsplit('-').nth(1).and_then(|p| p.parse::<u32>().ok());
    let mut recovery: Vec<f64> = starts
        .values()
        .flat_map(|s| {
            s.windows(2).filter_map(|w| kill_times.get(&pid_of(&w[0].1)?).map(|&k| (w[1].0 as f64 - k as f64) / 1000.0)).collect::<Vec<_>>()
        })
        .collect();
    recovery.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let (median, worst) = (recovery.get(recovery.len() / 2).copied().unwrap_or(0.0), recovery.last().copied().unwrap_or(0.0));
    println!(
        "kill -9 test: tasks {n}, kills {kills}, lost {lost}, duplicated {duplicated}, reclaimed {}, recovery after a kill median {median:.2}s worst {worst:.2}s (lease 2s), run {:.1}s",
        recovery.len(),
        elapsed.as_secs_f64()
    );
    assert!(!recovery.is_empty(), "some tasks must have been taken over from killed workers");
    assert!(kills >= 2, "the run should outlast a few kills (it took {elapsed:?})");
    assert_eq!(seen.len(), n);
    assert_eq!(duplicated, 0);
    assert_eq!(lost, 0, "{:?}", statuses(&doc));
    // What Redis counted as results arrived: a result recorded twice would show here.
    let r = redis.recorded(&ns, run);
    let n = n as u64;
    assert_eq!((r.done, r.success, r.results), (n, n, n), "each task recorded once: {r:?}");
}

#[test]
fn redis_killed_and_restarted_with_aof_mid_run_completes() {
    let mut redis = Redis::start_aof();
    let ns = namespace("redisrestart");
    let dir = tempfile::tempdir().unwrap();
    let mut yaml = String::from("tasks:\n");
    for i in 0..40 {
        let dep = if i >= 10 { format!(", dependencies: [t{}]", i - 10) } else { String::new() };
        yaml.push_str(&format!("  - {{ name: t{i}, ccr_instance: fast, prompt: \"p\", simulate: {{ duration: 800ms }}{dep} }}\n"));
    }
    write(dir.path(), "t.yaml", &yaml);
    let cfg = "executor: { kind: simulate }\nlease: 2s\ninstances: [ { name: fast, concurrency: 6 } ]\n";
    let _w1 = Worker::start(dir.path(), "w1", cfg, &redis.url(), &ns);
    let _w2 = Worker::start(dir.path(), "w2", cfg, &redis.url(), &ns);
    let url = redis.url();
    let d = dir.path().to_path_buf();
    let ns2 = ns.clone();
    let submitter = std::thread::spawn(move || submit(&d, &url, &ns2, &["t.yaml", "--json", "--no-save", "--no-report"], LIMIT));
    // Four levels of 800 ms: kill Redis once the run has started and while it still runs.
    let mut c = redis.client();
    let t = Instant::now();
    let done_at_kill = loop {
        let runs: Vec<String> = redis::cmd("ZRANGE").arg(format!("{ns}:runs")).arg(0).arg(-1).query(&mut c).unwrap();
        let done: Option<u32> = match runs.first() {
            Some(run) => redis::cmd("HGET").arg(format!("{ns}:run:{{{run}}}:meta")).arg("done").query(&mut c).unwrap(),
            None => None,
        };
        if done.is_some_and(|d| d >= 5) {
            break done.unwrap_or(0);
        }
        assert!(t.elapsed() < Duration::from_secs(30), "the run never got going");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(done_at_kill < 40, "the run finished before the fault ({done_at_kill} of 40 done)");
    redis.kill();
    let down = Instant::now();
    std::thread::sleep(Duration::from_millis(1000));
    redis.restart();
    let out = submitter.join().unwrap();
    println!(
        "redis restart test: 40 tasks, {done_at_kill} done when Redis was killed, down {:.1}s, run completed {:.1}s after the restart",
        1.0,
        down.elapsed().as_secs_f64() - 1.0
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let doc = json_doc(&out);
    assert_eq!(doc["summary"]["successful"], 40, "{:?}", statuses(&doc));
}

/// A worker killed while holding 16 jobs: an idle worker takes all of them back together once
/// their lease lapses (not one per reclaim round), so the run ends within a bound derived
/// from the lease.
#[test]
fn a_dead_workers_held_jobs_come_back_together() {
    let redis = Redis::start();
    let ns = namespace("heldjobs");
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "t.yaml", &simulated_tasks(16, "6s"));
    let lease = Duration::from_secs(4);
    let cfg = "executor: { kind: simulate }\nlease: 4s\ninstances: [ { name: fast, concurrency: 16 } ]\n";
    let mut w1 = Worker::start(dir.path(), "w1", cfg, &redis.url(), &ns);
    let out = submit(dir.path(), &redis.url(), &ns, &["t.yaml", "--detach", "--quiet"], LIMIT);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let run = out.stdout.trim().to_string();
    let mut c = redis.client();
    let running = |c: &mut redis::Connection| -> u32 {
        redis::cmd("HGET").arg(format!("{ns}:run:{{{run}}}:meta")).arg("running").query::<Option<u32>>(c).unwrap().unwrap_or(0)
    };
    let t = Instant::now();
    while running(&mut c) < 16 {
        assert!(t.elapsed() < Duration::from_secs(20), "the first worker never held all 16 jobs");
        std::thread::sleep(Duration::from_millis(50));
    }
    w1.kill9();
    let killed = Instant::now();
    let _w2 = Worker::start(dir.path(), "w2", cfg, &redis.url(), &ns);
    let out = submit(dir.path(), &redis.url(), &ns, &["watch", &run, "--json", "--no-save", "--no-report"], LIMIT);
    let took = killed.elapsed();
    assert_eq!(out.code, 0, "{}", out.stderr);
    let doc = json_doc(&out);
    assert_eq!(doc["summary"]["successful"], 16, "{:?}", statuses(&doc));
    // Lease lapse, one reclaim round (half a lease), the task itself, and start-up slack; one
    // job per round would need 16 rounds (32 s).
    let bound = lease + lease / 2 + Duration::from_secs(6) + Duration::from_secs(6);
    println!(
        "held jobs test: 16 jobs of a killed worker done {:.1}s after the kill (bound {:.0}s)",
        took.as_secs_f64(),
        bound.as_secs_f64()
    );
    assert!(took < bound, "took {took:?}, more than {bound:?}");
    let reclaimed = doc["tasks"].as_array().unwrap().iter().filter(|t| t["reclaimed"] == true).count();
    assert_eq!(reclaimed, 16, "every job was taken over");
}

/// Redis without AOF restarted empty mid-run: the run's state is gone. zo-submit says so and
/// exits 3, writes no report, and neither it nor the workers (whose running tasks end after the
/// restart) recreate any key of the run.
#[test]
fn a_run_lost_with_redis_data_is_not_reported_as_success() {
    let mut redis = Redis::start();
    let ns = namespace("lost");
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "t.yaml", &simulated_tasks(20, "1500ms"));
    let cfg = "executor: { kind: simulate }\nlease: 2s\ninstances: [ { name: fast, concurrency: 4 } ]\n";
    let _w = Worker::start(dir.path(), "w", cfg, &redis.url(), &ns);
    let (url, d, ns2) = (redis.url(), dir.path().to_path_buf(), ns.clone());
    let submitter = std::thread::spawn(move || submit(&d, &url, &ns2, &["t.yaml", "--results-dir", "out"], LIMIT));
    std::thread::sleep(Duration::from_millis(800));
    redis.kill();
    redis.restart();
    let out = submitter.join().unwrap();
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert!(out.stderr.contains("the run's state was lost from Redis (was AOF off?)"), "{}", out.stderr);
    assert!(!out.stderr.contains("wrote "), "{}", out.stderr);
    assert!(!dir.path().join("out").exists(), "no report is written for a lost run");
    // The tasks that were running end now; recording them must not bring the run back.
    std::thread::sleep(Duration::from_secs(3));
    let mut c = redis.client();
    let keys: Vec<String> = redis::cmd("KEYS").arg(format!("{ns}:run:*")).query(&mut c).unwrap();
    assert!(keys.is_empty(), "keys of the lost run were recreated: {keys:?}");
    // The consumer group went with the data: the worker recreates it and serves a new run.
    write(dir.path(), "again.yaml", &simulated_tasks(2, "10ms"));
    let again = submit(dir.path(), &redis.url(), &ns, &["again.yaml", "--no-save", "--no-report"], LIMIT);
    assert_eq!(again.code, 0, "{}", again.stderr);
}

#[test]
fn sshd_killed_mid_run_gives_network_errors_that_are_retried() {
    let redis = Redis::start();
    let mut sshd = Sshd::start();
    let ns = namespace("sshdkill");
    let dir = tempfile::tempdir().unwrap();
    let mut yaml = String::from("defaults:\n  retry_policy: { max_retries: 6, base_delay: 300ms, max_delay: 2s }\ntasks:\n");
    for i in 0..12 {
        yaml.push_str(&format!("  - {{ name: t{i}, ccr_instance: fast, command: \"sleep 1; echo {i}\" }}\n"));
    }
    write(dir.path(), "t.yaml", &yaml);
    let cfg = format!("{}agent: {{ mode: simulate }}\ninstances: [ {{ name: fast, concurrency: 6 }} ]\n", sshd.executor_yaml());
    let _w = Worker::start(dir.path(), "w", &cfg, &redis.url(), &ns);
    let url = redis.url();
    let d = dir.path().to_path_buf();
    let ns2 = ns.clone();
    let submitter = std::thread::spawn(move || submit(&d, &url, &ns2, &["t.yaml", "--json", "--no-save", "--no-report"], LIMIT));
    std::thread::sleep(Duration::from_millis(500));
    sshd.kill();
    std::thread::sleep(Duration::from_millis(800));
    sshd.restart();
    let out = submitter.join().unwrap();
    assert_eq!(out.code, 0, "{}", failed_tasks(&out));
    let doc = json_doc(&out);
    let retried: Vec<&Value> = doc["tasks"].as_array().unwrap().iter().filter(|t| t["attempts"].as_u64().unwrap() > 1).collect();
    println!("sshd restart test: 12 tasks, {} retried after network errors", retried.len());
    assert!(!retried.is_empty(), "killing sshd mid-task must fail some attempts");
    for t in &retried {
        let first = &t["attempt_history"][0];
        assert_eq!(first["error_class"], "network", "{t}");
        assert_eq!(t["status"], "success");
    }
    assert_eq!(doc["summary"]["successful"], 12);
}

#[test]
fn cancel_stops_queued_tasks_at_once_and_running_ones_with_their_processes() {
    let redis = Redis::start();
    let sshd = Sshd::start();
    let ns = namespace("cancel");
    let dir = tempfile::tempdir().unwrap();
    let marker = 5000 + std::process::id() % 1000;
    write(
        dir.path(),
        "t.yaml",
        &format!(
            "tasks:\n  - {{ name: Long, ccr_instance: fast, command: \"sleep 4{marker}\" }}\n  - {{ name: Queued, ccr_instance: fast, command: \"echo never\" }}\n  - {{ name: After, ccr_instance: general, command: \"echo never\", dependencies: [Long] }}\n"
        ),
    );
    let cfg = format!(
        "{}agent: {{ mode: simulate }}\nlease: 2s\ninstances: [ {{ name: fast, concurrency: 1 }}, {{ name: general }} ]\n",
        sshd.executor_yaml()
    );
    let _w = Worker::start(dir.path(), "w", &cfg, &redis.url(), &ns);
    let out = submit(dir.path(), &redis.url(), &ns, &["t.yaml", "--detach"], LIMIT);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let run = out.stdout.trim().to_string();
    wait_states(&redis, &ns, &run, |s| s.values().any(|v| v == "running"));
    // Marked running comes before the process starts on the host (longer on a busy machine).
    let started = Instant::now();
    while !process_alive(&format!("sleep 4{marker}")) {
        assert!(started.elapsed() < Duration::from_secs(10), "the task's process never started");
        std::thread::sleep(Duration::from_millis(50));
    }
    let t0 = Instant::now();
    let c = submit(dir.path(), &redis.url(), &ns, &["cancel", &run], LIMIT);
    assert_eq!(c.code, 0, "{}", c.stderr);
    let out = submit(dir.path(), &redis.url(), &ns, &["watch", &run, "--json", "--no-save", "--no-report"], LIMIT);
    let took = t0.elapsed();
    assert_eq!(out.code, 1);
    let t = tasks_by_name(&json_doc(&out));
    assert_eq!(t["Long"]["status"], "cancelled", "{}", t["Long"]);
    assert_eq!(t["Queued"]["status"], "cancelled");
    assert_eq!(t["Queued"]["error"], "cancelled before it started");
    assert_eq!(t["After"]["status"], "cancelled");
    println!("cancel test: run ended {:.2}s after `zo-submit cancel`", took.as_secs_f64());
    assert!(took < Duration::from_secs(5), "running tasks stop within about a second ({took:?})");
    let deadline = Instant::now() + Duration::from_secs(5);
    while process_alive(&format!("sleep 4{marker}")) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(!process_alive(&format!("sleep 4{marker}")), "the cancelled task's process survived");

    // One task: its dependents are skipped, the rest runs.
    write(dir.path(), "u.yaml", "tasks:\n  - { name: Gate, ccr_instance: general, command: \"sleep 30\" }\n  - { name: Child, ccr_instance: general, command: \"echo c\", dependencies: [Gate] }\n  - { name: Free, ccr_instance: fast, command: \"echo f\" }\n");
    let out = submit(dir.path(), &redis.url(), &ns, &["u.yaml", "--detach"], LIMIT);
    let run = out.stdout.trim().to_string();
    wait_states(&redis, &ns, &run, |s| s.get("0").map(String::as_str) == Some("running"));
    let c = submit(dir.path(), &redis.url(), &ns, &["cancel", &run, "--task", "Gate"], LIMIT);
    assert_eq!(c.code, 0, "{}", c.stderr);
    let bad = submit(dir.path(), &redis.url(), &ns, &["cancel", &run, "--task", "Nope"], LIMIT);
    assert_eq!(bad.code, 2);
    let out = submit(dir.path(), &redis.url(), &ns, &["watch", &run, "--json", "--no-save", "--no-report"], LIMIT);
    let t = tasks_by_name(&json_doc(&out));
    assert_eq!(t["Gate"]["status"], "cancelled");
    assert_eq!(t["Child"]["status"], "skipped");
    assert_eq!(t["Free"]["status"], "success");
}

#[test]
fn sigterm_hands_running_tasks_back_at_once_and_another_worker_finishes_them() {
    let redis = Redis::start();
    let ns = namespace("drain");
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "t.yaml", &simulated_tasks(4, "3s"));
    // A 60 s lease: the run can only finish quickly if the jobs are handed back, not reclaimed.
    let cfg = "executor: { kind: simulate }\nlease: 60s\ndrain_timeout: 500ms\ninstances: [ { name: fast, concurrency: 4 } ]\n";
    let mut a = Worker::start(dir.path(), "a", cfg, &redis.url(), &ns);
    let out = submit(dir.path(), &redis.url(), &ns, &["t.yaml", "--detach"], LIMIT);
    let run = out.stdout.trim().to_string();
    wait_states(&redis, &ns, &run, |s| s.values().filter(|v| *v == "running").count() == 4);
    let t0 = Instant::now();
    let status = a.stop().expect("worker A exits");
    assert_eq!(status.code(), Some(0), "a drained worker exits 0:\n{}", a.log_text());
    assert!(a.log_text().contains("handed back to the queue"), "{}", a.log_text());
    let _b = Worker::start(dir.path(), "b", cfg, &redis.url(), &ns);
    let out = submit(dir.path(), &redis.url(), &ns, &["watch", &run, "--json", "--no-save", "--no-report"], LIMIT);
    let took = t0.elapsed();
    assert_eq!(out.code, 0, "{}", out.stderr);
    println!("drain test: 4 tasks handed back and finished elsewhere {:.1}s after SIGTERM (lease 60s)", took.as_secs_f64());
    assert!(took < Duration::from_secs(20), "{took:?}");
}

#[test]
fn retries_then_dead_letters_then_dead_retry_runs_it_again() {
    let redis = Redis::start();
    let ns = namespace("retry");
    let dir = tempfile::tempdir().unwrap();
    let flag = dir.path().join("fixed");
    write(
        dir.path(),
        "t.yaml",
        &format!(
            "tasks:\n  - name: Flaky\n    ccr_instance: fast\n    command: \"test -f {f} && echo ok || {{ echo 'not yet' >&2; exit 1; }}\"\n    retry_policy: {{ max_retries: 2, retry_on: [command_error], backoff: fixed, base_delay: 200ms }}\n  - {{ name: Next, ccr_instance: fast, command: \"echo next\", dependencies: [Flaky] }}\n",
            f = flag.display()
        ),
    );
    let _w = Worker::start(
        dir.path(),
        "w",
        "executor: { kind: local }\nagent: { mode: simulate }\ninstances: [ { name: fast } ]\n",
        &redis.url(),
        &ns,
    );
    let out = submit(dir.path(), &redis.url(), &ns, &["t.yaml", "--json", "--no-save", "--no-report"], LIMIT);
    assert_eq!(out.code, 1);
    let doc = json_doc(&out);
    let t = tasks_by_name(&doc);
    assert_eq!(t["Flaky"]["status"], "failed");
    assert_eq!(t["Flaky"]["attempts"], 3, "1 try + 2 retries");
    let hist = t["Flaky"]["attempt_history"].as_array().unwrap();
    assert_eq!(hist.iter().map(|h| h["attempt"].as_u64().unwrap()).collect::<Vec<_>>(), vec![1, 2, 3]);
    assert!(hist.iter().all(|h| h["error_class"] == "command"));
    assert_eq!(t["Next"]["status"], "skipped");
    let list = submit(dir.path(), &redis.url(), &ns, &["dead"], LIMIT);
    assert_eq!(list.code, 0);
    let line = list.stdout.lines().find(|l| l.contains("`Flaky`")).unwrap_or_else(|| panic!("{}", list.stdout));
    assert!(line.contains("retries exhausted after 3 attempts: command exited with code 1: not yet"), "{line}");
    let id = line.split_whitespace().next().unwrap().to_string();
    std::fs::write(&flag, "").unwrap();
    let again = submit(dir.path(), &redis.url(), &ns, &["dead", "retry", &id], LIMIT);
    assert_eq!(again.code, 0, "{}", again.stderr);
    let run = doc["run_id"].as_str().unwrap();
    let out = submit(dir.path(), &redis.url(), &ns, &["watch", run, "--json", "--no-save", "--no-report"], LIMIT);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let t = tasks_by_name(&json_doc(&out));
    assert_eq!(t["Flaky"]["status"], "success");
    assert_eq!(t["Flaky"]["attempts"], 4);
    assert_eq!(t["Next"]["status"], "success", "the skipped dependent runs again too");
    let list = submit(dir.path(), &redis.url(), &ns, &["dead"], LIMIT);
    assert_eq!(list.stdout.trim(), "no dead letters");
}

#[test]
fn high_priority_tasks_overtake_a_low_priority_backlog() {
    let redis = Redis::start();
    let ns = namespace("prio");
    let dir = tempfile::tempdir().unwrap();
    let mut yaml = String::from("tasks:\n");
    for i in 0..6 {
        yaml.push_str(&format!("  - {{ name: low{i}, ccr_instance: fast, prompt: p, priority: low, simulate: {{ duration: 50ms }} }}\n"));
    }
    for i in 0..6 {
        yaml.push_str(&format!("  - {{ name: high{i}, ccr_instance: fast, prompt: p, priority: high, simulate: {{ duration: 50ms }} }}\n"));
    }
    write(dir.path(), "t.yaml", &yaml);
    let out = submit(dir.path(), &redis.url(), &ns, &["t.yaml", "--detach"], LIMIT);
    let run = out.stdout.trim().to_string();
    let _w =
        Worker::start(dir.path(), "w", "executor: { kind: simulate }\ninstances: [ { name: fast, concurrency: 1 } ]\n", &redis.url(), &ns);
    let out = submit(dir.path(), &redis.url(), &ns, &["watch", &run, "--json", "--no-save", "--no-report"], LIMIT);
    assert_eq!(out.code, 0);
    let t = tasks_by_name(&json_doc(&out));
    let last_high = (0..6).map(|i| t[&format!("high{i}")]["timestamp"].as_str().unwrap().to_string()).max().unwrap();
    let first_low = (0..6).map(|i| t[&format!("low{i}")]["timestamp"].as_str().unwrap().to_string()).min().unwrap();
    assert!(last_high < first_low, "every high task finished before any low one: {last_high} vs {first_low}");
}

#[test]
fn a_killed_remote_helper_fails_its_tasks_as_network_errors_and_a_new_one_takes_over() {
    let redis = Redis::start();
    let sshd = Sshd::start();
    let ns = namespace("helperkill");
    let dir = tempfile::tempdir().unwrap();
    let mut yaml = String::from("defaults:\n  retry_policy: { max_retries: 4, base_delay: 200ms, max_delay: 1s }\ntasks:\n");
    for i in 0..8 {
        yaml.push_str(&format!("  - {{ name: t{i}, ccr_instance: fast, command: \"sleep 1; echo {i}\" }}\n"));
    }
    write(dir.path(), "t.yaml", &yaml);
    let cfg = format!("{}agent: {{ mode: simulate }}\ninstances: [ {{ name: fast, concurrency: 4 }} ]\n", sshd.executor_yaml());
    let w = Worker::start(dir.path(), "w", &cfg, &redis.url(), &ns);
    let url = redis.url();
    let d = dir.path().to_path_buf();
    let ns2 = ns.clone();
    let submitter = std::thread::spawn(move || submit(&d, &url, &ns2, &["t.yaml", "--json", "--no-save", "--no-report"], LIMIT));
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    // Once tasks run in the helper, kill it (its tasks go with it: they are its children).
    while sshd.pids_under("sleep").is_empty() {
        assert!(std::time::Instant::now() < deadline, "no task ever ran:\n{}", w.log_text());
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(sshd.kill_under("perl"), 1, "one helper");
    let out = submitter.join().unwrap();
    assert_eq!(out.code, 0, "{}", failed_tasks(&out));
    let doc = json_doc(&out);
    assert_eq!(doc["summary"]["successful"], 8);
    let retried: Vec<&Value> = doc["tasks"].as_array().unwrap().iter().filter(|t| t["attempts"].as_u64().unwrap() > 1).collect();
    assert!(!retried.is_empty(), "the tasks running in the killed helper must have failed once");
    for t in &retried {
        assert_eq!(t["attempt_history"][0]["error_class"], "network", "{t}");
    }
    assert!(w.log_text().matches("remote helper started").count() >= 2, "a new helper must replace the killed one:\n{}", w.log_text());
}

/// zo-submit killed (SIGKILL) while it streams a large run into Redis: no part of the run is
/// visible — no meta, no task keys, not in the run index — and what it had staged expires by
/// itself. (Should the kill land after the commit, the run must be whole instead.)
#[test]
fn a_submit_killed_while_creating_its_run_leaves_no_partial_run() {
    let redis = Redis::start();
    let dir = tempfile::tempdir().unwrap();
    let n = 60_000;
    let mut text = String::from("tasks:\n");
    for i in 0..n {
        text.push_str(&format!("  - {{ name: t{i}, ccr_instance: fast, prompt: p }}\n"));
    }
    let file = write(dir.path(), "big.yaml", &text);
    let mut c = redis.client();
    // Kill zo-submit as soon as it stages anything, until a kill lands before the commit (the
    // case this test is about); a kill after it must leave a whole run.
    let (mut committed_runs, mut uncommitted_runs) = (0, 0);
    for round in 0..10 {
        let ns = namespace(&format!("killed-submit-{round}"));
        let mut child = std::process::Command::new(bin("zo-submit"))
            .arg(&file)
            .arg("--detach")
            .env("ZO_REDIS_URL", redis.url())
            .env("ZO_NAMESPACE", &ns)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let start = Instant::now();
        let staged = loop {
            let keys: Vec<String> = redis::cmd("KEYS").arg(format!("{ns}:run:*:new:*")).query(&mut c).unwrap();
            if !keys.is_empty() {
                child.kill().unwrap();
                break keys;
            }
            assert!(child.try_wait().unwrap().is_none(), "zo-submit finished before anything was staged");
            assert!(start.elapsed() < Duration::from_secs(60), "nothing was ever staged");
            std::thread::sleep(Duration::from_micros(200));
        };
        child.wait().unwrap();
        let run = staged[0].split('{').nth(1).and_then(|r| r.split('}').next()).unwrap().to_string();
        let key = |s: &str| format!("{ns}:run:{{{run}}}:{s}");
        let committed: bool = redis::cmd("EXISTS").arg(key("meta")).query::<u32>(&mut c).unwrap() == 1;
        let left: Vec<String> = redis::cmd("KEYS").arg(format!("{ns}:run:*:new:*")).query(&mut c).unwrap();
        if committed {
            let specs: usize = redis::cmd("HLEN").arg(key("spec")).query(&mut c).unwrap();
            assert_eq!(specs, n, "a committed run is whole");
            assert!(left.is_empty(), "a committed run leaves no staging key: {left:?}");
            committed_runs += 1;
            continue;
        }
        for s in ["spec", "state", "attempt", "outbox"] {
            let exists: u32 = redis::cmd("EXISTS").arg(key(s)).query(&mut c).unwrap();
            assert_eq!(exists, 0, "`{s}` of an uncommitted run is visible");
        }
        let listed: Option<f64> = redis::cmd("ZSCORE").arg(format!("{ns}:runs")).arg(&run).query(&mut c).unwrap();
        assert_eq!(listed, None, "an uncommitted run is in the index");
        assert!(!left.is_empty());
        for k in &left {
            let ttl: i64 = redis::cmd("TTL").arg(k).query(&mut c).unwrap();
            assert!((1..=3600).contains(&ttl), "staging key {k} expires (TTL {ttl})");
        }
        let specs: usize = redis::cmd("HLEN").arg(key("new:spec")).query(&mut c).unwrap();
        println!("killed with {specs} of {n} specs staged; {} staging keys, all expiring", left.len());
        uncommitted_runs += 1;
        break;
    }
    println!("kills after the commit: {committed_runs}, before it: {uncommitted_runs}");
    assert_eq!(uncommitted_runs, 1, "no kill landed before the commit in 10 tries");
}
