//! The worker's Prometheus metrics, scraped by a real Prometheus server (Debian `prometheus`)
//! during a run over SSH with a supervised CCR: the values read back through Prometheus's HTTP
//! API match what the run did, `promtool check metrics` accepts the endpoint's output, and
//! every panel query of the Grafana dashboard (`configs/grafana/zo-worker.json`) returns data.

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use zo_e2e::*;

const LIMIT: Duration = Duration::from_secs(120);

/// `GET path` on 127.0.0.1:`port`: status and body.
fn get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut raw = String::new();
    s.read_to_string(&mut raw).ok()?;
    let (head, body) = raw.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, body.to_string()))
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) { (b as char).to_string() } else { format!("%{b:02X}") })
        .collect()
}

/// An instant query through Prometheus's API: the result vector.
fn query(port: u16, q: &str) -> Vec<Value> {
    let (status, body) =
        get(port, &format!("/api/v1/query?query={}", urlencode(q))).unwrap_or_else(|| panic!("Prometheus did not answer `{q}`"));
    assert_eq!(status, 200, "`{q}`: {body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["status"], "success", "`{q}`: {body}");
    v["data"]["result"].as_array().cloned().unwrap_or_default()
}

/// The single value of a query (summed by the query itself).
fn value(port: u16, q: &str) -> f64 {
    let r = query(port, q);
    assert_eq!(r.len(), 1, "`{q}` gave {r:?}; all: {:?}", query(port, "{__name__=~\"zo_.*\"}"));
    r[0]["value"][1].as_str().unwrap().parse().unwrap()
}

/// A Prometheus server (killed on drop) and its port.
struct Prometheus(#[allow(dead_code)] Guard, u16);

fn prometheus(dir: &Path, target: u16) -> Prometheus {
    let port = free_port();
    let cfg = dir.join("prometheus.yml");
    std::fs::write(
        &cfg,
        format!("global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: zo-worker\n    static_configs:\n      - targets: ['127.0.0.1:{target}']\n"),
    )
    .unwrap();
    let child = Command::new("prometheus")
        .arg(format!("--config.file={}", cfg.display()))
        .arg(format!("--storage.tsdb.path={}", dir.join("tsdb").display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("prometheus.log")).unwrap())
        .spawn()
        .expect("prometheus is needed for this test (apt-get install prometheus; .ci/run installs it)");
    let p = Prometheus(Guard(child), port);
    let deadline = Instant::now() + Duration::from_secs(30);
    while get(port, "/-/ready").map(|(s, _)| s) != Some(200) {
        assert!(
            Instant::now() < deadline,
            "Prometheus never became ready: {}",
            std::fs::read_to_string(dir.join("prometheus.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    p
}

#[test]
fn prometheus_scrapes_a_worker_and_every_dashboard_panel_has_data() {
    let redis = Redis::start();
    let sshd = Sshd::start();
    let ns = namespace("metrics");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (catalog, ports) = free_port_catalog(d);
    std::fs::create_dir(d.join("ccr")).unwrap();
    std::fs::write(d.join("ccr/fast.json"), ccr_config("http://127.0.0.1:9", "sk-stub", "model-fast")).unwrap();
    let metrics_port = free_port();
    let cfg = format!(
        "catalog: {}\n{}agent: {{ mode: simulate }}\nccr:\n  command: \"{} start\"\n  state_dir: {}\n  configs_dir: ccr\n  env_file: {}\n  grace: 2s\ninstances:\n  - {{ name: fast, concurrency: 2 }}\n",
        catalog.display(),
        sshd.executor_yaml(),
        ccr_bin().display(),
        d.join("state").display(),
        d.join(".env").display(),
    );
    let metrics_addr = format!("127.0.0.1:{metrics_port}");
    let mut w = Worker::start_with(d, "w", &cfg, &redis.url(), &ns, &[], &["--metrics-addr", &metrics_addr]);
    let prom = prometheus(d, metrics_port);
    let deadline = Instant::now() + Duration::from_secs(40);
    while get(ports["fast"], "/health").is_none_or(|(_, b)| !b.contains("\"status\":\"ok\"")) {
        assert!(Instant::now() < deadline, "CCR never became ready:\n{}", w.log_text());
        std::thread::sleep(Duration::from_millis(200));
    }

    // Six tasks that succeed (a command over SSH, then the simulated agent), one that fails
    // twice (a retry); priced, so the cost counts.
    let mut yaml = String::from("resource_limits:\n  models:\n    - { name: fast, cost_per_1k_tokens: 10.0 }\ntasks:\n");
    for i in 0..6 {
        yaml.push_str(&format!(
            "  - {{ name: t{i}, ccr_instance: fast, command: \"sleep 0.5; echo {i}\", prompt: p, simulate: {{ duration: 700ms }} }}\n"
        ));
    }
    yaml.push_str("  - name: Flaky\n    ccr_instance: fast\n    prompt: p\n    retry_policy: { max_retries: 1, retry_on: [model], backoff: fixed, base_delay: 200ms }\n    simulate: { duration: 300ms, fail: true }\n");
    write(d, "t.yaml", &yaml);
    let out = submit(d, &redis.url(), &ns, &["t.yaml", "--json", "--no-save", "--no-report"], LIMIT);
    assert_eq!(out.code, 1, "Flaky fails: {}", out.stderr);
    let doc: Value = serde_json::from_str(&out.stdout).unwrap();
    // Every attempt's tokens count (the document keeps a task's last; a retried attempt of the
    // simulated agent used as many).
    let tokens =
        |k: &str| doc["tasks"].as_array().unwrap().iter().map(|t| t[k].as_u64().unwrap() * t["attempts"].as_u64().unwrap()).sum::<u64>();
    let cost = doc["summary"]["cost"].as_f64().unwrap();

    // Wait until Prometheus has scraped the end of the run twice (rates need two samples).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let done = query(prom.1, "sum(zo_tasks_finished_total)");
        let samples = query(prom.1, "count_over_time(zo_tasks_finished_total{status=\"success\"}[1m])");
        if done.first().is_some_and(|r| r["value"][1] == "8")
            && samples.first().is_some_and(|r| r["value"][1].as_str().unwrap().parse::<u32>().unwrap() >= 3)
        {
            break;
        }
        assert!(Instant::now() < deadline, "Prometheus never saw the whole run: {done:?}");
        std::thread::sleep(Duration::from_millis(500));
    }
    assert_eq!(value(prom.1, "sum(zo_tasks_finished_total{status=\"success\",ccr_instance=\"fast\"})"), 6.0);
    assert_eq!(value(prom.1, "sum(zo_tasks_finished_total{status=\"failed\"})"), 2.0, "both attempts of Flaky");
    assert_eq!(value(prom.1, "sum(zo_retries_total{class=\"model\"})"), 1.0);
    assert_eq!(value(prom.1, "sum(zo_tokens_total{direction=\"input\"})"), tokens("input_tokens") as f64);
    assert_eq!(value(prom.1, "sum(zo_tokens_total{direction=\"output\"})"), tokens("output_tokens") as f64);
    assert!((value(prom.1, "sum(zo_cost_nanodollars_total) / 1e9") - cost).abs() < 1e-9, "the run's cost, {cost}");
    assert_eq!(value(prom.1, "sum(zo_task_duration_seconds_count)"), 8.0);
    assert_eq!(value(prom.1, "sum(zo_step_duration_seconds_count{step=\"command\"})"), 6.0, "six commands over SSH");
    assert_eq!(value(prom.1, "sum(zo_tasks_in_flight)"), 0.0);
    assert_eq!(value(prom.1, "min(zo_ccr_ready{ccr_instance=\"fast\"})"), 1.0);
    assert_eq!(value(prom.1, "sum(zo_ccr_restarts_total)"), 0.0);
    assert_eq!(value(prom.1, "sum(zo_ssh_reconnects_total)"), 0.0);
    assert_eq!(value(prom.1, "sum(zo_redis_errors_total)"), 0.0);

    // Every panel of the shipped dashboard has data.
    let dash: Value = serde_json::from_str(
        &std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/grafana/zo-worker.json")).unwrap(),
    )
    .unwrap();
    let panels = dash["panels"].as_array().unwrap();
    assert!(panels.len() >= 10);
    for p in panels {
        for t in p["targets"].as_array().unwrap() {
            let expr = t["expr"].as_str().unwrap();
            assert!(!query(prom.1, expr).is_empty(), "panel `{}`: `{expr}` returned no data", p["title"]);
        }
    }

    // The endpoint's text passes promtool's checks.
    let (status, body) = get(metrics_port, "/metrics").expect("the metrics endpoint");
    assert_eq!(status, 200);
    let mut check = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool");
    check.stdin.take().unwrap().write_all(body.as_bytes()).unwrap();
    let checked = check.wait_with_output().unwrap();
    assert!(
        checked.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );
    w.stop();
}
