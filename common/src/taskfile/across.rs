//! The tasks together: names unique, output files unique, dependencies resolved to indexes
//! (each known, none repeated, none on itself), and no cycle. Every problem is collected with
//! its position.

use std::collections::{HashMap, HashSet};

use super::raw::Sp;
use super::workflow;
use crate::graph;
use crate::model::TaskSpec;
use crate::yaml::{Pos, YamlError};

/// Each task's name → its index (the first task of a name); a repeated name is an error at
/// the repeat.
pub(super) fn unique_names<'a>(
    specs: &'a [TaskSpec],
    name_pos: &[Pos],
    lines: &[u64],
    file: &str,
    dup_errs: &mut Vec<YamlError>,
) -> HashMap<&'a str, usize> {
    let mut index: HashMap<&str, usize> = HashMap::with_capacity(specs.len());
    for (i, s) in specs.iter().enumerate() {
        if let Some(&first) = index.get(s.name.as_str()) {
            dup_errs.push(YamlError::at(
                file,
                name_pos[i],
                format!("duplicate task name `{}` (first used on line {}); rename one of them", s.name, lines[first]),
            ));
        } else {
            index.insert(&s.name, i);
        }
    }
    index
}

/// No two tasks write the same `output_file`.
pub(super) fn unique_outputs(specs: &[TaskSpec], name_pos: &[Pos], lines: &[u64], file: &str, dup_errs: &mut Vec<YamlError>) {
    let mut outputs: HashMap<&str, usize> = HashMap::new();
    for (i, s) in specs.iter().enumerate() {
        if let Some(o) = &s.output_file {
            if let Some(&first) = outputs.get(o.as_str()) {
                dup_errs.push(YamlError::at(
                    file,
                    Pos { line: lines[i], col: 1 }.max(name_pos[i]),
                    format!(
                        "task `{}` writes output_file `{o}` that task `{}` also writes; give each task its own file",
                        s.name, specs[first].name
                    ),
                ));
            } else {
                outputs.insert(o, i);
            }
        }
    }
}

/// Each task's dependency names as indexes. Unknown names get a "did you mean" while
/// `suggestions_left` lasts (a name is compared with every task's: only the first few, so a
/// file with thousands of unknown names is not quadratic).
pub(super) fn dependencies(
    dep_names: &[Vec<Sp<String>>],
    specs: &[TaskSpec],
    index: &HashMap<&str, usize>,
    file: &str,
    suggestions_left: &mut usize,
    dup_errs: &mut Vec<YamlError>,
) -> Vec<Vec<u32>> {
    let mut all_deps = Vec::with_capacity(specs.len());
    for (i, deps) in dep_names.iter().enumerate() {
        let mut resolved: Vec<u32> = Vec::with_capacity(deps.len());
        // Repeats are found by a set once the list is long (a task may have 100,000).
        let mut seen: HashSet<u32> = HashSet::new();
        let long = deps.len() > 32;
        for d in deps {
            let repeated = |j: usize, resolved: &[u32], seen: &HashSet<u32>| {
                if long {
                    seen.contains(&(j as u32))
                } else {
                    resolved.contains(&(j as u32))
                }
            };
            match index.get(d.value.as_str()) {
                Some(&j) if j == i => dup_errs.push(YamlError::at(
                    file,
                    d.referenced,
                    format!("task `{}` depends on itself; remove `{}` from its dependencies", specs[i].name, d.value),
                )),
                Some(&j) if repeated(j, &resolved, &seen) => dup_errs.push(YamlError::at(
                    file,
                    d.referenced,
                    format!("task `{}` lists dependency `{}` twice; remove one", specs[i].name, d.value),
                )),
                Some(&j) => {
                    resolved.push(j as u32);
                    if long {
                        seen.insert(j as u32);
                    }
                }
                None => {
                    let hint = workflow::unknown_task_hint(&d.value, index, suggestions_left);
                    dup_errs.push(YamlError::at(
                        file,
                        d.referenced,
                        format!("task `{}` depends on unknown task `{}`; {hint}", specs[i].name, d.value),
                    ));
                }
            }
        }
        all_deps.push(resolved);
    }
    all_deps
}

/// A dependency cycle, if any, as one error at its first task. Looked for whatever else is
/// wrong (unknown dependencies are left out of the graph), so one run shows every problem.
pub(super) fn cycle(specs: &[TaskSpec], name_pos: &[Pos], file: &str, errs: &mut Vec<YamlError>) {
    let parents: Vec<Vec<u32>> = specs.iter().map(|s| s.parents().collect()).collect();
    if let Some(cycle) = graph::find_cycle(&parents) {
        let names: Vec<&str> = cycle.iter().map(|&i| specs[i].name.as_str()).collect();
        // Each task in the cycle waits for the next: by a dependency, or an edge of the next
        // one's `on_success`/`on_failure`.
        let via_condition = cycle.windows(2).any(|w| !specs[w[0]].deps.contains(&(w[1] as u32)));
        errs.push(YamlError::at(
            file,
            name_pos[cycle[0]],
            format!(
                "dependency cycle: {}; remove one of these dependencies{}",
                names.join(" → "),
                if via_condition { " or `on_success`/`on_failure` entries" } else { "" }
            ),
        ));
    }
}
