//! The operator's read commands against real runs: `runs`, `show` (mid-run and after),
//! `queues`, `workers`, `dead` (list, filter, delete), `export` in its three formats, and the
//! HTML report rendered by a real browser (Debian `chromium`, headless) with hostile names.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use zo_e2e::*;

const LIMIT: Duration = Duration::from_secs(120);

fn json(dir: &Path, redis: &Redis, ns: &str, args: &[&str]) -> Value {
    submit_json(dir, &redis.url(), ns, args, LIMIT)
}

/// A name that would run script in a page that did not escape it.
const HOSTILE: &str = "<img src=x onerror=document.title=/pwned/.source>";

fn task_file() -> String {
    format!(
        "name: inspect\ntasks:\n  - {{ name: Quick, ccr_instance: fast, prompt: p, simulate: {{ duration: 300ms }} }}\n  - {{ name: Long, ccr_instance: fast, prompt: p, simulate: {{ duration: 3s }} }}\n  - name: Flaky\n    ccr_instance: general\n    prompt: p\n    retry_policy: {{ max_retries: 1, retry_on: [model], backoff: fixed, base_delay: 100ms }}\n    simulate: {{ duration: 200ms, fail: true, output: \"</pre><script>document.title='pwned'</script>\" }}\n  - {{ name: 'After', ccr_instance: general, prompt: p, dependencies: [Long], simulate: {{ duration: 300ms }} }}\n  - {{ name: '{HOSTILE}', ccr_instance: general, prompt: p, simulate: {{ duration: 100ms }} }}\n"
    )
}

#[test]
fn inspection_commands_describe_running_and_finished_runs() {
    let redis = Redis::start();
    let ns = namespace("inspect");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(d, "t.yaml", &task_file());
    let log = d.join("worker.jsonl");
    let cfg = "executor: { kind: simulate }\ninstances: [ { name: fast, concurrency: 2 }, { name: general, concurrency: 1 } ]\n";
    let _w = Worker::start_with(d, "w", cfg, &redis.url(), &ns, &[], &["--log-format", "json", "--log-file", log.to_str().unwrap()]);
    let sub = submit(d, &redis.url(), &ns, &["t.yaml", "--detach"], LIMIT);
    assert_eq!(sub.code, 0, "{}", sub.stderr);
    let run = sub.stdout.trim().to_string();

    // Mid-run: Long runs (3 s) on the worker, with its attempt and a growing elapsed time.
    let deadline = Instant::now() + Duration::from_secs(20);
    let shown = loop {
        let s = json(d, &redis, &ns, &["show", &run, "--json"]);
        let long = s["running"].as_array().unwrap().iter().find(|r| r["task_name"] == "Long").cloned();
        if let Some(l) = long.filter(|l| l["elapsed"].as_f64().unwrap_or(0.0) > 0.5) {
            break (s, l);
        }
        assert!(Instant::now() < deadline, "Long never showed as running: {s}");
        std::thread::sleep(Duration::from_millis(100));
    };
    let (s, long) = shown;
    assert_eq!(s["run"]["status"], "running");
    assert_eq!(s["run"]["total_tasks"], 5);
    assert_eq!(long["attempt"], 1);
    assert_eq!(long["ccr_instance"], "fast");
    let worker_id = long["worker"].as_str().unwrap().to_string();
    assert!(long["started_at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(s["results"]["tasks"].as_array().unwrap().len(), 5, "the document as it stands");
    let running = json(d, &redis, &ns, &["runs", "--status", "running", "--json"]);
    assert_eq!(running.as_array().unwrap().iter().filter(|r| r["run_id"] == run.as_str()).count(), 1, "{running}");
    let table = submit(d, &redis.url(), &ns, &["show", &run], LIMIT);
    assert!(table.stdout.contains("Running task") && table.stdout.contains("Long"), "{}", table.stdout);

    let workers = json(d, &redis, &ns, &["workers", "--json"]);
    let w = &workers.as_array().unwrap()[0];
    assert_eq!(w["id"], worker_id.as_str());
    assert_eq!(w["instances"], serde_json::json!(["fast", "general"]));
    assert!(w["version"].as_str().unwrap().starts_with(env!("CARGO_PKG_VERSION")), "{w}");
    assert!(!w["host"].as_str().unwrap().is_empty() && w["compatible"] == true);
    assert!(w["heartbeat_age"].as_f64().unwrap() < 15.0);
    let queues = json(d, &redis, &ns, &["queues", "--json"]);
    let fast = queues.as_array().unwrap().iter().find(|q| q["instance"] == "fast" && q["priority"] == "medium").unwrap().clone();
    assert_eq!(fast["stream"], format!("{ns}:jobs:{{fast}}"));
    assert!(fast["consumers"].as_u64().unwrap() >= 1 && fast["live_workers"] == 1, "{fast}");
    for k in ["length", "pending", "waiting"] {
        assert!(fast[k].is_u64(), "{k} in {fast}");
    }

    // Finished: counts, one task's record with both attempts, the dead letter.
    let out = submit(d, &redis.url(), &ns, &["watch", &run, "--no-save", "--no-report", "--quiet"], LIMIT);
    assert_eq!(out.code, 1, "Flaky failed: {}", out.stderr);
    let runs = json(d, &redis, &ns, &["runs", "--status", "finished", "--limit", "5", "--json"]);
    let r = runs.as_array().unwrap().iter().find(|r| r["run_id"] == run.as_str()).unwrap_or_else(|| panic!("{runs}")).clone();
    assert_eq!((r["successful"].as_u64(), r["failed"].as_u64()), (Some(4), Some(1)), "{r}");
    assert_eq!((r["name"].as_str(), r["task_file"].as_str()), (Some("inspect"), Some("t.yaml")));
    assert!(r["elapsed"].as_f64().unwrap() >= 3.0 && r["finished_at"].is_string());
    let flaky = json(d, &redis, &ns, &["show", &run, "Flaky", "--json"]);
    assert_eq!(flaky["task"]["status"], "failed");
    let attempts = flaky["task"]["attempt_history"].as_array().unwrap();
    assert_eq!(attempts.len(), 2, "{flaky}");
    assert!(attempts.iter().all(|a| a["error_class"] == "model"));
    assert!(flaky["running"].is_null());
    let text = submit(d, &redis.url(), &ns, &["show", &run, "Flaky"], LIMIT);
    assert!(text.stdout.contains("attempts     2") && text.stdout.contains("── output ──"), "{}", text.stdout);
    let typo = submit(d, &redis.url(), &ns, &["show", &run, "Flakey"], LIMIT);
    assert_eq!(typo.code, 2);
    assert!(typo.stderr.contains("has no task named `Flakey`; did you mean `Flaky`?"), "{}", typo.stderr);

    let dead = json(d, &redis, &ns, &["dead", "--json"]);
    let letter = dead.as_array().unwrap().iter().find(|l| l["task_name"] == "Flaky").unwrap_or_else(|| panic!("{dead}")).clone();
    assert_eq!((letter["run_id"].as_str(), letter["attempt"].as_u64()), (Some(run.as_str()), Some(2)));
    assert_eq!((letter["ccr_instance"].as_str(), letter["error_class"].as_str()), (Some("general"), Some("model")));
    assert!(letter["age"].as_f64().unwrap() < 60.0 && letter["reason"].as_str().unwrap().contains("retries exhausted"));
    assert_eq!(json(d, &redis, &ns, &["dead", "--run", "20000101-000000-0000", "--json"]), serde_json::json!([]));
    let del = submit(d, &redis.url(), &ns, &["dead", "delete", "--all", "--run", &run], LIMIT);
    assert_eq!(del.code, 0, "{}", del.stderr);
    assert!(del.stderr.contains("deleted 1 dead letter"), "{}", del.stderr);
    assert_eq!(json(d, &redis, &ns, &["dead", "list", "--json"]), serde_json::json!([]));

    // Export: JSON is the results document, Markdown lists failures first, HTML renders.
    let doc = json(d, &redis, &ns, &["export", &run, "--format", "json"]);
    assert_eq!(doc["summary"]["total_tasks"], 5);
    let md = submit(d, &redis.url(), &ns, &["export", &run, "--format", "md"], LIMIT);
    assert!(md.stdout.find("## Failures (1)").unwrap() < md.stdout.find("## Tasks").unwrap());
    let html = d.join("report.html");
    let ex = submit(d, &redis.url(), &ns, &["export", &run, "--format", "html", "-o", html.to_str().unwrap()], LIMIT);
    assert_eq!(ex.code, 0, "{}", ex.stderr);
    render_in_chromium(&html);
    export_writes_as_a_redirect_does(d, &redis, &ns, &run);
    let missing = submit(d, &redis.url(), &ns, &["export", "20000101-000000-0000"], LIMIT);
    assert_eq!(missing.code, 2);
    json_logs_name_each_task(&log, &run, &worker_id);
}

/// The worker's `--log-format json --log-file` log: every line one JSON object; each task's
/// `started` and `finished` events carry its run, task, attempt, worker and instance.
fn json_logs_name_each_task(log: &Path, run: &str, worker: &str) {
    let text = std::fs::read_to_string(log).expect("the log file");
    let lines: Vec<Value> =
        text.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not one JSON object per line ({e}): {l}"))).collect();
    assert!(lines.iter().any(|l| l["message"] == "worker started"), "{text}");
    let of = |task: &str, message: &str| -> Vec<&Value> {
        lines
            .iter()
            .filter(|l| {
                l["span"]["task"] == task && l["span"]["run"] == run && l["message"].as_str().is_some_and(|m| m.starts_with(message))
            })
            .collect()
    };
    for (task, instance) in [("Quick", "fast"), ("Long", "fast"), ("After", "general")] {
        for msg in ["started", "finished"] {
            let ev = of(task, msg);
            assert_eq!(ev.len(), 1, "one `{msg}` of {task}: {text}");
            let span = &ev[0]["span"];
            assert_eq!(
                (span["attempt"].as_u64(), span["worker"].as_str(), span["instance"].as_str()),
                (Some(1), Some(worker), Some(instance))
            );
            assert!(ev[0]["timestamp"].is_string() && ev[0]["level"] == "INFO", "{}", ev[0]);
        }
    }
    // Flaky: attempt 1 failed and was retried, attempt 2 finished failed; each says which.
    let retried = of("Flaky", "attempt failed: ");
    let failed = of("Flaky", "finished: ");
    assert_eq!((retried.len(), failed.len()), (1, 1), "{text}");
    assert_eq!((retried[0]["span"]["attempt"].as_u64(), failed[0]["span"]["attempt"].as_u64()), (Some(1), Some(2)));
    assert_eq!((failed[0]["class"].as_str(), failed[0]["level"].as_str()), (Some("model"), Some("WARN")), "{}", failed[0]);
}

/// Renders the report in headless Chromium: the page's DOM has its timeline bars and none of
/// the hostile names or outputs became markup (no image element, the title unchanged, no
/// script); a screenshot is kept in the target dir for people to look at.
fn render_in_chromium(html: &Path) {
    let chromium = ["chromium", "chromium-browser"]
        .into_iter()
        .find(|c| Command::new(c).arg("--version").output().is_ok_and(|o| o.status.success()))
        .expect("chromium is needed for this test (apt-get install chromium; .ci/run installs it)");
    let profile = tempfile::tempdir().unwrap();
    let url = format!("file://{}", html.display());
    let common = ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run", "--window-size=1280,1600"];
    let dom = Command::new(chromium)
        .args(common)
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(["--virtual-time-budget=2000", "--dump-dom", &url])
        .output()
        .expect("chromium runs");
    let dom = String::from_utf8_lossy(&dom.stdout);
    let title = dom.split("<title>").nth(1).and_then(|t| t.split("</title>").next()).unwrap_or_default();
    assert!(title.starts_with("Zo Worker Swarm — run "), "the page loaded and kept its title `{title}`:\n{}", &dom[..dom.len().min(2000)]);
    assert!(!dom.contains("<img") && !dom.contains("<script"), "a hostile name or output became markup");
    assert!(dom.contains("&lt;img src=x onerror="), "the hostile name is shown as text");
    assert_eq!(dom.matches("class=\"bar\"").count(), 10, "five bars in each of the two timelines");
    let shot = Path::new(env!("CARGO_TARGET_TMPDIR")).join("report.png");
    let _ = std::fs::remove_file(&shot);
    let out = Command::new(chromium)
        .args(common)
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(format!("--screenshot={}", shot.display()))
        .arg(&url)
        .output()
        .expect("chromium runs");
    let png = std::fs::read(&shot).unwrap_or_else(|e| panic!("no screenshot ({e}): {}", String::from_utf8_lossy(&out.stderr)));
    assert!(png.starts_with(b"\x89PNG") && png.len() > 20_000, "a real picture, {} bytes", png.len());
    eprintln!("screenshot of the HTML report: {}", shot.display());
}

/// `export -o PATH` writes as the shell's `>` would: into `/dev/null` (it stays a device),
/// through a symlink (the link stays), into a FIFO, over a file keeping its mode; a missing
/// directory is an error and nothing is created; `-o -` is stdout.
fn export_writes_as_a_redirect_does(d: &Path, redis: &Redis, ns: &str, run: &str) {
    use std::os::unix::fs::{FileTypeExt as _, PermissionsExt as _};
    let export_to = |p: &Path| submit(d, &redis.url(), ns, &["export", run, "--format", "md", "-o", p.to_str().unwrap()], LIMIT);
    let dev_null = Path::new("/dev/null");
    assert_eq!(export_to(dev_null).code, 0);
    assert!(std::fs::metadata(dev_null).unwrap().file_type().is_char_device(), "/dev/null was replaced");
    let (target, link) = (d.join("real.md"), d.join("link.md"));
    std::os::unix::fs::symlink(&target, &link).unwrap();
    assert_eq!(export_to(&link).code, 0);
    assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink(), "the link was replaced");
    assert!(std::fs::read_to_string(&target).unwrap().starts_with("# "));
    let kept = d.join("kept.md");
    std::fs::write(&kept, "old").unwrap();
    std::fs::set_permissions(&kept, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert_eq!(export_to(&kept).code, 0);
    assert_eq!(std::fs::metadata(&kept).unwrap().permissions().mode() & 0o777, 0o600);
    assert!(std::fs::read_to_string(&kept).unwrap().starts_with("# "));
    let fifo = d.join("fifo.md");
    assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || std::fs::read_to_string(fifo).unwrap())
    };
    assert_eq!(export_to(&fifo).code, 0);
    assert!(reader.join().unwrap().starts_with("# "));
    assert!(std::fs::metadata(&fifo).unwrap().file_type().is_fifo());
    let missing = d.join("no/such/dir/r.md");
    let out = export_to(&missing);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(out.stderr.contains("cannot write") && !d.join("no").exists(), "{}", out.stderr);
    let out = export_to(Path::new("-"));
    assert!(out.code == 0 && out.stdout.starts_with("# "), "{}", out.stderr);
}

/// Run ids as typed: `latest` is the newest run, a unique prefix is its run, an ambiguous one
/// lists the runs it starts (exit 2), and `latest` of an empty namespace says so (exit 2).
#[test]
fn run_ids_by_prefix_and_latest() {
    let redis = Redis::start();
    let ns = namespace("runref");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let _w = Worker::start(d, "w", "executor: { kind: simulate }\ninstances: [ { name: fast } ]\n", &redis.url(), &ns);
    write(d, "t.yaml", &simulated_tasks(1, "10ms"));
    let run = |_: u8| {
        submit_json(d, &redis.url(), &ns, &["t.yaml", "--json", "--no-save", "--no-report"], LIMIT)["run_id"].as_str().unwrap().to_string()
    };
    let (first, second) = (run(0), run(1));
    let shown = |id: &str| submit_json(d, &redis.url(), &ns, &["show", id, "--json"], LIMIT)["run"]["run_id"].as_str().unwrap().to_string();
    assert_eq!(shown("latest"), second);
    let unique = (8..first.len()).map(|n| &first[..n]).find(|p| !second.starts_with(p)).expect("the ids differ");
    assert_eq!(shown(unique), first, "prefix {unique}");
    let common: String = first.chars().zip(second.chars()).take_while(|(a, b)| a == b).map(|(a, _)| a).collect();
    let out = submit(d, &redis.url(), &ns, &["show", &common], LIMIT);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr.contains("is the start of several runs") && out.stderr.contains(&first) && out.stderr.contains(&second),
        "{}",
        out.stderr
    );
    let out = submit(d, &redis.url(), &format!("{ns}-empty"), &["show", "latest"], LIMIT);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("holds no run"), "{}", out.stderr);
    // `runs` in an empty namespace says where the runs are.
    let out = submit(d, &redis.url(), &format!("{ns}-empty"), &["runs"], LIMIT);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        out.stdout.trim(),
        format!("no runs in namespace `{ns}-empty`; runs are in namespace `{ns}` (--namespace NS or ZO_NAMESPACE)")
    );
}
