//! The Markdown report: summary, per instance, the failures, then every other task with its
//! times, output and errors.

use std::fmt::Write as _;

use super::cells::{budget_line, instance_cells, status_mark, INSTANCE_COLUMNS};
use super::document::{ResultsDocument, TaskReport};
use super::units::{pct, usd};

/// A fence longer than any run of backticks in `s`, so the content cannot close it.
fn fence(s: &str) -> String {
    let mut longest = 0;
    let mut cur = 0;
    for c in s.chars() {
        if c == '`' {
            cur += 1;
            longest = longest.max(cur);
        } else {
            cur = 0;
        }
    }
    "`".repeat((longest + 1).max(3))
}

/// Untrusted text in Markdown outside a code block: HTML written as text (a renderer would
/// otherwise run `<img onerror=…>`), on one line, `|` escaped for tables.
fn md_cell(s: &str) -> String {
    super::html::esc(s).replace('|', "\\|").replace('\n', " ")
}

/// Untrusted text as inline code: a backtick run longer than any inside it, so nothing
/// closes it early (HTML inside code is shown as written).
fn md_code(s: &str) -> String {
    let longest = s.split(|c| c != '`').map(str::len).max().unwrap_or(0);
    let ticks = longest + 1;
    let t = "`".repeat(ticks);
    let s = s.replace('\n', " ");
    if ticks > 1 || s.starts_with('`') || s.ends_with('`') {
        format!("{t} {s} {t}")
    } else {
        format!("{t}{s}{t}")
    }
}

/// The Markdown report: summary, per instance, then every task with its output and errors.
pub fn markdown(doc: &ResultsDocument) -> String {
    let s = &doc.summary;
    let mut m = String::new();
    let _ = writeln!(m, "# Zo Worker Swarm report\n");
    let _ = writeln!(m, "- Run: {}\n- Task file: {}\n- Finished: {}\n", md_code(&doc.run_id), md_code(&doc.task_file), s.timestamp);
    let _ = writeln!(m, "## Summary\n");
    let _ = writeln!(m, "| Metric | Value |\n|---|---|");
    let _ = writeln!(m, "| Total tasks | {} |", s.total_tasks);
    let _ = writeln!(m, "| Successful | {} ({:.1}%) |", s.counts.successful, s.success_rate);
    let _ = writeln!(m, "| Failed | {} |", s.counts.failed);
    let _ = writeln!(m, "| Timeout | {} |", s.counts.timeout);
    let _ = writeln!(m, "| Skipped | {} |", s.counts.skipped);
    let _ = writeln!(m, "| Cancelled | {} |", s.counts.cancelled);
    let _ = writeln!(m, "| Wall time | {:.1}s |", s.wall_time);
    let _ = writeln!(m, "| Total duration | {:.1}s |", s.total_duration);
    let _ = writeln!(m, "| Average duration | {:.1}s |", s.average_duration);
    let _ = writeln!(m, "| Tokens in / out | {} / {} |", s.input_tokens, s.output_tokens);
    if let Some(c) = s.cost {
        let _ = writeln!(m, "| Cost | {} |", usd(c));
    }
    if let Some(b) = &s.budget {
        let _ = writeln!(m, "| Budget | {} |", md_cell(&budget_line(b)));
    }
    m.push('\n');
    let _ = writeln!(m, "## Results by instance\n");
    let _ = writeln!(m, "| {} |\n|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|", INSTANCE_COLUMNS.join(" | "));
    for (name, e) in &doc.results_by_instance {
        let cells: Vec<String> = instance_cells(name, e).iter().map(|c| md_cell(c)).collect();
        let _ = writeln!(m, "| {} |", cells.join(" | "));
    }
    if let Some(total) = s.cost {
        // The seed's "cost analysis per model": where the money went.
        let _ = writeln!(m, "\n## Cost by instance\n");
        let _ = writeln!(m, "| Instance | Model | Tasks | Tokens in/out | Cost | Per task | Share |\n|---|---|---:|---:|---:|---:|---:|");
        for (name, e) in doc.results_by_instance.iter().filter(|(_, e)| e.cost.is_some()) {
            let c = e.cost.unwrap_or(0.0);
            let share = if total > 0.0 { (c / total * 1000.0).round() / 10.0 } else { pct(0, 0) };
            let _ = writeln!(
                m,
                "| {} | {} | {} | {}/{} | {} | {} | {share:.1}% |",
                md_cell(name),
                md_cell(&e.model),
                e.total,
                e.input_tokens,
                e.output_tokens,
                usd(c),
                usd(if e.total > 0 { c / e.total as f64 } else { 0.0 }),
            );
        }
    }
    // Failures first (what a reader looks for), then the rest in file order.
    let failures: Vec<&TaskReport> = doc.tasks.iter().filter(|t| t.is_failure()).collect();
    if !failures.is_empty() {
        let _ = writeln!(m, "\n## Failures ({})\n", failures.len());
        for t in failures {
            task(&mut m, t);
        }
    }
    let _ = writeln!(m, "\n## Tasks\n");
    for t in doc.tasks.iter().filter(|t| !t.is_failure()) {
        task(&mut m, t);
    }
    // Outputs, errors and names are untrusted: no live control character reaches a terminal
    // that shows the report.
    crate::text::escape_controls(&m).into_owned()
}

/// One task's section: where and how it ran, its error and outputs.
fn task(m: &mut String, t: &TaskReport) {
    let _ = writeln!(m, "### {} {}\n", status_mark(t.status), md_cell(&t.task_name));
    let _ = writeln!(
        m,
        "- Instance: {}\n- Status: **{}**\n- Duration: {:.2}s (queued {:.2}s)",
        md_code(&t.ccr_instance),
        t.status.as_str(),
        t.duration,
        t.queue_wait
    );
    if let Some(start) = &t.started_at {
        let _ = writeln!(m, "- Started: {start}\n- Ended: {}", t.timestamp);
    }
    if t.attempts > 0 {
        let _ = writeln!(m, "- Attempts: {}", t.attempts);
    }
    if let Some(w) = &t.worker {
        let _ = writeln!(m, "- Worker: {}", md_code(w));
    }
    if let Some(c) = t.exit_code {
        let _ = writeln!(m, "- Exit code: {c}");
    }
    if !t.dependencies.is_empty() {
        let _ = writeln!(m, "- After: {}", t.dependencies.iter().map(|d| md_code(d)).collect::<Vec<_>>().join(", "));
    }
    if t.input_tokens + t.output_tokens > 0 {
        let _ = writeln!(m, "- Tokens in / out: {} / {}", t.input_tokens, t.output_tokens);
    }
    if let Some(c) = t.cost {
        let _ = writeln!(m, "- Cost: {}", usd(c));
    }
    if let Some(d) = &t.description {
        let _ = writeln!(m, "- Description: {}", md_cell(d));
    }
    if let Some(e) = &t.error {
        let f = fence(e);
        let class = t.error_class.map_or("error", |c| c.as_str());
        let _ = writeln!(m, "\n**Error** ({class}):\n\n{f}text\n{e}\n{f}");
    }
    if !t.output.is_empty() {
        let f = fence(&t.output);
        let _ = writeln!(m, "\n**Output:**\n\n{f}text\n{}\n{f}", t.output.trim_end_matches('\n'));
    }
    if let Some(c) = &t.command {
        if !c.stderr.trim().is_empty() {
            let f = fence(&c.stderr);
            let _ = writeln!(m, "\n**Command stderr:**\n\n{f}text\n{}\n{f}", c.stderr.trim_end_matches('\n'));
        }
    }
    m.push('\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fence_outgrows_content() {
        assert_eq!(fence("plain"), "```");
        assert_eq!(fence("has ``` inside"), "````");
    }

    #[test]
    fn untrusted_names_carry_no_live_html() {
        assert_eq!(md_cell("<img src=x onerror=alert(1)> | a"), "&lt;img src=x onerror=alert(1)&gt; \\| a");
        assert_eq!(md_code("plain"), "`plain`");
        assert_eq!(md_code("a`b"), "`` a`b ``");
        assert_eq!(md_code("<b>"), "`<b>`");
    }
}
