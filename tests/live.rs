//! The live view as a person sees it, driven through tmux (a real terminal, 80×24): the
//! running tasks with worker and elapsed time mid-run, retries and finished lines with their
//! reasons, nothing wider than the terminal, the Ctrl-C question on a clean screen, the
//! elapsed time after re-attaching counted from the run's creation; and, without a terminal,
//! plain lines with a progress line every 10 s.

use std::process::Command;
use std::time::{Duration, Instant};

use zo_e2e::*;

const LIMIT: Duration = Duration::from_secs(120);
const COLS: usize = 80;

struct Tmux {
    socket: String,
}

impl Tmux {
    fn new() -> Tmux {
        assert!(
            Command::new("tmux").arg("-V").output().is_ok_and(|o| o.status.success()),
            "tmux is needed for this test (apt-get install tmux; .ci/run installs it)"
        );
        Tmux { socket: format!("zo-live-{}-{}", std::process::id(), rand_suffix()) }
    }

    fn cmd(&self, args: &[&str]) -> String {
        let out = Command::new("tmux").arg("-L").arg(&self.socket).args(args).output().expect("tmux runs");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Starts `shell` in a new 80×24 window named `name`.
    fn start(&self, name: &str, shell: &str) {
        let size = ["-x", "80", "-y", "24"];
        let first = self.cmd(&["list-sessions"]).is_empty();
        if first {
            self.cmd(&[&["new-session", "-d", "-s", "t", "-n", name][..], &size, &[shell]].concat());
        } else {
            self.cmd(&["new-window", "-t", "t", "-n", name, shell]);
        }
    }

    /// The window's screen as its rows; with `joined`, wrapped lines joined (a line wider than
    /// the terminal shows as one long line) and what scrolled off the top included.
    fn screen_of(&self, name: &str, joined: bool) -> String {
        let target = format!("t:{name}");
        let mut args = vec!["capture-pane", "-p", "-t", &target];
        if joined {
            args.extend(["-J", "-S", "-500"]);
        }
        self.cmd(&args)
    }

    fn keys(&self, name: &str, keys: &[&str]) {
        self.cmd(&[&["send-keys", "-t", &format!("t:{name}")][..], keys].concat());
    }

    /// Waits until the screen shows what `done` looks for; the screen then.
    fn wait_for(&self, name: &str, what: &str, done: impl Fn(&str) -> bool) -> String {
        self.wait_for_in(name, false, what, done)
    }

    fn wait_for_in(&self, name: &str, history: bool, what: &str, done: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(40);
        loop {
            let s = self.screen_of(name, history);
            if done(&s) {
                return s;
            }
            assert!(Instant::now() < deadline, "the screen never showed {what}:\n{s}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        self.cmd(&["kill-server"]);
    }
}

/// The first `[HH:MM:SS]` on the screen (the bar's elapsed time), in seconds.
fn elapsed_secs(screen: &str) -> Option<u64> {
    screen.match_indices('[').find_map(|(i, _)| {
        let t = screen.get(i + 1..i + 10)?;
        let b = t.as_bytes();
        if b.len() < 9 || b[2] != b':' || b[5] != b':' || b[8] != b']' {
            return None;
        }
        let num = |r: std::ops::Range<usize>| t[r].parse::<u64>().ok();
        Some(num(0..2)? * 3600 + num(3..5)? * 60 + num(6..8)?)
    })
}

#[test]
fn the_live_view_shows_running_tasks_asks_cleanly_and_reattaches() {
    let redis = Redis::start();
    let ns = namespace("live");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(
        d,
        "t.yaml",
        "tasks:\n  - { name: Quick, ccr_instance: fast, prompt: p, simulate: { duration: 500ms } }\n  - { name: Long one, ccr_instance: fast, prompt: p, simulate: { duration: 20s } }\n  - name: Flaky\n    ccr_instance: general\n    prompt: p\n    retry_policy: { max_retries: 1, retry_on: [model], backoff: fixed, base_delay: 200ms }\n    simulate: { duration: 300ms, fail: true }\n  - { name: After, ccr_instance: general, prompt: p, dependencies: [Quick], simulate: { duration: 1s } }\n",
    );
    let _w = Worker::start(
        d,
        "w",
        "executor: { kind: simulate }\ninstances: [ { name: fast, concurrency: 2 }, { name: general, concurrency: 1 } ]\n",
        &redis.url(),
        &ns,
    );
    let tmux = Tmux::new();
    let env = format!("cd {} && ZO_REDIS_URL={} ZO_NAMESPACE={ns} NO_COLOR=1 {}", d.display(), redis.url(), bin("zo-submit").display());
    let started = Instant::now();
    tmux.start("submit", &format!("{env} t.yaml --no-save --no-report; sleep 60"));

    // A failed task leaves the running list with its ✗ line (not at the next read of leases).
    tmux.wait_for("submit", "Flaky's failure", |s| s.contains("✗ Flaky [general] failed"));
    std::thread::sleep(Duration::from_millis(300));
    let s = tmux.screen_of("submit", false);
    assert!(!s.contains("▸ Flaky"), "a failed task still listed as running:\n{s}");

    // Mid-run: Long one runs on the worker with its elapsed time; the retry and the failure
    // scrolled by with their reason; every line of the view fits the terminal.
    let s = tmux.wait_for("submit", "Long one running alone, with its elapsed time", |s| {
        s.contains("ok 2 · failed 1 · running 1 | fast 1/2 · general 2/2")
            && s.lines().any(|l| l.starts_with("  ▸ Long one [fast] on ") && l.ends_with('s') && !l.ends_with("ms"))
    });
    assert!(s.contains("↻ Flaky [general] attempt 1 failed: model — agent exited with code 1"), "{s}");
    assert!(s.contains("✗ Flaky [general] failed 0.") && s.contains("✓ Quick [fast] success 0."), "{s}");
    // Each line of the view is cut to the width: none fills the row to its last column (a line
    // that did would wrap). The `submitted …` line before it is plain output.
    let rows: Vec<&str> = s.lines().collect();
    let first = rows.iter().position(|l| l.starts_with('↻') || l.starts_with('✓') || l.starts_with('✗')).unwrap();
    for l in &rows[first..] {
        assert!(l.trim_end().chars().count() < COLS, "as wide as the terminal: `{l}`");
    }
    let run =
        tmux.screen_of("submit", true).split("as run ").nth(1).and_then(|r| r.split_whitespace().next()).expect("the run id").to_string();

    // Ctrl-C: the bar leaves the screen and the question stands alone; `d` detaches.
    tmux.keys("submit", &["C-c"]);
    let s = tmux.wait_for("submit", "the question", |s| s.contains("[d/c + Enter]"));
    let question = s.lines().find(|l| l.contains("[d/c + Enter]")).unwrap();
    assert_eq!(question.trim_end(), format!("[d]etach (run {run} continues) or [c]ancel it? [d/c + Enter]"));
    assert!(!s.contains("▸ Long one") && !s.contains("] ████") && elapsed_secs(&s).is_none(), "the bar is still drawn:\n{s}");
    tmux.keys("submit", &["d", "Enter"]);
    tmux.wait_for_in("submit", true, "the detach", |s| {
        s.contains(&format!("detached; run {run} continues. Re-attach with: zo-submit watch {run}"))
    });

    // Re-attached, the elapsed time counts from the run's creation, not from now; meanwhile a
    // watcher without a terminal prints plain lines and a progress line every 10 s.
    std::thread::sleep(Duration::from_secs(2));
    let since = started.elapsed().as_secs();
    tmux.start("watch", &format!("{env} watch {run} --no-save --no-report; sleep 60"));
    let s = tmux.wait_for("watch", "the bar", |s| elapsed_secs(s).is_some());
    let shown = elapsed_secs(&s).unwrap();
    assert!(shown + 1 >= since, "elapsed {shown}s after re-attaching, but the run is {since}s old:\n{s}");
    let plain = submit(d, &redis.url(), &ns, &["watch", &run, "--no-save", "--no-report"], LIMIT);
    assert_eq!(plain.code, 1, "Flaky failed: {}", plain.stderr);
    let progress: Vec<&str> = plain.stderr.lines().filter(|l| l.starts_with("progress: ")).collect();
    assert!(!progress.is_empty(), "no progress line in a >10 s watch without a terminal:\n{}", plain.stderr);
    assert!(progress[0].contains("/4 done (") && progress[0].contains("elapsed"), "{}", progress[0]);
    assert!(progress.len() >= 2, "a progress line at the start and every 10 s: {progress:?}");
    assert!(plain.stderr.contains("✓ Long one [fast] success 20.0s"), "{}", plain.stderr);
    assert!(!plain.stderr.contains('\u{1b}'), "no colour and no cursor movement without a terminal");

    // The dashboard at the end fits the 80 columns too.
    let s = tmux.wait_for_in("watch", true, "the dashboard", |s| s.contains("EXECUTION SUMMARY") && s.contains("TASKS"));
    let table: Vec<&str> = s.lines().map(str::trim).filter(|l| l.starts_with(['│', '┌', '└', '╞', '├'])).collect();
    assert!(table.len() >= 6, "the dashboard's table rows are on screen:\n{s}");
    for l in table {
        assert!(l.chars().count() <= COLS, "wider than the terminal: `{l}`");
    }
}

/// `scripts/demo.sh` (into a temporary directory, against a test Redis): long enough for the
/// live view, one retry and one failure with its reason, the HTML report's path, next steps.
#[test]
fn the_demo_shows_the_live_view_and_says_what_to_do_next() {
    let redis = Redis::start();
    let dir = tempfile::tempdir().unwrap();
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/demo.sh");
    let demo_ns = namespace("demo");
    let started = Instant::now();
    let out = Command::new("bash")
        .arg(&script)
        .env("ZO_REDIS_URL", redis.url())
        .env("ZO_NAMESPACE", &demo_ns)
        .env("ZO_DEMO_DIR", dir.path())
        .stdin(std::process::Stdio::null())
        .output()
        .expect("bash runs the demo");
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "the demo ends as designed: {stdout}\n{stderr}");
    let took = started.elapsed();
    assert!(took >= Duration::from_secs(8), "long enough to watch: {took:?}");
    assert!(stderr.contains("↻ Package mirror [fast] attempt 1 failed: command — command exited with code 1"), "{stderr}");
    assert!(
        stderr.contains("✗ Security audit [code-review] failed") && stderr.contains("2 packages with known vulnerabilities"),
        "{stderr}"
    );
    assert!(stderr.contains("progress: "), "without a terminal, progress lines: {stderr}");
    let html = stdout.lines().skip_while(|l| !l.contains("The HTML report")).nth(1).map(str::trim).unwrap_or_default().to_string();
    assert!(html.ends_with(".html") && std::path::Path::new(&html).is_file(), "the report's path is printed: {stdout}");
    assert!(html.starts_with(dir.path().to_str().unwrap()), "written where asked: {html}");
    for step in
        ["zo-submit runs", "zo-submit show latest", "zo-worker --config configs/worker.local.yaml", "executor.host", "secrets check"]
    {
        assert!(stdout.contains(step), "next steps name `{step}`: {stdout}");
    }
    assert!(std::fs::read_dir(dir.path().join("results"))
        .unwrap()
        .flatten()
        .any(|e| e.file_name().to_string_lossy().starts_with("worker_")));

    // `show` of the demo run at 80 columns: one line per task, no name or number broken.
    let shown = Command::new(bin("zo-submit"))
        .args(["show", "latest"])
        .env("ZO_REDIS_URL", redis.url())
        .env("ZO_NAMESPACE", &demo_ns)
        .env("COLUMNS", "80")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&shown.stdout);
    assert!(shown.status.success(), "{}", String::from_utf8_lossy(&shown.stderr));
    for l in text.lines() {
        assert!(l.chars().count() <= 80, "wider than 80 columns: `{l}`");
    }
    let demo = std::fs::read_to_string(script.parent().unwrap().join("../tasks/demo.yaml")).unwrap();
    let names: Vec<&str> = demo.lines().filter_map(|l| l.trim().strip_prefix("- name: ")).map(|n| n.trim_matches('"')).collect();
    assert_eq!(names.len(), 22, "{names:?}");
    for n in &names {
        let rows = text.lines().filter(|l| l.contains(&format!("┆ {n} "))).count();
        assert_eq!(rows, 1, "task `{n}` on one row:\n{text}");
    }
    for inst in ["code-review", "general", "reasoning"] {
        assert!(text.lines().any(|l| l.starts_with(&format!("│ {inst} "))), "instance names whole:\n{text}");
    }
    assert!(text.lines().count() < 60, "{} lines:\n{text}", text.lines().count());
    // The workflow it suggests trying runs as printed (the repository's files, simulated).
    let suggested = "./target/debug/zo-submit tasks/example.yaml --with-worker configs/worker.simulate.yaml";
    assert!(stdout.contains(suggested), "{stdout}");
    let repo = script.parent().unwrap().parent().unwrap();
    let out = Command::new(bin("zo-submit"))
        .args(["tasks/example.yaml", "--with-worker", "configs/worker.simulate.yaml", "--quiet", "--no-report", "--json", "--results-dir"])
        .arg(dir.path().join("try"))
        .arg("--output-dir")
        .arg(dir.path().join("try"))
        .current_dir(repo)
        .env("ZO_REDIS_URL", redis.url())
        .env("ZO_NAMESPACE", namespace("demonext"))
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(doc["summary"]["successful"], doc["summary"]["total_tasks"], "every task of the example succeeds: {}", doc["summary"]);
}
