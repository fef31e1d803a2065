//! Questions over many stored runs (Redis and the archive): `search` finds text in tasks'
//! names, descriptions, outputs and errors; `stats` gives the seed's success metrics and a
//! comparison of the instances (completion and timeout rates, median and p95 durations and
//! queue waits, tokens, cost, retries by error class).

use std::collections::BTreeMap;

use serde::Serialize;

use super::{ResultsDocument, TaskReport};
use crate::model::{ErrorClass, Status, TaskState};

/// Characters of context on each side of a match.
const SNIPPET: usize = 60;

/// A task that matched a search.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Hit {
    pub run_id: String,
    pub task_name: String,
    pub ccr_instance: String,
    pub status: TaskState,
    /// Where the text was found: `task_name`, `description`, `output`, `error`,
    /// `command.stdout`, `command.stderr`.
    pub field: &'static str,
    /// The match with some context, on one line.
    pub snippet: String,
}

/// What a search looks for.
#[derive(Debug, Clone, Default)]
pub struct Query<'a> {
    /// Case-insensitive text.
    pub text: &'a str,
    pub tag: Option<&'a str>,
    pub instance: Option<&'a str>,
}

fn snippet(hay: &str, at: usize, len: usize) -> String {
    let start = hay[..at].char_indices().rev().nth(SNIPPET).map_or(0, |(i, _)| i);
    let end = hay[at + len..].char_indices().nth(SNIPPET).map_or(hay.len(), |(i, _)| at + len + i);
    let body: String = hay[start..end].split_whitespace().collect::<Vec<_>>().join(" ");
    format!("{}{body}{}", if start > 0 { "…" } else { "" }, if end < hay.len() { "…" } else { "" })
}

/// The first place `needle` (lower case) occurs in `hay`, case-insensitively: byte offset and
/// length in `hay`.
fn find(hay: &str, needle: &str) -> Option<(usize, usize)> {
    if needle.is_empty() {
        return None;
    }
    let lower = hay.to_lowercase();
    // Lower-casing keeps offsets only for text whose case mapping keeps byte lengths.
    if lower.len() == hay.len() {
        return lower.find(needle).map(|i| (i, needle.len()));
    }
    hay.char_indices().find(|(i, _)| hay[*i..].to_lowercase().starts_with(needle)).map(|(i, c)| (i, c.len_utf8()))
}

/// Tasks of `doc` that match `q`, at most one hit per task (the first field that matches).
pub fn search(doc: &ResultsDocument, q: &Query<'_>) -> Vec<Hit> {
    let needle = q.text.to_lowercase();
    doc.tasks
        .iter()
        .filter(|t| q.tag.is_none_or(|tag| t.tags.iter().any(|x| x == tag)))
        .filter(|t| q.instance.is_none_or(|i| t.ccr_instance == i))
        .filter_map(|t| {
            let fields: [(&'static str, Option<&str>); 6] = [
                ("task_name", Some(&t.task_name)),
                ("description", t.description.as_deref()),
                ("output", Some(&t.output)),
                ("error", t.error.as_deref()),
                ("command.stdout", t.command.as_ref().map(|c| c.stdout.as_str())),
                ("command.stderr", t.command.as_ref().map(|c| c.stderr.as_str())),
            ];
            fields.into_iter().find_map(|(field, hay)| {
                let hay = hay?;
                let (at, len) = find(hay, &needle)?;
                Some(Hit {
                    run_id: doc.run_id.clone(),
                    task_name: t.task_name.clone(),
                    ccr_instance: t.ccr_instance.clone(),
                    status: t.status,
                    field,
                    snippet: crate::text::escape_line(&snippet(hay, at, len)).into_owned(),
                })
            })
        })
        .collect()
}

/// One instance across the runs.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct InstanceStats {
    pub tasks: u64,
    pub successful: u64,
    pub failed: u64,
    pub timeout: u64,
    /// Cancelled (from the command line, or by a budget reached), and skipped because of a
    /// failure: not run to the end, though nothing of theirs failed.
    pub cancelled: u64,
    pub skipped: u64,
    /// Successful ÷ tasks that were to run (a skip because a condition did not hold is left out).
    pub completion_rate: f64,
    pub timeout_rate: f64,
    /// Seconds, over the tasks that ran.
    pub duration_median: f64,
    pub duration_p95: f64,
    pub queue_wait_median: f64,
    pub queue_wait_p95: f64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// Dollars (absent when nothing was priced).
    pub cost: Option<f64>,
    /// Attempts that failed and were retried, by error class.
    pub retries: BTreeMap<String, u64>,
}

/// The success metrics over many runs.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Stats {
    pub runs: u64,
    /// Runs that ended with exit code 0, and their share (the seed's pipeline success rate).
    pub runs_succeeded: u64,
    pub run_success_rate: f64,
    pub tasks: u64,
    /// Tasks cancelled, and skipped because of a failure.
    pub cancelled: u64,
    pub skipped: u64,
    /// The seed's targets: completion ≥ 99%, timeouts < 5%.
    pub completion_rate: f64,
    pub timeout_rate: f64,
    /// Runs with a budget, and those that spent more than it (the seed's budget overruns).
    pub runs_with_budget: u64,
    pub budget_overruns: u64,
    pub by_instance: BTreeMap<String, InstanceStats>,
}

/// The value at quantile `q` (0–1) of sorted `v`, nearest rank; 0 when empty.
pub fn quantile(v: &[f64], q: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    let rank = (q * v.len() as f64).ceil() as usize;
    v[rank.clamp(1, v.len()) - 1]
}

fn rate(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        (part as f64 * 10_000.0 / whole as f64).round() / 10_000.0
    }
}

/// Whether a task was to run at all (a branch not taken or a rejected stage was not).
fn counted(t: &TaskReport) -> bool {
    !(t.status == TaskState::Skipped && matches!(t.error_class, Some(ErrorClass::Condition | ErrorClass::Rejected)))
}

/// Stats over `docs`.
pub fn stats(docs: &[ResultsDocument]) -> Stats {
    let mut s = Stats { runs: docs.len() as u64, ..Default::default() };
    let mut samples: BTreeMap<String, (Vec<f64>, Vec<f64>)> = BTreeMap::new();
    let (mut ok, mut timeouts) = (0u64, 0u64);
    for d in docs {
        s.runs_succeeded += u64::from(d.succeeded());
        if let Some(b) = &d.summary.budget {
            s.runs_with_budget += 1;
            s.budget_overruns += u64::from(b.spent > b.max_cost);
        }
        for t in d.tasks.iter().filter(|t| counted(t)) {
            let e = s.by_instance.entry(t.ccr_instance.clone()).or_default();
            e.tasks += 1;
            s.tasks += 1;
            match t.status {
                TaskState::Success => {
                    e.successful += 1;
                    ok += 1;
                }
                TaskState::Timeout => {
                    e.timeout += 1;
                    timeouts += 1;
                }
                TaskState::Failed => e.failed += 1,
                TaskState::Cancelled => {
                    e.cancelled += 1;
                    s.cancelled += 1;
                }
                TaskState::Skipped => {
                    e.skipped += 1;
                    s.skipped += 1;
                }
                _ => {}
            }
            e.input_tokens += t.input_tokens;
            e.output_tokens += t.output_tokens;
            if let Some(c) = t.cost {
                e.cost = Some(e.cost.unwrap_or(0.0) + c);
            }
            // Every attempt but the one that ended the task, when it failed, was retried.
            for a in t.attempt_history.iter().rev().skip(1).filter(|a| a.status != Status::Success) {
                *e.retries.entry(a.error_class.map_or("none", |c| c.as_str()).to_string()).or_default() += 1;
            }
            if t.attempts > 0 {
                let (durations, waits) = samples.entry(t.ccr_instance.clone()).or_default();
                durations.push(t.duration);
                waits.push(t.queue_wait);
            }
        }
    }
    for (name, e) in s.by_instance.iter_mut() {
        e.completion_rate = rate(e.successful, e.tasks);
        e.timeout_rate = rate(e.timeout, e.tasks);
        e.cost = e.cost.map(|c| (c * 1e6).round() / 1e6);
        if let Some((d, w)) = samples.get_mut(name) {
            d.sort_by(f64::total_cmp);
            w.sort_by(f64::total_cmp);
            (e.duration_median, e.duration_p95) = (quantile(d, 0.5), quantile(d, 0.95));
            (e.queue_wait_median, e.queue_wait_p95) = (quantile(w, 0.5), quantile(w, 0.95));
        }
    }
    s.completion_rate = rate(ok, s.tasks);
    s.timeout_rate = rate(timeouts, s.tasks);
    s.run_success_rate = rate(s.runs_succeeded, s.runs);
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_take_the_nearest_rank() {
        let v: Vec<f64> = (1..=20).map(f64::from).collect();
        assert_eq!((quantile(&v, 0.5), quantile(&v, 0.95), quantile(&v, 1.0)), (10.0, 19.0, 20.0));
        assert_eq!(quantile(&[], 0.5), 0.0);
        assert_eq!(quantile(&[3.0], 0.95), 3.0);
    }

    #[test]
    fn searches_ignore_case_and_give_context() {
        assert_eq!(find("Hello World", "world"), Some((6, 5)));
        assert_eq!(find("ÄÖÜ straße", "straße"), Some((7, 7)));
        assert_eq!(find("abc", ""), None);
        let long = format!("{}needle{}", "a ".repeat(100), " b".repeat(100));
        let s = snippet(&long, 200, 6);
        assert!(s.starts_with('…') && s.ends_with('…') && s.contains("needle") && s.chars().count() < 140, "{s}");
    }
}
