//! The dependency graph over task indices: cycle detection, layers ("batches"), topological
//! order and children. Each function takes, per task, the indices of its dependencies — any
//! list of `u32` slices — and knows nothing about what a task is.

use std::collections::VecDeque;

/// Finds one dependency cycle, as task indices in dependency order, starting at the lowest
/// index in the cycle and ending where it started. `None` when the graph is acyclic.
pub fn find_cycle<D: AsRef<[u32]>>(deps: &[D]) -> Option<Vec<usize>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Active,
        Done,
    }
    let mut mark = vec![Mark::New; deps.len()];
    for root in 0..deps.len() {
        if mark[root] != Mark::New {
            continue;
        }
        // Iterative DFS: (node, next dependency position).
        let mut stack: Vec<(usize, usize)> = vec![(root, 0)];
        mark[root] = Mark::Active;
        while let Some(&mut (node, ref mut pos)) = stack.last_mut() {
            if let Some(&dep) = deps[node].as_ref().get(*pos) {
                let dep = dep as usize;
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

/// Layers tasks so that every task sits one layer after its latest dependency. The graph must
/// be acyclic (validation guarantees it).
pub fn layers<D: AsRef<[u32]>>(deps: &[D]) -> Vec<Vec<usize>> {
    let order = topo_order(deps);
    let mut level = vec![0usize; deps.len()];
    for &i in &order {
        level[i] = deps[i].as_ref().iter().map(|&d| level[d as usize] + 1).max().unwrap_or(0);
    }
    let depth = level.iter().copied().max().map_or(0, |m| m + 1);
    let mut out = vec![Vec::new(); depth];
    for (i, &l) in level.iter().enumerate() {
        out[l].push(i);
    }
    out
}

/// Kahn's algorithm; dependencies come before dependents, index order among equals.
pub fn topo_order<D: AsRef<[u32]>>(deps: &[D]) -> Vec<usize> {
    let mut indeg: Vec<usize> = deps.iter().map(|d| d.as_ref().len()).collect();
    let children = children(deps);
    let mut ready: VecDeque<usize> = (0..deps.len()).filter(|&i| indeg[i] == 0).collect();
    let mut order = Vec::with_capacity(deps.len());
    while let Some(i) = ready.pop_front() {
        order.push(i);
        for &c in &children[i] {
            indeg[c as usize] -= 1;
            if indeg[c as usize] == 0 {
                ready.push_back(c as usize);
            }
        }
    }
    order
}

/// For every task, the tasks that depend on it (in index order).
pub fn children<D: AsRef<[u32]>>(deps: &[D]) -> Vec<Vec<u32>> {
    let mut out = vec![Vec::new(); deps.len()];
    for (i, d) in deps.iter().enumerate() {
        for &p in d.as_ref() {
            out[p as usize].push(i as u32);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layers_follow_dependencies() {
        let deps: Vec<Vec<u32>> = vec![vec![], vec![0], vec![0], vec![1, 2], vec![]];
        assert_eq!(layers(&deps), vec![vec![0, 4], vec![1, 2], vec![3]]);
        assert_eq!(topo_order(&deps), vec![0, 4, 1, 2, 3]);
        assert_eq!(children(&deps)[0], vec![1, 2]);
        assert_eq!(find_cycle(&deps), None);
    }

    #[test]
    fn cycle_starts_at_its_lowest_index() {
        let deps: Vec<Vec<u32>> = vec![vec![], vec![3], vec![1], vec![2]];
        assert_eq!(find_cycle(&deps), Some(vec![1, 3, 2, 1]));
    }
}
