//! Dry-run estimates, pure: each task's duration and cost from the history of earlier runs
//! (the same task name on the same instance first, then the instance's typical task, then
//! the timeout as the upper bound), and the run's duration range as the makespan of its graph
//! over the low and the high durations, with the run's concurrency caps and rate limits taken
//! into account. Costs are the file's own prices (the task's `price`, from its
//! `resource_limits.models` or the catalog) applied to token counts: those of earlier runs of
//! the same task, else a first-run estimate from the length of its prompt; a task without a
//! price has no cost estimate, whatever earlier runs were charged.

use std::collections::HashMap;

use crate::graph;
use crate::model::{Nanos, TaskSpec};
use crate::taskfile::TaskFile;

pub use crate::model::TaskSample as Sample;

/// Where an estimate comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Earlier runs of the same task name on the same instance.
    History,
    /// The instance's typical task in earlier runs (middle half of its durations).
    Instance,
    /// Nothing known: between nothing and the task's timeout.
    Timeout,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::History => "history",
            Source::Instance => "instance median",
            Source::Timeout => "timeout",
        }
    }
}

/// One task's estimate: a duration range, a cost range when anything is known of its cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaskEstimate {
    pub low_ms: u64,
    pub high_ms: u64,
    pub cost: Option<(Nanos, Nanos)>,
    pub source: Source,
    /// The cost is a first-run estimate (tokens from the prompt's length), not history.
    pub first_run_cost: bool,
}

/// The whole run's estimate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Estimate {
    pub tasks: Vec<TaskEstimate>,
    /// Makespan over the low and the high durations.
    pub low_ms: u64,
    pub high_ms: u64,
    /// Sum over tasks, when any task's cost is known.
    pub cost: Option<(Nanos, Nanos)>,
    /// Tasks whose cost is a first-run estimate.
    pub first_run_costs: usize,
}

/// A first run's tokens besides its prompt's: what a command's output may add to what the
/// agent reads, and what the agent writes (low, high).
const FIRST_RUN_COMMAND_INPUT: (u64, u64) = (0, 2_000);
const FIRST_RUN_OUTPUT: (u64, u64) = (100, 1_000);

/// Tokens of a text, as models count them roughly: one per four bytes.
fn tokens_in(text: &str) -> u64 {
    (text.len() as u64).div_ceil(4)
}

/// A task's cost on its first run, at `price`: its prompt read (and its command's output,
/// up to [`FIRST_RUN_COMMAND_INPUT`]), [`FIRST_RUN_OUTPUT`] written; nothing without a prompt.
fn first_run_cost(t: &TaskSpec, price: crate::model::Price) -> (Nanos, Nanos) {
    let Some(prompt) = &t.prompt else { return (0, 0) };
    let read = tokens_in(prompt);
    let extra = if t.command.is_some() { FIRST_RUN_COMMAND_INPUT } else { (0, 0) };
    (price.cost(read + extra.0, FIRST_RUN_OUTPUT.0), price.cost(read + extra.1, FIRST_RUN_OUTPUT.1))
}

/// Most samples of one task name used (the most recent ones).
const PER_TASK: usize = 5;

/// Estimates a file's run from `samples` (most recent first).
pub fn estimate(file: &TaskFile, samples: &[Sample]) -> Estimate {
    let mut by_task: HashMap<(&str, &str), Vec<&Sample>> = HashMap::new();
    let mut by_instance: HashMap<&str, Vec<&Sample>> = HashMap::new();
    for s in samples {
        let v = by_task.entry((s.task.as_str(), s.instance.as_str())).or_default();
        if v.len() < PER_TASK {
            v.push(s);
        }
        by_instance.entry(s.instance.as_str()).or_default().push(s);
    }
    let min_max = |d: &mut [u64]| (*d.iter().min().unwrap_or(&0), *d.iter().max().unwrap_or(&0));
    let tasks: Vec<TaskEstimate> = file
        .tasks
        .iter()
        .map(|t| {
            let own = by_task.get(&(t.name.as_str(), t.instance.as_str()));
            let (low_ms, high_ms, source) = match own {
                Some(v) => durations(v, Source::History, min_max),
                None => match by_instance.get(t.instance.as_str()) {
                    Some(v) => durations(v, Source::Instance, |d| (quantile(d, 0.25), quantile(d, 0.75))),
                    None => (0, t.timeout_ms, Source::Timeout),
                },
            };
            // The file's prices on the task's own tokens; a first run's from its prompt.
            let (cost, first_run_cost) = match (t.price, own) {
                (None, _) => (None, false),
                (Some(p), Some(v)) => {
                    let mut c: Vec<Nanos> = v.iter().map(|s| p.cost(s.tokens.0, s.tokens.1)).collect();
                    (Some(min_max(&mut c)), false)
                }
                (Some(p), None) => (Some(first_run_cost(t, p)), t.prompt.is_some()),
            };
            TaskEstimate { low_ms, high_ms, cost, source, first_run_cost }
        })
        .collect();
    let low = makespan(file, &tasks.iter().map(|e| e.low_ms).collect::<Vec<_>>());
    let high = makespan(file, &tasks.iter().map(|e| e.high_ms).collect::<Vec<_>>());
    let cost = tasks.iter().filter_map(|e| e.cost).reduce(|a, b| (a.0 + b.0, a.1 + b.1));
    let first_run_costs = tasks.iter().filter(|e| e.first_run_cost).count();
    Estimate { tasks, low_ms: low, high_ms: high.max(low), cost, first_run_costs }
}

fn durations(v: &[&Sample], source: Source, range: impl Fn(&mut [u64]) -> (u64, u64)) -> (u64, u64, Source) {
    let mut d: Vec<u64> = v.iter().map(|s| s.duration_ms).collect();
    d.sort_unstable();
    let (low, high) = range(&mut d);
    (low, high, source)
}

/// The value at share `q` of sorted `v` (nearest rank).
fn quantile(v: &[u64], q: f64) -> u64 {
    if v.is_empty() {
        return 0;
    }
    let i = ((v.len() as f64 - 1.0) * q).round() as usize;
    v[i.min(v.len() - 1)]
}

/// How long the run takes if each task takes `dur[i]`: list scheduling over the graph (a task
/// starts when its parents ended and a slot is free; the longest remaining path goes first),
/// with the run's caps as slots (unlimited without one), and no sooner than its rate limits
/// allow (each instance's starts spaced 60/rpm s).
pub fn makespan(file: &TaskFile, dur: &[u64]) -> u64 {
    let n = file.tasks.len();
    let parents = file.parents();
    let children = graph::children(&parents);
    let order = graph::topo_order(&parents);
    // Longest path from each task to the end: the priority.
    let mut tail = vec![0u64; n];
    for &i in order.iter().rev() {
        tail[i] = dur[i] + children[i].iter().map(|&c| tail[c as usize]).max().unwrap_or(0);
    }
    let cap_all = file.limits.max_concurrent_tasks.map_or(usize::MAX, |c| c as usize);
    let cap_inst = file.limits.max_tasks_per_instance.map_or(usize::MAX, |c| c as usize);
    let mut waiting: Vec<usize> = parents.iter().map(|p| p.len()).collect();
    let mut ready_at = vec![0u64; n];
    let mut ready: Vec<usize> = (0..n).filter(|&i| waiting[i] == 0).collect();
    // (end time, task) of running tasks.
    let mut running: Vec<(u64, usize)> = Vec::new();
    let mut per_inst: HashMap<&str, usize> = HashMap::new();
    let mut next_start: HashMap<&str, u64> = HashMap::new();
    let (mut now, mut end, mut done) = (0u64, 0u64, 0usize);
    while done < n {
        ready.sort_by_key(|&i| (std::cmp::Reverse(tail[i]), i));
        let mut k = 0;
        while k < ready.len() && running.len() < cap_all {
            let i = ready[k];
            let t: &TaskSpec = &file.tasks[i];
            if ready_at[i] > now || per_inst.get(t.instance.as_str()).copied().unwrap_or(0) >= cap_inst {
                k += 1;
                continue;
            }
            let mut start = now;
            if let Some(rpm) = file.limits.models.get(&t.instance).and_then(|m| m.max_rpm) {
                let at = next_start.entry(t.instance.as_str()).or_insert(0);
                start = start.max(*at);
                *at = start + 60_000 / rpm.max(1) as u64;
            }
            ready.swap_remove(k);
            *per_inst.entry(t.instance.as_str()).or_default() += 1;
            running.push((start + dur[i], i));
        }
        // Advance to the next end (or the next task that becomes ready later).
        let Some(pos) = (0..running.len()).min_by_key(|&r| running[r].0) else {
            // Nothing runs: only tasks ready later are left.
            now = ready.iter().map(|&i| ready_at[i]).min().unwrap_or(now).max(now + 1);
            continue;
        };
        let (t_end, i) = running.swap_remove(pos);
        now = now.max(t_end);
        end = end.max(t_end);
        done += 1;
        if let Some(c) = per_inst.get_mut(file.tasks[i].instance.as_str()) {
            *c -= 1;
        }
        for &c in &children[i] {
            let c = c as usize;
            waiting[c] -= 1;
            ready_at[c] = ready_at[c].max(t_end);
            if waiting[c] == 0 {
                ready.push(c);
            }
        }
    }
    end
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::Catalog;

    fn file(yaml: &str) -> TaskFile {
        crate::taskfile::parse(yaml, "t.yaml", &Catalog::builtin()).unwrap()
    }

    fn sample(task: &str, instance: &str, secs: u64, tokens: (u64, u64)) -> Sample {
        // What the earlier run was charged plays no part: the file's own prices do.
        Sample { task: task.into(), instance: instance.into(), duration_ms: secs * 1000, cost: Some(999_999_999), tokens }
    }

    #[test]
    fn the_makespan_is_the_critical_path_within_the_caps() {
        // A → (B, C) → D: 1 + max(2, 3) + 1 = 5 s; one slot: 1 + 2 + 3 + 1 = 7 s.
        let yaml = "tasks:\n  - {name: A, ccr_instance: fast, command: x}\n  - {name: B, ccr_instance: fast, command: x, dependencies: [A]}\n  - {name: C, ccr_instance: general, command: x, dependencies: [A]}\n  - {name: D, ccr_instance: fast, command: x, dependencies: [B, C]}\n";
        let d = [1000, 2000, 3000, 1000];
        assert_eq!(makespan(&file(yaml), &d), 5000);
        assert_eq!(makespan(&file(&format!("resource_limits: {{max_concurrent_tasks: 1}}\n{yaml}")), &d), 7000);
        // Four independent 1 s tasks, two per instance at most on one instance: 2 s.
        let four = "resource_limits: {max_tasks_per_instance: 2}\ntasks:\n  - {name: a, ccr_instance: fast, command: x}\n  - {name: b, ccr_instance: fast, command: x}\n  - {name: c, ccr_instance: fast, command: x}\n  - {name: d, ccr_instance: fast, command: x}\n";
        assert_eq!(makespan(&file(four), &[1000; 4]), 2000);
        // 6 rpm: starts 10 s apart.
        let rpm = four.replace("{max_tasks_per_instance: 2}", "{models: [{name: fast, max_rpm: 6}]}");
        assert_eq!(makespan(&file(&rpm), &[1000; 4]), 31_000);
    }

    #[test]
    fn history_first_then_the_instance_then_the_timeout() {
        // `fast` priced by the file ($1 / 1k tokens in, $2 out); `smart` and `general` not.
        let f = file("resource_limits: {models: [{name: fast, cost_per_1k_input: 1.0, cost_per_1k_output: 2.0}]}\ntasks:\n  - {name: A, ccr_instance: fast, prompt: p}\n  - {name: B, ccr_instance: fast, command: x}\n  - {name: C, ccr_instance: smart, command: x, timeout: 90}\n  - {name: D, ccr_instance: general, prompt: p}\n");
        let samples = vec![
            sample("A", "fast", 20, (1000, 500)),
            sample("A", "fast", 24, (2000, 500)),
            sample("Z", "fast", 10, (0, 0)),
            sample("Y", "fast", 30, (0, 0)),
            sample("A", "general", 99, (0, 0)),
            sample("D", "general", 5, (1000, 1000)),
        ];
        let e = estimate(&f, &samples);
        let dollar = 1_000_000_000;
        // A's own tokens at the file's prices: 1 + 1 and 2 + 1 dollars.
        assert_eq!(
            e.tasks[0],
            TaskEstimate {
                low_ms: 20_000,
                high_ms: 24_000,
                cost: Some((2 * dollar, 3 * dollar)),
                source: Source::History,
                first_run_cost: false
            }
        );
        // The instance's middle half: its samples are 10, 20, 24, 30 s. B runs no agent: free.
        assert_eq!((e.tasks[1].low_ms, e.tasks[1].high_ms, e.tasks[1].source), (20_000, 24_000, Source::Instance));
        assert_eq!(e.tasks[1].cost, Some((0, 0)));
        assert_eq!(e.tasks[2], TaskEstimate { low_ms: 0, high_ms: 90_000, cost: None, source: Source::Timeout, first_run_cost: false });
        // D has history, but no price in this file: no cost, never the earlier run's charge.
        assert_eq!((e.tasks[3].source, e.tasks[3].cost), (Source::History, None));
        assert_eq!((e.low_ms, e.high_ms), (20_000, 90_000));
        assert_eq!(e.cost, Some((2 * dollar, 3 * dollar)));
        assert_eq!(e.first_run_costs, 0);
    }

    #[test]
    fn a_first_run_is_priced_from_its_prompt() {
        let prompt = "x".repeat(4000);
        let f = file(&format!("resource_limits: {{models: [{{name: fast, cost_per_1k_tokens: 1.0}}]}}\ntasks:\n  - {{name: A, ccr_instance: fast, prompt: {prompt}}}\n  - {{name: B, ccr_instance: fast, command: ls, prompt: {prompt}}}\n  - {{name: C, ccr_instance: fast, command: ls}}\n"));
        let e = estimate(&f, &[]);
        let dollar = 1_000_000_000;
        // 1,000 tokens of prompt; 100 to 1,000 written; a command's output up to 2,000 more.
        assert_eq!(e.tasks[0].cost, Some((dollar + dollar / 10, 2 * dollar)));
        assert_eq!(e.tasks[1].cost, Some((dollar + dollar / 10, 4 * dollar)));
        assert_eq!(e.tasks[2].cost, Some((0, 0)), "no prompt, no model call");
        assert_eq!(e.first_run_costs, 2);
        assert!(e.tasks[0].first_run_cost && !e.tasks[2].first_run_cost);
    }
}
