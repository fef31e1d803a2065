//! Redis stays bounded by what runs now, not by what ran: a finished run's keys expire after
//! `--retention`, a dead worker's consumer leaves its stream's group once it holds nothing,
//! and the event and dead-letter streams stay capped.

use std::time::{Duration, Instant};

use zo_e2e::*;

const LIMIT: Duration = Duration::from_secs(120);

/// The keys of run `run` still in Redis.
fn run_keys(redis: &Redis, ns: &str, run: &str) -> Vec<String> {
    redis::cmd("KEYS").arg(format!("{ns}:run:{{{run}}}:*")).query(&mut redis.client()).unwrap()
}

#[test]
fn a_finished_runs_keys_expire_after_its_retention() {
    let redis = Redis::start();
    let ns = namespace("retention");
    let dir = tempfile::tempdir().unwrap();
    let _w = Worker::start(dir.path(), "w", "executor: { kind: simulate }\ninstances: [ { name: fast } ]\n", &redis.url(), &ns);
    write(dir.path(), "t.yaml", &simulated_tasks(3, "10ms"));
    let doc = submit_json(dir.path(), &redis.url(), &ns, &["t.yaml", "--retention", "3s", "--json", "--no-save", "--no-report"], LIMIT);
    let run = doc["run_id"].as_str().unwrap().to_string();
    let keys = run_keys(&redis, &ns, &run);
    assert!(keys.len() >= 4, "{keys:?}");
    let mut c = redis.client();
    for k in &keys {
        let ttl: i64 = redis::cmd("PTTL").arg(k).query(&mut c).unwrap();
        assert!((1..=3000).contains(&ttl), "{k} expires within the retention (PTTL {ttl})");
    }
    wait_until("the run's keys to expire", Duration::from_secs(10), || run_keys(&redis, &ns, &run).is_empty());
}

/// A worker killed with -9 leaves its consumer in each stream's group; once its heartbeat is
/// a minute old and the consumer holds nothing, a live worker's upkeep removes it (a restarted
/// worker looks soon after it starts).
#[test]
fn a_dead_workers_consumer_leaves_the_group() {
    let redis = Redis::start();
    let ns = namespace("consumers");
    let dir = tempfile::tempdir().unwrap();
    let cfg = "executor: { kind: simulate }\nlease: 1s\ninstances: [ { name: fast } ]\n";
    let mut w1 = Worker::start(dir.path(), "w1", cfg, &redis.url(), &ns);
    write(dir.path(), "t.yaml", &simulated_tasks(2, "10ms"));
    submit_json(dir.path(), &redis.url(), &ns, &["t.yaml", "--json", "--no-save", "--no-report"], LIMIT);
    let (stream, group) = (format!("{ns}:jobs:{{fast}}"), format!("{ns}-workers"));
    let consumers = |redis: &Redis| -> Vec<String> {
        let info: Vec<std::collections::HashMap<String, redis::Value>> =
            redis::cmd("XINFO").arg("CONSUMERS").arg(&stream).arg(&group).query(&mut redis.client()).unwrap();
        info.iter().filter_map(|i| i.get("name").and_then(|v| redis::from_redis_value(v.clone()).ok())).collect()
    };
    let before = consumers(&redis);
    assert_eq!(before.len(), 1, "{before:?}");
    w1.kill9();
    let killed = Instant::now();
    // Its heartbeat must be a minute old before anyone may take it for dead.
    std::thread::sleep(Duration::from_secs(61));
    let _w2 = Worker::start(dir.path(), "w2", cfg, &redis.url(), &ns);
    wait_until("the dead worker's consumer to go", Duration::from_secs(40), || !consumers(&redis).contains(&before[0]));
    println!("a dead worker's consumer left the group {:.0}s after the kill", killed.elapsed().as_secs_f64());
}

/// The streams that only grow — the namespace's dead letters and a run's events — stay
/// capped near 10,000 entries (`MAXLEN ~`, which trims whole nodes: never below the cap,
/// a node's worth above it at most).
#[test]
fn the_dead_letter_and_event_streams_stay_capped() {
    let redis = Redis::start();
    let ns = namespace("caps");
    let dir = tempfile::tempdir().unwrap();
    // 11,000 independent tasks on an instance no worker serves: each cancelled on its own
    // writes an event.
    let mut yaml = String::from("tasks:\n");
    for i in 0..11_000 {
        yaml.push_str(&format!("  - {{ name: t{i}, ccr_instance: smart, command: x }}\n"));
    }
    write(dir.path(), "t.yaml", &yaml);
    let out = submit(dir.path(), &redis.url(), &ns, &["t.yaml", "--detach", "--quiet"], LIMIT);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let run = out.stdout.trim().to_string();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let store = zo_common::store::Store::connect(&redis.url(), &ns, 1).await.unwrap();
        let mut c = store.conn().await.unwrap();
        for i in 0..11_000 {
            store.cancel(&mut c, &run, Some(i)).await.unwrap();
        }
        let d = zo_common::store::Delivery { stream: format!("{ns}:jobs:{{smart}}"), id: "1-1".into(), fields: Default::default() };
        for _ in 0..11_000 {
            store.dead_letter_entry(&mut c, "w", &d, "junk for the cap").await.unwrap();
        }
    });
    let mut c = redis.client();
    for key in [format!("{ns}:run:{{{run}}}:events"), format!("{ns}:dead")] {
        let len: u64 = redis::cmd("XLEN").arg(&key).query(&mut c).unwrap();
        println!("{key}: {len} entries after 11,000 writes");
        assert!((10_000..=10_200).contains(&len), "{key} holds {len} entries");
    }
}
