//! Tests of the HTML report and its timeline, over a run built from a snapshot with known
//! times and hostile names and outputs.

use super::gantt::{self, Group};
use super::{build, html, markdown, ResultsDocument};
use crate::catalog::Catalog;
use crate::model::{ErrorClass, Outcome, RunMeta, RunSnapshot, Status, TaskResult, TaskSpec, TaskState};

/// The run's creation; task times are offsets from it (ms).
const T0: u64 = 1_780_000_000_000;

struct Ran {
    name: &'static str,
    instance: &'static str,
    worker: &'static str,
    status: Status,
    /// Queued at, started at, ended at (ms after T0).
    times: (u64, u64, u64),
    output: &'static str,
    error: Option<&'static str>,
}

fn result(r: &Ran, attempt: u32) -> TaskResult {
    let (q, s, e) = r.times;
    TaskResult {
        outcome: Outcome {
            status: r.status,
            error_class: r.error.map(|_| ErrorClass::Model),
            error: r.error.map(str::to_string),
            output: r.output.into(),
            exit_code: Some(if r.status == Status::Success { 0 } else { 1 }),
            command: None,
            agent: None,
        },
        attempt,
        worker: r.worker.into(),
        started_ms: T0 + s,
        finished_ms: T0 + e,
        queue_wait_ms: s - q,
        reclaimed: false,
        cost_nanos: None,
        rate_wait_ms: 0,
    }
}

/// A finished run of `ran` plus one task that never ran (skipped after the failure).
fn doc(ran: &[Ran]) -> ResultsDocument {
    let mut specs: Vec<TaskSpec> = ran.iter().map(|r| TaskSpec::new(r.name, r.instance)).collect();
    specs.push(TaskSpec::new("never ran", "fast"));
    let n = specs.len();
    let state = |s: Status| match s {
        Status::Success => TaskState::Success,
        Status::Timeout => TaskState::Timeout,
        _ => TaskState::Failed,
    };
    let mut states: Vec<TaskState> = ran.iter().map(|r| state(r.status)).collect();
    states.push(TaskState::Skipped);
    let results: Vec<Option<TaskResult>> = ran.iter().map(|r| Some(result(r, 1))).chain([None]).collect();
    let snap = RunSnapshot {
        meta: RunMeta {
            run_id: "R".into(),
            file: "t.yaml".into(),
            total: n as u64,
            finished: true,
            created_ms: T0,
            finished_ms: Some(T0 + 10_000),
            ..Default::default()
        },
        specs,
        states,
        history: results.iter().map(|r| r.iter().cloned().collect()).collect(),
        results,
        skips: vec![None; n],
        stages: Vec::new(),
        rate_waits: vec![0; n],
    };
    build(&snap, &Catalog::builtin())
}

fn ran() -> Vec<Ran> {
    let ok = |name, instance, worker, times| Ran { name, instance, worker, status: Status::Success, times, output: "fine", error: None };
    vec![
        ok("a", "fast", "w1", (0, 0, 2_000)),
        ok("b", "fast", "w1", (0, 1_000, 3_000)),
        ok("c", "general", "w2", (0, 4_000, 10_000)),
        Ran {
            name: "<img src=x onerror=alert(1)>",
            instance: "general",
            worker: "w1\"><script>alert(2)</script>",
            status: Status::Failed,
            times: (2_000, 5_000, 6_000),
            output: "</pre><script>alert(3)</script>\u{1b}[2J",
            error: Some("<svg onload=alert(4)> failed & 'quoted'"),
        },
    ]
}

/// Each bar starts and ends where its task's times put it on the axis, its queue wait is
/// drawn before it, and tasks of one worker that overlap go to separate lanes.
#[test]
fn bars_sit_at_their_tasks_times() {
    let d = doc(&ran());
    let g = gantt::layout(&d, Group::Worker, 1200.0);
    assert_eq!((g.t0_ms, g.span_ms), (T0, 10_000));
    assert_eq!(g.bars.len(), 4, "the task that never ran has no bar");
    let at = |ms: u64| 190.0 + ms as f64 / 10_000.0 * g.plot;
    let bar = |name: &str| g.bars.iter().find(|b| d.tasks[b.task].task_name == name).unwrap();
    for (name, (q, s, e)) in [("a", (0, 0, 2_000)), ("b", (0, 1_000, 3_000)), ("c", (0, 4_000, 10_000))] {
        let b = bar(name);
        assert!((b.x - at(s)).abs() < 0.01, "{name} starts at {} not {}", b.x, at(s));
        assert!((b.x + b.width - at(e)).abs() < 0.01, "{name} ends at {} not {}", b.x + b.width, at(e));
        assert!((b.wait_x - at(q)).abs() < 0.01, "{name}'s queue wait starts at {}", b.wait_x);
    }
    // a and b overlap on w1: two lanes of w1, labelled once; c is on w2's lane.
    assert_ne!(bar("a").lane, bar("b").lane);
    assert_eq!(g.lanes.iter().filter(|l| l.as_str() == "w1").count(), 1);
    assert_eq!(g.lanes[bar("c").lane], "w2");
    assert_eq!(bar("c").status, TaskState::Success);
    // By instance: fast holds a and b (overlapping, two lanes), general c and the failure.
    let g = gantt::layout(&d, Group::Instance, 1200.0);
    let lanes: Vec<&str> = g.lanes.iter().map(String::as_str).collect();
    assert_eq!(lanes, ["fast", "", "general", ""]);
}

/// Names, workers, outputs and errors cannot inject markup or scripts into the HTML report,
/// and the page forbids scripts and requests whatever it holds.
#[test]
fn html_escapes_untrusted_text_and_allows_no_script() {
    let h = html(&doc(&ran()));
    for payload in ["<script>", "<img src=x", "<svg onload", "</pre><script>"] {
        assert!(!h.contains(payload), "{payload} reached the page unescaped");
    }
    assert!(h.contains("&lt;img src=x onerror=alert(1)&gt;"), "the name is shown, escaped");
    assert!(h.contains("&lt;svg onload=alert(4)&gt; failed &amp; &#39;quoted&#39;"));
    assert!(h.contains("w1&quot;&gt;&lt;script&gt;"), "attribute-breaking quotes are escaped");
    assert!(!h.contains('\u{1b}') && h.contains("\\u{1b}[2J"), "control characters are written out");
    assert!(h.contains("Content-Security-Policy") && h.contains("script-src 'none'") && h.contains("default-src 'none'"));
    // Self-contained: nothing is fetched.
    for fetch in ["<script", "<link", "src=\"http", "href=\"http", "@import", "url("] {
        assert!(!h.contains(fetch), "{fetch} in the page");
    }
    // Failures come first: the failure's section precedes the timeline and the task list.
    let fail = h.find("id=\"failures\"").unwrap();
    assert!(fail < h.find("id=\"timeline\"").unwrap() && fail < h.find("id=\"tasks\"").unwrap());
    assert_eq!(h.matches("class=\"bar\"").count(), 8, "four bars in each of the two timelines");
}

/// A Markdown renderer gets no live HTML from names, workers or errors: outside code blocks
/// it is escaped as in the HTML report, inside inline code and fences it is shown as written;
/// a bidi override in a name is written out.
#[test]
fn markdown_passes_no_raw_html_or_bidi_controls() {
    let mut r = ran();
    r[0].name = "report\u{202E}fdp.exe";
    let m = markdown(&doc(&r));
    assert!(m.contains("### ✗ &lt;img src=x onerror=alert(1)&gt;"), "{m}");
    assert!(!m.lines().any(|l| !l.starts_with("- Worker:") && l.contains("<img")), "raw HTML outside code: {m}");
    assert!(m.contains("- Worker: `w1\"><script>alert(2)</script>`"), "inline code shows it as written: {m}");
    assert!(m.contains("report\\u{202e}fdp.exe") && !m.contains('\u{202E}'), "{m}");
    let fenced = m.find("```text\n<svg onload=alert(4)>").expect("the error in a fence");
    assert!(m[..fenced].ends_with("**Error** (model):\n\n"), "{m}");
}

#[test]
fn markdown_lists_failures_first_with_times() {
    let m = markdown(&doc(&ran()));
    let failures = m.find("## Failures (2)").expect("a failures section");
    assert!(failures < m.find("## Tasks").unwrap());
    assert!(m[failures..m.find("## Tasks").unwrap()].contains("never ran"), "a skip caused by a failure counts as one");
    assert!(m.contains("- Started: 2026-05-28T") && m.contains("- Ended: "), "{m}");
    assert!(m.contains("| Skipped | Cancelled | Rate |"), "the instance table counts cancelled tasks: {m}");
}

#[test]
fn task_times_show_to_the_millisecond_even_on_a_whole_second() {
    let d = doc(&ran());
    let h = html(&d);
    // T0 is a whole second: its times must still read HH:MM:SS.000.
    assert!(d.tasks.iter().any(|t| t.started_at.as_deref().is_some_and(|s| s.ends_with(".000Z"))), "a start on a whole second");
    for t in &d.tasks {
        for ts in [t.started_at.as_deref(), Some(t.timestamp.as_str())].into_iter().flatten() {
            let clock = &ts[11..23];
            assert!(clock.as_bytes()[8] == b'.' && !clock.ends_with('Z'), "{ts}");
            assert!(h.contains(&format!(">{clock}</span>")), "{clock} of {ts} in the tasks table");
        }
    }
}
