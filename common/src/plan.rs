//! The execution plan: dependency layers ("batches") of a validated task file.
//!
//! Batches are what the seed executed one after another. We print them as the plan, but
//! the queue does not wait for a batch to end: a task is released the moment its last
//! dependency succeeds.

use std::fmt::Write as _;

use crate::catalog::Catalog;
use crate::taskfile::{TaskFile, TaskSpec};

/// Finds one dependency cycle, as task indices in dependency order, starting at the
/// lowest index in the cycle. `None` when the graph is acyclic.
pub fn find_cycle(tasks: &[TaskSpec]) -> Option<Vec<usize>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Active,
        Done,
    }
    let mut mark = vec![Mark::New; tasks.len()];
    for root in 0..tasks.len() {
        if mark[root] != Mark::New {
            continue;
        }
        // Iterative DFS: (node, next dependency position).
        let mut stack: Vec<(usize, usize)> = vec![(root, 0)];
        mark[root] = Mark::Active;
        while let Some(&mut (node, ref mut pos)) = stack.last_mut() {
            if let Some(&dep) = tasks[node].deps.get(*pos) {
                *pos += 1;
                match mark[dep] {
                    Mark::New => {
                        mark[dep] = Mark::Active;
                        stack.push((dep, 0));
                    }
                    Mark::Active => {
                        let start = stack.iter().position(|&(n, _)| n == dep).expect("active node is on the stack");
                        let mut cycle: Vec<usize> = stack[start..].iter().map(|&(n, _)| n).collect();
                        let min = cycle.iter().enumerate().min_by_key(|(_, &n)| n).map(|(i, _)| i).unwrap_or(0);
                        cycle.rotate_left(min);
                        cycle.push(cycle[0]);
                        return Some(cycle);
                    }
                    Mark::Done => {}
                }
            } else {
                mark[node] = Mark::Done;
                stack.pop();
            }
        }
    }
    None
}

/// Layers tasks so that every task sits one batch after its latest dependency.
/// The task file must be acyclic (validation guarantees it).
pub fn batches(tasks: &[TaskSpec]) -> Vec<Vec<usize>> {
    let order = topo_order(tasks);
    let mut level = vec![0usize; tasks.len()];
    for &i in &order {
        level[i] = tasks[i].deps.iter().map(|&d| level[d] + 1).max().unwrap_or(0);
    }
    let depth = level.iter().copied().max().map_or(0, |m| m + 1);
    let mut out = vec![Vec::new(); depth];
    for (i, &l) in level.iter().enumerate() {
        out[l].push(i);
    }
    out
}

/// Kahn's algorithm; dependencies come before dependents, file order among equals.
pub fn topo_order(tasks: &[TaskSpec]) -> Vec<usize> {
    let mut indeg: Vec<usize> = tasks.iter().map(|t| t.deps.len()).collect();
    let children = children(tasks);
    let mut ready: std::collections::VecDeque<usize> = (0..tasks.len()).filter(|&i| indeg[i] == 0).collect();
    let mut order = Vec::with_capacity(tasks.len());
    while let Some(i) = ready.pop_front() {
        order.push(i);
        for &c in &children[i] {
            indeg[c] -= 1;
            if indeg[c] == 0 {
                ready.push_back(c);
            }
        }
    }
    order
}

/// For every task, the tasks that depend on it.
pub fn children(tasks: &[TaskSpec]) -> Vec<Vec<usize>> {
    let mut out = vec![Vec::new(); tasks.len()];
    for (i, t) in tasks.iter().enumerate() {
        for &d in &t.deps {
            out[d].push(i);
        }
    }
    out
}

/// The seed's execution plan, as text.
pub fn render(file: &TaskFile, catalog: &Catalog) -> String {
    let b = batches(&file.tasks);
    let mut s = String::new();
    let title = file.name.as_deref().unwrap_or(&file.path);
    let _ = writeln!(s, "Execution plan: {title}");
    let _ = writeln!(s, "Total tasks: {}   Batches: {}", file.tasks.len(), b.len());
    for (n, batch) in b.iter().enumerate() {
        let _ = writeln!(
            s,
            "\nBatch {} ({} task{}{}):",
            n + 1,
            batch.len(),
            if batch.len() == 1 { "" } else { "s" },
            if batch.len() > 1 { " in parallel" } else { "" }
        );
        for &i in batch {
            let t = &file.tasks[i];
            let model = catalog.get(&t.instance).map(|c| c.model.as_str()).unwrap_or("?");
            let kind = match (&t.command, &t.prompt) {
                (Some(_), Some(_)) => "command | agent",
                (Some(_), None) => "command",
                _ => "agent",
            };
            let _ = write!(s, "  - {} [{} · {}] timeout {} · {}", t.name, t.instance, model, humantime::format_duration(t.timeout), kind);
            if !t.deps.is_empty() {
                let deps: Vec<&str> = t.deps.iter().map(|&d| file.tasks[d].name.as_str()).collect();
                let _ = write!(s, " · after {}", deps.join(", "));
            }
            s.push('\n');
        }
    }
    let _ = writeln!(s, "\nValidation: PASSED");
    s
}
