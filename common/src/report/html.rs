//! The HTML report: one self-contained file (inline style, inline SVG, no script, nothing
//! fetched; a Content-Security-Policy that forbids scripts and every request) with the
//! summary, results by instance, the failures first with their reasons and attempts, the
//! timeline by worker and by instance, and every task with collapsible outputs. Names,
//! outputs and errors are untrusted model text: every one goes through [`esc`].

use std::fmt::Write as _;

use super::cells::{budget_line, instance_cells, status_mark, INSTANCE_COLUMNS};
use super::document::{ResultsDocument, TaskReport};
use super::gantt::{self, Group};
use super::units::usd;
use crate::model::TaskState;

/// Width of the timelines, px.
const CHART_WIDTH: f64 = 1100.0;

/// No script runs, nothing loads: styles are inline, images are the inline SVG.
const CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; script-src 'none'; base-uri 'none'; form-action 'none'";

const STYLE: &str = r#"
body { font: 14px/1.45 system-ui, sans-serif; margin: 24px; color: #222; max-width: 1200px; }
h1 { font-size: 22px; margin: 0 0 4px; } h2 { font-size: 17px; margin: 28px 0 8px; border-bottom: 1px solid #ddd; }
.meta { color: #555; } code, pre { font: 12.5px/1.4 ui-monospace, monospace; }
pre { background: #f6f8fa; padding: 8px; overflow-x: auto; white-space: pre-wrap; word-break: break-word; max-height: 480px; }
table { border-collapse: collapse; margin: 6px 0; } th, td { border: 1px solid #ddd; padding: 3px 8px; text-align: left; vertical-align: top; }
td.n { text-align: right; font-variant-numeric: tabular-nums; } th { background: #f3f3f3; }
.cards { display: flex; flex-wrap: wrap; gap: 10px; } .card { border: 1px solid #ddd; border-radius: 6px; padding: 8px 14px; min-width: 110px; }
.card b { display: block; font-size: 20px; } .ok { color: #2e7d32; } .bad { color: #c62828; } .warn { color: #ef6c00; } .muted { color: #757575; }
details { margin: 4px 0; } summary { cursor: pointer; } .failure { border-left: 4px solid #c62828; padding-left: 10px; margin: 10px 0; }
.gantt text { font: 11px system-ui, sans-serif; fill: #333; } .gantt .tick { fill: #777; } .legend span { display: inline-block; padding: 0 8px; margin-right: 6px; color: #fff; border-radius: 3px; }
"#;

/// `s` safe in HTML text and attribute values; control characters written out as escapes.
pub fn esc(s: &str) -> String {
    let s = crate::text::escape_controls(s);
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn class_of(s: TaskState) -> &'static str {
    match s {
        TaskState::Success => "ok",
        TaskState::Failed | TaskState::Timeout => "bad",
        TaskState::Cancelled | TaskState::Skipped => "muted",
        _ => "warn",
    }
}

/// The HTML report of a run.
pub fn html(doc: &ResultsDocument) -> String {
    let s = &doc.summary;
    let mut h = String::with_capacity(64 * 1024);
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n<meta http-equiv=\"Content-Security-Policy\" content=\"{CSP}\">\n<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>Zo Worker Swarm — run {}</title>\n<style>{STYLE}</style></head><body>\n",
        esc(&doc.run_id)
    );
    let _ = writeln!(
        h,
        "<h1>Zo Worker Swarm report</h1><div class=\"meta\">Run <code>{}</code> · task file <code>{}</code> · finished {}</div>",
        esc(&doc.run_id),
        esc(&doc.task_file),
        esc(&s.timestamp)
    );
    summary_cards(&mut h, doc);
    instances(&mut h, doc);
    let failures: Vec<&TaskReport> = doc.tasks.iter().filter(|t| t.is_failure()).collect();
    if !failures.is_empty() {
        let _ = writeln!(h, "<h2 id=\"failures\">Failures ({})</h2>", failures.len());
        for t in &failures {
            failure(&mut h, t);
        }
    }
    timelines(&mut h, doc);
    tasks(&mut h, doc);
    h.push_str("</body></html>\n");
    h
}

fn summary_cards(h: &mut String, doc: &ResultsDocument) {
    let s = &doc.summary;
    let card = |h: &mut String, label: &str, value: String, class: &str| {
        let _ = write!(h, "<div class=\"card\"><b class=\"{class}\">{}</b>{label}</div>", esc(&value));
    };
    h.push_str("<h2>Summary</h2><div class=\"cards\">");
    card(h, "tasks", s.total_tasks.to_string(), "");
    card(h, &format!("successful ({:.1}%)", s.success_rate), s.counts.successful.to_string(), "ok");
    let bad = s.counts.failed + s.counts.timeout;
    card(h, &format!("failed · {} timed out", s.counts.timeout), bad.to_string(), if bad > 0 { "bad" } else { "" });
    if s.counts.skipped + s.counts.cancelled > 0 {
        card(h, &format!("skipped · {} cancelled", s.counts.cancelled), s.counts.skipped.to_string(), "muted");
    }
    card(h, "wall time", format!("{:.1}s", s.wall_time), "");
    card(h, "average duration", format!("{:.1}s", s.average_duration), "");
    card(h, "tokens in / out", format!("{} / {}", s.input_tokens, s.output_tokens), "");
    if let Some(c) = s.cost {
        card(h, "cost", usd(c), "");
    }
    h.push_str("</div>\n");
    if let Some(b) = &s.budget {
        let _ = writeln!(h, "<p>Budget: {}</p>", esc(&budget_line(b)));
    }
}

fn instances(h: &mut String, doc: &ResultsDocument) {
    let priced = doc.results_by_instance.values().any(|e| e.cost.is_some());
    h.push_str("<h2>Results by instance</h2><table><tr>");
    for c in INSTANCE_COLUMNS {
        let _ = write!(h, "<th>{c}</th>");
    }
    if priced {
        h.push_str("<th>Cost</th>");
    }
    h.push_str("</tr>\n");
    for (name, e) in &doc.results_by_instance {
        h.push_str("<tr>");
        for (k, cell) in instance_cells(name, e).iter().enumerate() {
            let _ = write!(h, "<td{}>{}</td>", if k >= 2 { " class=\"n\"" } else { "" }, esc(cell));
        }
        if priced {
            let _ = write!(h, "<td class=\"n\">{}</td>", e.cost.map_or_else(|| "-".into(), usd));
        }
        h.push_str("</tr>\n");
    }
    h.push_str("</table>\n");
}

fn failure(h: &mut String, t: &TaskReport) {
    let class = t.error_class.map(|c| format!(" [{}]", c.as_str())).unwrap_or_default();
    let _ = write!(
        h,
        "<div class=\"failure\"><b>{} {}</b> <span class=\"muted\">[{}] {}{}</span><br>{}",
        status_mark(t.status),
        esc(&t.task_name),
        esc(&t.ccr_instance),
        t.status.as_str(),
        esc(&class),
        esc(t.error.as_deref().unwrap_or("no error message"))
    );
    if t.attempt_history.len() > 1 || t.attempt_history.iter().any(|a| a.error.is_some()) {
        h.push_str("<table><tr><th>Attempt</th><th>Status</th><th>Worker</th><th>Duration</th><th>Ended</th><th>Error</th></tr>");
        for a in &t.attempt_history {
            let class = a.error_class.map(|c| format!("[{}] ", c.as_str())).unwrap_or_default();
            let _ = write!(
                h,
                "<tr><td class=\"n\">{}</td><td>{}</td><td>{}</td><td class=\"n\">{:.1}s</td><td>{}</td><td>{}{}</td></tr>",
                a.attempt,
                a.status.as_str(),
                esc(&a.worker),
                a.duration,
                esc(&a.timestamp),
                esc(&class),
                esc(a.error.as_deref().unwrap_or(""))
            );
        }
        h.push_str("</table>");
    }
    outputs(h, t);
    h.push_str("</div>\n");
}

fn timelines(h: &mut String, doc: &ResultsDocument) {
    let by_worker = gantt::layout(doc, Group::Worker, CHART_WIDTH);
    if by_worker.bars.is_empty() {
        return;
    }
    h.push_str("<h2 id=\"timeline\">Timeline</h2><p class=\"legend\"><span style=\"background:#2e7d32\">success</span><span style=\"background:#c62828\">failed</span><span style=\"background:#ef6c00\">timeout</span><span style=\"background:#757575\">cancelled</span><span style=\"background:#b0bec5;color:#222\">queue wait</span> Hover a bar for the task.</p>\n");
    if by_worker.left_out > 0 {
        let _ = writeln!(
            h,
            "<p class=\"warn\">The first {} tasks by start are drawn; {} more are not.</p>",
            gantt::MAX_BARS,
            by_worker.left_out
        );
    }
    let _ = writeln!(h, "<details open><summary>By worker</summary>{}</details>", gantt::svg(doc, &by_worker, esc));
    let by_instance = gantt::layout(doc, Group::Instance, CHART_WIDTH);
    let _ = writeln!(h, "<details open><summary>By instance</summary>{}</details>", gantt::svg(doc, &by_instance, esc));
}

fn tasks(h: &mut String, doc: &ResultsDocument) {
    h.push_str("<h2 id=\"tasks\">Tasks</h2><table><tr><th></th><th>Task</th><th>Instance</th><th>Status</th><th>Started</th><th>Ended</th><th>Duration</th><th>Queued</th><th>Attempts</th><th>Worker</th><th>Tokens</th></tr>\n");
    // Failures first, then the rest in file order.
    let ordered = doc.tasks.iter().filter(|t| t.is_failure()).chain(doc.tasks.iter().filter(|t| !t.is_failure()));
    for t in ordered {
        let _ = writeln!(
            h,
            "<tr><td class=\"{}\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"n\">{:.1}s</td><td class=\"n\">{:.1}s</td><td class=\"n\">{}</td><td>{}</td><td class=\"n\">{}/{}</td></tr>",
            class_of(t.status),
            status_mark(t.status),
            esc(&t.task_name),
            esc(&t.ccr_instance),
            t.status.as_str(),
            t.started_at.as_deref().map_or_else(|| "-".into(), clock),
            if t.attempts > 0 { clock(&t.timestamp) } else { "-".into() },
            t.duration,
            t.queue_wait,
            t.attempts,
            esc(t.worker.as_deref().unwrap_or("-")),
            t.input_tokens,
            t.output_tokens
        );
    }
    h.push_str("</table>\n<h2>Outputs</h2>\n");
    for t in doc.tasks.iter().filter(|t| !t.output.is_empty() || t.command.is_some()) {
        let _ = write!(
            h,
            "<details><summary>{} {} <span class=\"muted\">[{}]</span></summary>",
            status_mark(t.status),
            esc(&t.task_name),
            esc(&t.ccr_instance)
        );
        if let Some(d) = &t.description {
            let _ = write!(h, "<p>{}</p>", esc(d));
        }
        outputs(h, t);
        h.push_str("</details>\n");
    }
}

/// `12:16:19.316` (the full timestamp on hover): a run's times share their date.
fn clock(ts: &str) -> String {
    let time = ts.split_once('T').map_or(ts, |(_, t)| t).trim_end_matches('Z');
    let time = time.get(..12).unwrap_or(time);
    format!("<span title=\"{}\">{}</span>", esc(ts), esc(time))
}

/// A task's model output and command output, each collapsible.
fn outputs(h: &mut String, t: &TaskReport) {
    if !t.output.is_empty() {
        let _ = write!(h, "<details><summary>Output ({} bytes)</summary><pre>{}</pre></details>", t.output.len(), esc(&t.output));
    }
    if let Some(c) = &t.command {
        let exit = c.exit_code.map_or_else(|| "-".into(), |c| c.to_string());
        let _ = write!(
            h,
            "<details><summary>Command output (exit {exit}, {:.1}s{})</summary><pre>{}</pre>",
            c.duration,
            if c.truncated { ", truncated" } else { "" },
            esc(&c.stdout)
        );
        if !c.stderr.is_empty() {
            let _ = write!(h, "<p>stderr</p><pre>{}</pre>", esc(&c.stderr));
        }
        h.push_str("</details>");
    }
}
