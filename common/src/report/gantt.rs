//! The timeline of a run as a Gantt chart: one bar per task that ran (its last attempt),
//! placed by its start and end on a shared time axis, in lanes by worker or by instance, with
//! the time it waited in its queue drawn before it. Pure layout ([`layout`]) and an inline SVG
//! drawn from it ([`svg`]); the HTML report embeds the SVG.

use std::fmt::Write as _;

use super::{ResultsDocument, TaskReport};
use crate::model::{parse_rfc3339, TaskState};

/// Lane height and the gap between lanes, px.
const ROW: f64 = 18.0;
const GAP: f64 = 4.0;
/// Width of the lane labels, px.
const LABEL: f64 = 190.0;
/// Most bars drawn (the earliest starts): past this a chart says what it left out.
pub const MAX_BARS: usize = 2000;

/// How lanes are formed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Group {
    Worker,
    Instance,
}

/// One task's bar.
#[derive(Debug, Clone, PartialEq)]
pub struct Bar {
    /// Index into the document's `tasks`.
    pub task: usize,
    pub lane: usize,
    /// Left edge of the run bar and its width, px.
    pub x: f64,
    pub width: f64,
    /// Left edge of the queue-wait bar (it ends at `x`).
    pub wait_x: f64,
    pub status: TaskState,
}

/// The chart: lanes (label, shown on a group's first lane only), bars, the time span.
#[derive(Debug, Clone, PartialEq)]
pub struct Gantt {
    pub lanes: Vec<String>,
    pub bars: Vec<Bar>,
    /// The instant at the left edge and the span shown, ms.
    pub t0_ms: u64,
    pub span_ms: u64,
    /// Width of the whole chart and of its plot area, px.
    pub width: f64,
    pub plot: f64,
    /// Tasks that ran but were left out (past [`MAX_BARS`]).
    pub left_out: usize,
}

/// A task's queue entry, start and end (ms), when it ran.
fn times(t: &TaskReport) -> Option<(u64, u64, u64)> {
    let start = parse_rfc3339(t.started_at.as_deref()?)?;
    let end = parse_rfc3339(&t.timestamp)?.max(start);
    let queued = start.saturating_sub((t.queue_wait * 1000.0).round() as u64);
    Some((queued, start, end))
}

/// Lays out the tasks of `doc` that ran, grouped by `group`, in a chart `width` px wide.
/// Tasks of one group that overlap in time go to separate lanes of that group.
pub fn layout(doc: &ResultsDocument, group: Group, width: f64) -> Gantt {
    let mut ran: Vec<(usize, (u64, u64, u64))> = doc.tasks.iter().enumerate().filter_map(|(i, t)| Some((i, times(t)?))).collect();
    ran.sort_by_key(|&(i, (_, start, _))| (start, i));
    let left_out = ran.len().saturating_sub(MAX_BARS);
    ran.truncate(MAX_BARS);
    let t0 = ran.iter().map(|(_, (q, _, _))| *q).min().unwrap_or(0);
    let t1 = ran.iter().map(|(_, (_, _, e))| *e).max().unwrap_or(t0);
    let span = (t1 - t0).max(1);
    let plot = (width - LABEL - 10.0).max(100.0);
    let px = |ms: u64| LABEL + (ms - t0) as f64 / span as f64 * plot;
    // Groups in order of their first start; within a group, each bar takes the first lane
    // free when it was queued (each lane holds when its last bar ends).
    let key = |t: &TaskReport| match group {
        Group::Worker => t.worker.clone().unwrap_or_else(|| "?".into()),
        Group::Instance => t.ccr_instance.clone(),
    };
    let mut groups: Vec<(String, Vec<u64>)> = Vec::new();
    let mut assigned: Vec<(usize, usize, usize)> = Vec::new();
    for &(i, (q, _, end)) in &ran {
        let k = key(&doc.tasks[i]);
        let g = match groups.iter().position(|(name, _)| *name == k) {
            Some(g) => g,
            None => {
                groups.push((k, Vec::new()));
                groups.len() - 1
            }
        };
        let lanes = &mut groups[g].1;
        // The queue wait is drawn too: a lane is free when its last bar (wait included) ended.
        let sub = match lanes.iter().position(|&busy_until| busy_until <= q) {
            Some(s) => s,
            None => {
                lanes.push(0);
                lanes.len() - 1
            }
        };
        lanes[sub] = end;
        assigned.push((i, g, sub));
    }
    let mut first_lane = Vec::with_capacity(groups.len());
    let mut labels = Vec::new();
    for (name, lanes) in &groups {
        first_lane.push(labels.len());
        for s in 0..lanes.len() {
            labels.push(if s == 0 { name.clone() } else { String::new() });
        }
    }
    let bars = assigned
        .into_iter()
        .zip(&ran)
        .map(|((i, g, sub), &(_, (q, start, end)))| Bar {
            task: i,
            lane: first_lane[g] + sub,
            x: px(start),
            width: (px(end) - px(start)).max(1.0),
            wait_x: px(q),
            status: doc.tasks[i].status,
        })
        .collect();
    Gantt { lanes: labels, bars, t0_ms: t0, span_ms: span, width, plot, left_out }
}

fn color(s: TaskState) -> &'static str {
    match s {
        TaskState::Success => "#2e7d32",
        TaskState::Failed => "#c62828",
        TaskState::Timeout => "#ef6c00",
        TaskState::Cancelled => "#757575",
        _ => "#1565c0",
    }
}

/// `+0.5s`, `+12s`, `+4m30s` for axis ticks `step` ms apart.
fn offset(ms: u64, step: u64) -> String {
    let s = ms as f64 / 1000.0;
    if step < 1000 {
        format!("+{s:.1}s")
    } else if s < 60.0 {
        format!("+{s:.0}s")
    } else {
        format!("+{}m{:02}s", ms / 60_000, ms % 60_000 / 1000)
    }
}

/// A tick step (ms) giving about six ticks over `span`.
fn tick_step(span: u64) -> u64 {
    const STEPS: [u64; 14] = [100, 250, 500, 1_000, 2_000, 5_000, 10_000, 15_000, 30_000, 60_000, 120_000, 300_000, 600_000, 1_800_000];
    STEPS.iter().copied().find(|&s| span / s <= 8).unwrap_or(3_600_000)
}

/// The chart as inline SVG; `esc` escapes text for HTML (names are untrusted).
pub fn svg(doc: &ResultsDocument, g: &Gantt, esc: impl Fn(&str) -> String) -> String {
    let height = 24.0 + g.lanes.len() as f64 * (ROW + GAP);
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" class="gantt" width="{:.0}" height="{height:.0}" viewBox="0 0 {:.0} {height:.0}" role="img">"#,
        g.width, g.width
    );
    let step = tick_step(g.span_ms);
    let mut t = 0;
    while t <= g.span_ms {
        let x = LABEL + t as f64 / g.span_ms as f64 * g.plot;
        // The last label ends at the tick, the others start there: none runs off the chart.
        let anchor = if t + step > g.span_ms && t > 0 { "end" } else { "start" };
        let _ = write!(
            s,
            r##"<line x1="{x:.1}" y1="16" x2="{x:.1}" y2="{height:.0}" stroke="#ddd"/><text x="{x:.1}" y="12" class="tick" text-anchor="{anchor}">{}</text>"##,
            offset(t, step)
        );
        t += step;
    }
    for (k, label) in g.lanes.iter().enumerate() {
        let y = 20.0 + k as f64 * (ROW + GAP);
        if !label.is_empty() {
            let _ = write!(s, r#"<text x="4" y="{:.1}" class="lane">{}</text>"#, y + ROW - 5.0, esc(&shorten(label, 28)));
        }
    }
    for b in &g.bars {
        let t = &doc.tasks[b.task];
        let y = 20.0 + b.lane as f64 * (ROW + GAP);
        let tip = format!(
            "{} [{}] {} — {:.1}s, queued {:.1}s, attempt {}, {}",
            t.task_name,
            t.ccr_instance,
            t.status.as_str(),
            t.duration,
            t.queue_wait,
            t.attempts,
            t.worker.as_deref().unwrap_or("?")
        );
        if b.x - b.wait_x >= 0.5 {
            let _ = write!(
                s,
                r##"<rect x="{:.1}" y="{:.1}" width="{:.1}" height="{ROW}" fill="#b0bec5" class="wait"/>"##,
                b.wait_x,
                y,
                b.x - b.wait_x
            );
        }
        let _ = write!(
            s,
            r#"<rect x="{:.1}" y="{y:.1}" width="{:.1}" height="{ROW}" fill="{}" class="bar" data-task="{}"><title>{}</title></rect>"#,
            b.x,
            b.width,
            color(b.status),
            b.task,
            esc(&tip)
        );
    }
    s.push_str("</svg>");
    s
}

fn shorten(s: &str, max: usize) -> String {
    if s.chars().count() > max {
        format!("{}…", s.chars().take(max - 1).collect::<String>())
    } else {
        s.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_read_as_offsets() {
        assert_eq!(offset(500, 250), "+0.5s");
        assert_eq!(offset(12_000, 2_000), "+12s");
        assert_eq!(offset(270_000, 60_000), "+4m30s");
        assert_eq!(tick_step(3_000), 500);
        assert_eq!(tick_step(600_000), 120_000);
    }
}
