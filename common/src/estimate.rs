//! Dry-run estimates, pure: each task's duration and cost from the history of earlier runs
//! (the same task name on the same instance first, then the instance's typical task, then
//! the timeout as the upper bound), and the run's duration range as the makespan of its graph
//! over the low and the high durations, with the run's concurrency caps and rate limits taken
//! into account.

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
    let tasks: Vec<TaskEstimate> = file
        .tasks
        .iter()
        .map(|t| match by_task.get(&(t.name.as_str(), t.instance.as_str())) {
            Some(v) => from_samples(v, Source::History, |d| (*d.iter().min().unwrap_or(&0), *d.iter().max().unwrap_or(&0))),
            None => match by_instance.get(t.instance.as_str()) {
                Some(v) => from_samples(v, Source::Instance, |d| (quantile(d, 0.25), quantile(d, 0.75))),
                None => TaskEstimate { low_ms: 0, high_ms: t.timeout_ms, cost: None, source: Source::Timeout },
            },
        })
        .collect();
    let low = makespan(file, &tasks.iter().map(|e| e.low_ms).collect::<Vec<_>>());
    let high = makespan(file, &tasks.iter().map(|e| e.high_ms).collect::<Vec<_>>());
    let cost = tasks.iter().filter_map(|e| e.cost).reduce(|a, b| (a.0 + b.0, a.1 + b.1));
    Estimate { tasks, low_ms: low, high_ms: high.max(low), cost }
}

fn from_samples(v: &[&Sample], source: Source, range: impl Fn(&mut [u64]) -> (u64, u64)) -> TaskEstimate {
    let mut d: Vec<u64> = v.iter().map(|s| s.duration_ms).collect();
    d.sort_unstable();
    let (low_ms, high_ms) = range(&mut d);
    let mut c: Vec<u64> = v.iter().filter_map(|s| s.cost).collect();
    c.sort_unstable();
    let cost = (!c.is_empty()).then(|| range(&mut c));
    TaskEstimate { low_ms, high_ms, cost, source }
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

    fn sample(task: &str, instance: &str, secs: u64, cost: Option<Nanos>) -> Sample {
        Sample { task: task.into(), instance: instance.into(), duration_ms: secs * 1000, cost }
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
        let f = file("tasks:\n  - {name: A, ccr_instance: fast, command: x}\n  - {name: B, ccr_instance: fast, command: x}\n  - {name: C, ccr_instance: smart, command: x, timeout: 90}\n");
        let samples = vec![
            sample("A", "fast", 20, Some(20_000_000)),
            sample("A", "fast", 24, Some(30_000_000)),
            sample("Z", "fast", 10, None),
            sample("Y", "fast", 30, None),
            sample("A", "general", 99, None),
        ];
        let e = estimate(&f, &samples);
        assert_eq!(
            e.tasks[0],
            TaskEstimate { low_ms: 20_000, high_ms: 24_000, cost: Some((20_000_000, 30_000_000)), source: Source::History }
        );
        // The instance's middle half: its samples are 10, 20, 24, 30 s.
        assert_eq!((e.tasks[1].low_ms, e.tasks[1].high_ms, e.tasks[1].source), (20_000, 24_000, Source::Instance));
        assert_eq!(e.tasks[2], TaskEstimate { low_ms: 0, high_ms: 90_000, cost: None, source: Source::Timeout });
        // Three independent tasks: the longest of each bound.
        assert_eq!((e.low_ms, e.high_ms), (20_000, 90_000));
        assert_eq!(e.cost, Some((40_000_000, 60_000_000)));
    }
}
