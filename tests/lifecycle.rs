//! A worker's life around its tasks: a long task keeps its lease while its worker lives, a
//! job whose workers keep dying is dead-lettered, a worker waits out a Redis outage without a
//! busy loop, and shutdown drains on the first signal and stops at once on the second.

use std::time::{Duration, Instant};

use zo_e2e::*;

const LIMIT: Duration = Duration::from_secs(120);

/// The lease promise: a task running for several lease periods (lease 1 s, task 5 s) is
/// never handed to a second, idle worker while the first is alive — its lease is renewed —
/// and it is delivered, started and recorded once.
#[test]
fn a_long_task_is_never_taken_over_while_its_worker_lives() {
    let redis = Redis::start();
    let ns = namespace("longlease");
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "t.yaml", &simulated_tasks(1, "5s"));
    let cfg = "executor: { kind: simulate }\nlease: 1s\ninstances: [ { name: fast } ]\n";
    let _w1 = Worker::start(dir.path(), "w1", cfg, &redis.url(), &ns);
    let out = submit(dir.path(), &redis.url(), &ns, &["t.yaml", "--detach", "--quiet"], LIMIT);
    let run = out.stdout.trim().to_string();
    let mut c = redis.client();
    redis.wait_run_field(&ns, &run, "state", "0", "running", Duration::from_secs(20));
    // An idle worker watches the task's lease lapse four times over, were it not renewed.
    let _w2 = Worker::start(dir.path(), "w2", cfg, &redis.url(), &ns);
    let out = submit(dir.path(), &redis.url(), &ns, &["watch", &run, "--json", "--no-save", "--no-report"], LIMIT);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let t = &tasks_by_name(&json_doc(&out))["t0"];
    assert_eq!((t["attempts"].as_u64(), t["reclaimed"].as_bool()), (Some(1), Some(false)), "{t}");
    let deliveries: Option<u32> = redis::cmd("HGET").arg(format!("{ns}:run:{{{run}}}:deliveries")).arg(0).query(&mut c).unwrap();
    assert_eq!(deliveries, Some(1), "delivered once");
    let events: redis::streams::StreamRangeReply =
        redis::cmd("XRANGE").arg(format!("{ns}:run:{{{run}}}:events")).arg("-").arg("+").query(&mut c).unwrap();
    let started = events.ids.iter().filter(|e| e.get::<String>("state").as_deref() == Some("running")).count();
    assert_eq!(started, 1, "started once");
    assert_eq!(redis.recorded(&ns, &run), Recorded { done: 1, success: 1, failed: 0, skipped: 0, results: 1 });
}

/// Shutdown: a SIGTERM drains (the running task may finish, within `drain_timeout`); a
/// second signal skips the drain, so the worker exits at once and hands the task back. And
/// the start-up warnings for a Redis without AOF and with an evicting policy are printed.
#[test]
fn a_second_signal_skips_the_drain_and_risky_redis_settings_are_warned_about() {
    let redis = Redis::start();
    let ns = namespace("twosignals");
    let dir = tempfile::tempdir().unwrap();
    let _: () = redis::cmd("CONFIG").arg("SET").arg("maxmemory-policy").arg("allkeys-lru").query(&mut redis.client()).unwrap();
    write(dir.path(), "t.yaml", &simulated_tasks(1, "60s"));
    let cfg = "executor: { kind: simulate }\ndrain_timeout: 60s\ninstances: [ { name: fast } ]\n";
    let mut w = Worker::start(dir.path(), "w", cfg, &redis.url(), &ns);
    let out = submit(dir.path(), &redis.url(), &ns, &["t.yaml", "--detach", "--quiet"], LIMIT);
    let run = out.stdout.trim().to_string();
    let mut c = redis.client();
    redis.wait_run_field(&ns, &run, "state", "0", "running", Duration::from_secs(20));
    let log = w.log_text();
    assert!(log.contains("Redis runs without AOF (appendonly no)"), "{log}");
    assert!(log.contains("Redis maxmemory-policy is `allkeys-lru`"), "{log}");
    let pid = w.pid().unwrap().to_string();
    std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    std::thread::sleep(Duration::from_millis(500));
    assert!(w.is_running(), "the first signal drains: the worker waits for its task");
    let second = Instant::now();
    std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    wait_until("the worker to exit after the second signal", Duration::from_secs(10), || !w.is_running());
    println!("second SIGTERM: the worker exited {:.2}s later", second.elapsed().as_secs_f64());
    let state: Option<String> = redis::cmd("HGET").arg(format!("{ns}:run:{{{run}}}:state")).arg(0).query(&mut c).unwrap();
    assert_ne!(state.as_deref(), Some("success"), "the 60 s task did not finish: it was handed back");
}

/// A job that kills every worker that takes it (here: each killed with -9 while it runs)
/// becomes poison after `max_deliveries` and is dead-lettered instead of taking the next
/// worker down.
#[test]
fn a_job_whose_workers_keep_dying_becomes_poison_and_is_dead_lettered() {
    let redis = Redis::start();
    let ns = namespace("poison");
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "t.yaml", "tasks:\n  - { name: Doomed, ccr_instance: fast, prompt: p, simulate: { duration: 30s } }\n");
    let cfg = "executor: { kind: simulate }\nlease: 1s\nmax_deliveries: 2\ninstances: [ { name: fast } ]\n";
    let out = submit(dir.path(), &redis.url(), &ns, &["t.yaml", "--detach"], LIMIT);
    let run = out.stdout.trim().to_string();
    // Two deliveries, each ended by kill -9 while the task runs.
    for round in 0..2 {
        let mut w = Worker::start(dir.path(), &format!("w{round}"), cfg, &redis.url(), &ns);
        let mut c = redis.client();
        let start = Instant::now();
        loop {
            let d: Option<u32> = redis::cmd("HGET").arg(format!("{ns}:run:{{{run}}}:deliveries")).arg(0).query(&mut c).unwrap();
            if d == Some(round + 1) {
                break;
            }
            assert!(start.elapsed() < Duration::from_secs(30), "delivery {} never happened", round + 1);
            std::thread::sleep(Duration::from_millis(50));
        }
        w.kill9();
    }
    let _w = Worker::start(dir.path(), "w-last", cfg, &redis.url(), &ns);
    let out = submit(dir.path(), &redis.url(), &ns, &["watch", &run, "--json", "--no-save", "--no-report"], LIMIT);
    assert_eq!(out.code, 1, "{}", out.stderr);
    let t = tasks_by_name(&json_doc(&out));
    assert_eq!(t["Doomed"]["status"], "failed");
    assert_eq!(t["Doomed"]["error_class"], "poison", "{}", t["Doomed"]);
    let dead = submit(dir.path(), &redis.url(), &ns, &["dead"], LIMIT);
    assert!(dead.stdout.contains("`Doomed`: poison: delivered more than 2 times without a result"), "{}", dead.stdout);
}

/// CPU seconds (user + system) process `pid` has used.
fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split_whitespace().collect();
    // utime and stime are fields 14 and 15 of stat, 11 and 12 after the command's name.
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    ticks / 100.0
}

/// Redis down for 6 s: the worker backs off instead of spinning (a busy loop would burn a
/// core, about 6 s of CPU), stays up, and serves a run once Redis is back.
#[test]
fn a_worker_waits_out_a_redis_outage_without_a_busy_loop() {
    let mut redis = Redis::start();
    let ns = namespace("outage");
    let dir = tempfile::tempdir().unwrap();
    let mut w = Worker::start(
        dir.path(),
        "w",
        "executor: { kind: simulate }\ninstances: [ { name: fast }, { name: general } ]\n",
        &redis.url(),
        &ns,
    );
    write(dir.path(), "t.yaml", &simulated_tasks(2, "10ms"));
    assert_eq!(submit(dir.path(), &redis.url(), &ns, &["t.yaml", "--no-save", "--no-report"], LIMIT).code, 0);
    let pid = w.pid().unwrap();
    redis.kill();
    let before = cpu_secs(pid);
    std::thread::sleep(Duration::from_secs(6));
    let spent = cpu_secs(pid) - before;
    println!("Redis down 6 s: the worker used {spent:.2} s of CPU");
    assert!(spent < 1.0, "the worker spun while Redis was down: {spent:.2} s of CPU in 6 s");
    assert!(w.is_running(), "the worker gave up");
    redis.restart();
    let out = submit(dir.path(), &redis.url(), &ns, &["t.yaml", "--no-save", "--no-report"], LIMIT);
    assert_eq!(out.code, 0, "{}", out.stderr);
    // One line when the outage began and one when it ended, not one per retry and instance.
    let log = w.log_text();
    let count = |needle: &str| log.lines().filter(|l| l.contains(needle)).count();
    assert_eq!((count("Redis is unreachable"), count("Redis is reachable again")), (1, 1), "{log}");
}

/// Redis reaching `maxmemory` mid-run: the attached zo-submit says so within 10 s (the run
/// cannot move), says when Redis takes writes again, and the run finishes; the worker logs
/// one line each way. A watcher still waiting after a minute exits 3, and the run can be
/// watched to its end once memory is freed.
#[test]
fn a_full_redis_is_said_once_and_a_watcher_gives_up_after_a_minute() {
    let redis = Redis::start();
    let ns = namespace("oom");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let w = Worker::start(d, "w", "executor: { kind: simulate }\ninstances: [ { name: fast } ]\n", &redis.url(), &ns);
    let chain = "tasks:\n  - { name: A, ccr_instance: fast, prompt: p, simulate: { duration: 1s } }\n  - { name: B, ccr_instance: fast, prompt: p, simulate: { duration: 1s }, dependencies: [A] }\n  - { name: C, ccr_instance: fast, prompt: p, simulate: { duration: 1s }, dependencies: [B] }\n";
    write(d, "t.yaml", chain);
    let mut c = redis.client();
    let maxmemory = |c: &mut redis::Connection, v: &str| {
        let _: () = redis::cmd("CONFIG").arg("SET").arg("maxmemory").arg(v).query(c).unwrap();
    };
    let err = d.join("submit.err");
    let attached = |args: &[&str]| spawn_submit(d, &redis.url(), &ns, args, &err);
    let said = |needle: &str| std::fs::read_to_string(&err).unwrap_or_default().contains(needle);

    let mut sub = attached(&["t.yaml", "--no-save", "--no-report"]);
    wait_until("A to finish", LIMIT, || said("✓ A [fast]"));
    maxmemory(&mut c, "1");
    let full = Instant::now();
    wait_until("zo-submit to say Redis is full", Duration::from_secs(10), || said("Redis is out of memory"));
    println!("said {:.1}s after Redis filled up", full.elapsed().as_secs_f64());
    std::thread::sleep(Duration::from_secs(3));
    maxmemory(&mut c, "0");
    wait_until("zo-submit to say Redis takes writes", Duration::from_secs(15), || said("Redis accepts writes again"));
    assert_eq!(sub.wait().unwrap().code(), Some(0), "{}", std::fs::read_to_string(&err).unwrap());
    let log = w.log_text();
    let count = |needle: &str| log.lines().filter(|l| l.contains(needle)).count();
    assert_eq!((count("Redis is out of memory"), count("Redis accepts writes again")), (1, 1), "{log}");

    // Full for more than a minute: the watcher exits 3; the run is kept.
    let mut sub = attached(&["t.yaml", "--no-save", "--no-report"]);
    wait_until("A to finish", LIMIT, || said("✓ A [fast]"));
    maxmemory(&mut c, "1");
    let code = sub.wait().unwrap().code();
    let text = std::fs::read_to_string(&err).unwrap();
    assert_eq!(code, Some(3), "{text}");
    assert!(text.contains("Redis has refused writes for 60s") && text.contains("zo-submit watch "), "{text}");
    maxmemory(&mut c, "0");
    let run = text.split("zo-submit watch ").last().unwrap().trim().to_string();
    let out = submit(d, &redis.url(), &ns, &["watch", &run, "--no-save", "--no-report"], LIMIT);
    assert_eq!(out.code, 0, "{}", out.stderr);
}

/// Redis gone for good mid-run: an attached zo-submit retries for the documented two minutes,
/// then exits 3 saying the run continues without it and how to re-attach.
#[test]
fn an_attached_watcher_gives_up_after_two_minutes_without_redis() {
    let mut redis = Redis::start();
    let ns = namespace("giveup");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let _w = Worker::start(d, "w", "executor: { kind: simulate }\ninstances: [ { name: fast } ]\n", &redis.url(), &ns);
    write(d, "t.yaml", &simulated_tasks(1, "600s"));
    let err = d.join("submit.err");
    let mut sub = spawn_submit(d, &redis.url(), &ns, &["t.yaml", "--no-save", "--no-report"], &err);
    wait_until("the run to start", LIMIT, || std::fs::read_to_string(&err).unwrap_or_default().contains("submitted 1 task"));
    redis.kill();
    let gone = Instant::now();
    let code = loop {
        if let Some(st) = sub.try_wait().unwrap() {
            break st.code();
        }
        assert!(gone.elapsed() < Duration::from_secs(200), "zo-submit still waits {}s after Redis went", gone.elapsed().as_secs());
        std::thread::sleep(Duration::from_millis(200));
    };
    let took = gone.elapsed();
    let text = std::fs::read_to_string(&err).unwrap();
    println!("zo-submit gave up {:.0}s after Redis went", took.as_secs_f64());
    assert_eq!(code, Some(3), "{text}");
    assert!(took >= Duration::from_secs(120), "gave up before the documented two minutes: {took:?}");
    assert!(text.contains("lost Redis for 120s") && text.contains("Re-attach with: zo-submit watch "), "{text}");
}
