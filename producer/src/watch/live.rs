//! How a followed run is shown on stderr. On a terminal: a bar with counts, rate and ETA, the
//! done/total of each instance, and the running tasks (worker, attempt, for how long; the
//! longest first, as many as the terminal's height allows), every line cut to its width; the
//! lines of finished tasks, retries and waits scroll above it. Without a terminal: the same
//! lines plain, and a progress line every 10 s so a long CI log is never silent. Colour only
//! when asked or on a terminal without `NO_COLOR`.

use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use zo_common::model::{now_ms, RunMeta, TaskState};

use zo_common::text::age;

/// How often a log without a terminal gets a progress line.
const PLAIN_EVERY: Duration = Duration::from_secs(10);
/// Lines the bar itself takes (the bar, the counts), besides running tasks.
const BAR_LINES: usize = 2;
/// Columns of the bar proper.
const BAR_WIDTH: usize = 24;

/// ANSI colour, or none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Paint(pub bool);

impl Paint {
    fn wrap(self, code: &str, s: &str) -> String {
        if self.0 {
            format!("\u{1b}[{code}m{s}\u{1b}[0m")
        } else {
            s.to_string()
        }
    }
    pub fn green(self, s: &str) -> String {
        self.wrap("32", s)
    }
    pub fn red(self, s: &str) -> String {
        self.wrap("31", s)
    }
    pub fn yellow(self, s: &str) -> String {
        self.wrap("33", s)
    }
    pub fn dim(self, s: &str) -> String {
        self.wrap("2", s)
    }

    /// The mark of a final state, coloured by how it ended.
    pub fn mark(self, st: TaskState) -> String {
        let m = zo_common::report::status_mark(st);
        match st {
            TaskState::Success => self.green(m),
            TaskState::Failed | TaskState::Timeout => self.red(m),
            _ => self.yellow(m),
        }
    }
}

/// A task running now, for the live view.
#[derive(Debug, Clone, PartialEq)]
pub struct Running {
    /// The task's index in the run.
    pub idx: u32,
    pub name: String,
    pub instance: String,
    pub worker: String,
    pub attempt: u32,
    /// Ms it has been running (none from a worker that did not say when it started).
    pub for_ms: Option<u64>,
}

/// Tasks per second since the run's first start, and the time left at that rate.
pub fn rate_and_eta(m: &RunMeta, now: u64) -> (Option<f64>, Option<u64>) {
    let Some(start) = m.started_ms.filter(|&s| s < now && m.done > 0) else { return (None, None) };
    let rate = m.done as f64 / ((now - start) as f64 / 1000.0);
    let left = m.total.saturating_sub(m.done);
    (Some(rate), (rate > 0.0).then(|| (left as f64 / rate * 1000.0) as u64))
}

fn rate_text(rate: f64) -> String {
    if rate >= 1.0 {
        format!("{rate:.1}/s")
    } else {
        format!("{:.1}/min", rate * 60.0)
    }
}

/// `ok 3 · failed 1 · running 2`.
pub fn counts_line(m: &RunMeta, paint: Paint) -> String {
    let mut s = format!("ok {}", m.success);
    let bad = m.failed + m.timeout;
    if bad > 0 {
        s.push_str(&paint.red(&format!(" · failed {bad}")));
    } else {
        s.push_str(" · failed 0");
    }
    if m.skipped + m.cancelled > 0 {
        s.push_str(&format!(" · skipped {} · cancelled {}", m.skipped, m.cancelled));
    }
    s.push_str(&format!(" · running {}", m.running));
    s
}

/// `1.5/s · ETA 12.0s` (empty before the first task ends).
pub fn pace_line(m: &RunMeta, now: u64) -> String {
    let (rate, eta) = rate_and_eta(m, now);
    let mut parts = Vec::new();
    if let Some(r) = rate {
        parts.push(rate_text(r));
    }
    if let Some(e) = eta.filter(|_| !m.finished) {
        parts.push(format!("ETA {}", age(e)));
    }
    parts.join(" · ")
}

/// The running tasks, the longest first, at most `rows` lines (the last one says how many
/// more there are).
pub fn running_lines(running: &[Running], rows: usize, paint: Paint) -> Vec<String> {
    if rows == 0 || running.is_empty() {
        return Vec::new();
    }
    let mut sorted: Vec<&Running> = running.iter().collect();
    sorted.sort_by_key(|r| std::cmp::Reverse(r.for_ms.unwrap_or(0)));
    let shown = if sorted.len() > rows { rows - 1 } else { sorted.len() };
    let mut out: Vec<String> = sorted[..shown]
        .iter()
        .map(|r| {
            let retry = if r.attempt > 1 { paint.yellow(&format!(" attempt {}", r.attempt)) } else { String::new() };
            let time = r.for_ms.map_or_else(|| "?".into(), age);
            format!("  ▸ {} [{}] on {}{retry} · {time}", r.name, r.instance, r.worker)
        })
        .collect();
    if shown < sorted.len() {
        out.push(paint.dim(&format!("  … and {} more running", sorted.len() - shown)));
    }
    out
}

/// Where the view goes.
enum Mode {
    Bar(ProgressBar),
    Plain { next: Instant },
    Quiet,
}

pub struct Live {
    mode: Mode,
    pub paint: Paint,
    created_ms: u64,
    total: u64,
}

fn terminal_size() -> (usize, usize) {
    let (rows, cols) = console::Term::stderr().size();
    (rows.max(5) as usize, cols.max(20) as usize)
}

fn new_bar(created_ms: u64, total: u64, paint: Paint) -> ProgressBar {
    let since = Duration::from_millis(now_ms().saturating_sub(created_ms));
    let b = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr()).with_elapsed(since);
    let bar = if paint.0 { format!("{{bar:{BAR_WIDTH}.green/white}}") } else { format!("{{bar:{BAR_WIDTH}}}") };
    b.set_style(
        ProgressStyle::with_template(&format!("{{spinner}} [{{elapsed_precise}}] {bar} {{pos}}/{{len}} {{msg}}"))
            .expect("valid template")
            .progress_chars("█▉▊▋▌▍▎▏ "),
    );
    b.enable_steady_tick(Duration::from_millis(200));
    b
}

impl Live {
    /// `show`: not `--quiet`. Elapsed time counts from the run's creation, also on re-attach.
    pub fn new(show: bool, meta: &RunMeta, paint: Paint) -> Live {
        use std::io::IsTerminal;
        let mode = if !show || meta.finished {
            Mode::Quiet
        } else if std::io::stderr().is_terminal() {
            Mode::Bar(new_bar(meta.created_ms, meta.total, paint))
        } else {
            Mode::Plain { next: Instant::now() }
        };
        Live { mode, paint, created_ms: meta.created_ms, total: meta.total }
    }

    /// Whether the running tasks are drawn (only on a terminal).
    pub fn wants_running(&self) -> bool {
        matches!(self.mode, Mode::Bar(_))
    }

    /// A line above the bar (or a plain line). Untrusted text in it must be escaped already.
    pub fn say(&self, line: &str) {
        match &self.mode {
            Mode::Bar(b) => {
                let (_, cols) = terminal_size();
                b.println(console::truncate_str(line, cols.saturating_sub(1), "…"))
            }
            Mode::Plain { .. } => eprintln!("{line}"),
            Mode::Quiet => {}
        }
    }

    /// Replaces the bar's message (a Redis outage while it retries).
    pub fn status(&self, text: &str) {
        if let Mode::Bar(b) = &self.mode {
            b.set_message(text.to_string());
        }
    }

    /// Redraws the bar: counts, instances and the running tasks, each line cut to the width.
    pub fn update(&mut self, m: &RunMeta, instances: &str, running: &[Running]) {
        let now = now_ms();
        let paint = self.paint;
        match &mut self.mode {
            Mode::Bar(b) => {
                let (rows, cols) = terminal_size();
                let cut = |s: &str| console::truncate_str(s, cols.saturating_sub(1), "…").into_owned();
                // The bar's own line: spinner, elapsed, bar and `pos/len` before the pace.
                let digits = m.total.max(1).ilog10() as usize + 1;
                let room = cols.saturating_sub(BAR_WIDTH + 17 + 2 * digits);
                let mut lines = vec![console::truncate_str(&pace_line(m, now), room, "…").into_owned()];
                lines.push(cut(&format!("  {} | {instances}", counts_line(m, paint))));
                let room = rows.saturating_sub(BAR_LINES + 2);
                lines.extend(running_lines(running, room, paint).iter().map(|l| cut(l)));
                b.set_position(m.done);
                b.set_message(lines.join("\n"));
            }
            Mode::Plain { next } => {
                if Instant::now() >= *next {
                    *next = Instant::now() + PLAIN_EVERY;
                    let pct = (m.done * 100).checked_div(m.total).unwrap_or(100);
                    let pace = pace_line(m, now);
                    eprintln!(
                        "progress: {}/{} done ({pct}%) · {}{}{pace} · elapsed {} | {instances}",
                        m.done,
                        m.total,
                        counts_line(m, Paint(false)),
                        if pace.is_empty() { "" } else { " · " },
                        age(now.saturating_sub(m.created_ms))
                    );
                }
            }
            Mode::Quiet => {}
        }
    }

    /// Takes the bar off the screen (a question is asked); [`Live::resume`] brings it back.
    pub fn pause(&mut self) {
        if let Mode::Bar(b) = &self.mode {
            // Nothing draws any more; then the bar's lines (its own and its message's, each cut
            // to the width, so none wrapped) are cleared by hand.
            b.disable_steady_tick();
            let lines = 1 + b.message().matches('\n').count();
            b.set_draw_target(ProgressDrawTarget::hidden());
            let _ = console::Term::stderr().clear_last_lines(lines);
        }
    }

    pub fn resume(&mut self) {
        if let Mode::Bar(_) = &self.mode {
            self.mode = Mode::Bar(new_bar(self.created_ms, self.total, self.paint));
        }
    }

    /// The run ended (or the watcher leaves): the bar goes, what was said stays.
    pub fn finish(&self) {
        if let Mode::Bar(b) = &self.mode {
            b.finish_and_clear();
        }
    }

    /// The watcher gives up: the bar stays as it was, for the message under it.
    pub fn abandon(&self) {
        if let Mode::Bar(b) = &self.mode {
            b.abandon();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn running(name: &str, for_ms: u64, attempt: u32) -> Running {
        Running { idx: 0, name: name.into(), instance: "fast".into(), worker: "w1".into(), attempt, for_ms: Some(for_ms) }
    }

    #[test]
    fn the_longest_running_come_first_and_the_rest_are_counted() {
        let r = vec![running("short", 1_000, 1), running("long", 90_000, 2), running("mid", 5_000, 1)];
        let lines = running_lines(&r, 2, Paint(false));
        assert_eq!(lines, ["  ▸ long [fast] on w1 attempt 2 · 1m30s", "  … and 2 more running"]);
        assert_eq!(running_lines(&r, 3, Paint(false)).len(), 3);
        assert!(running_lines(&r, 0, Paint(false)).is_empty());
    }

    #[test]
    fn rate_and_eta_count_from_the_first_start() {
        let m = RunMeta { total: 100, done: 25, started_ms: Some(10_000), ..Default::default() };
        let (rate, eta) = rate_and_eta(&m, 20_000);
        assert_eq!(rate, Some(2.5));
        assert_eq!(eta, Some(30_000));
        assert_eq!(rate_and_eta(&RunMeta { total: 5, ..Default::default() }, 1), (None, None));
        assert_eq!(counts_line(&RunMeta { failed: 1, ..m.clone() }, Paint(false)), "ok 0 · failed 1 · running 0");
        assert_eq!(pace_line(&m, 20_000), "2.5/s · ETA 30.0s");
    }

    #[test]
    fn colour_is_only_there_when_asked() {
        assert_eq!(Paint(false).red("x"), "x");
        assert_eq!(Paint(true).red("x"), "\u{1b}[31mx\u{1b}[0m");
    }
}
