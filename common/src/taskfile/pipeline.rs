//! The seed's `pipeline:` form: named stages, each with its tasks, `requires` (the stages it
//! comes after) and `approval_required`. It is flattened into the one task list the rest of
//! validation knows: every task of a stage depends on every task of the stages it requires,
//! and carries its stage's name (and whether that stage waits for an approval).

use std::collections::HashMap;

use super::raw::{RawPipeline, RawTask, Sp};
use super::workflow::unknown_name_hint;
use crate::graph;
use crate::yaml::{Pos, YamlError};

/// A stage of a validated pipeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stage {
    pub name: String,
    /// Indices (into the stages) of the stages it comes after.
    pub requires: Vec<usize>,
    /// It waits in `awaiting_approval` until `zo-submit approve RUN STAGE`.
    pub approval_required: bool,
}

/// A pipeline taken apart: its tasks in file order, each task's stage, the stages.
pub(super) struct Flat {
    pub name: Option<String>,
    pub description: Option<String>,
    pub tasks: Vec<Sp<Box<RawTask>>>,
    pub stage_of: Vec<usize>,
    pub stages: Vec<Stage>,
}

/// Flattens a pipeline; stage problems (no name, a duplicate, an unknown or own `requires`, a
/// cycle, no tasks) go to `errs`.
pub(super) fn flatten(p: Sp<RawPipeline>, file: &str, errs: &mut Vec<YamlError>) -> Option<Flat> {
    let at = p.referenced;
    let p = p.value;
    let Some(stages) = p.stages else {
        errs.push(YamlError::at(file, at, "`pipeline` has no `stages`; list them as `stages: [{name: …, tasks: [...]}]`"));
        return None;
    };
    if stages.value.is_empty() {
        errs.push(YamlError::at(file, stages.referenced, "`pipeline.stages` is empty; add at least one stage"));
        return None;
    }
    let mut out = Flat { name: p.name, description: p.description, tasks: Vec::new(), stage_of: Vec::new(), stages: Vec::new() };
    let mut requires: Vec<Option<Sp<Vec<String>>>> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    let mut positions: Vec<Pos> = Vec::new();
    for (k, st) in stages.value.into_iter().enumerate() {
        let pos = st.referenced;
        let st = st.value;
        let name = match st.name {
            Some(n) if !n.value.trim().is_empty() => {
                let name = n.value.trim().to_string();
                if let Some(&first) = index.get(&name) {
                    errs.push(YamlError::at(
                        file,
                        n.referenced,
                        format!("duplicate stage name `{name}` (first used on line {}); rename one of them", positions[first].line),
                    ));
                } else {
                    index.insert(name.clone(), k);
                }
                name
            }
            _ => {
                errs.push(YamlError::at(file, pos, format!("stage #{} has no `name`; add `name: \"...\"`", k + 1)));
                format!("#{}", k + 1)
            }
        };
        if st.tasks.is_empty() {
            errs.push(YamlError::at(file, pos, format!("stage `{name}` has no tasks; add them under its `tasks:`")));
        }
        for t in st.tasks {
            out.tasks.push(t);
            out.stage_of.push(k);
        }
        requires.push(st.requires.map(|r| Sp { value: r.value.into_vec(), referenced: r.referenced }));
        positions.push(pos);
        out.stages.push(Stage { name, requires: Vec::new(), approval_required: st.approval_required });
    }
    let names: HashMap<&str, usize> = index.iter().map(|(n, &k)| (n.as_str(), k)).collect();
    let mut suggestions = 50;
    for (k, req) in requires.into_iter().enumerate() {
        let Some(req) = req else { continue };
        for r in req.value {
            match names.get(r.trim()) {
                Some(&j) if j == k => errs.push(YamlError::at(
                    file,
                    req.referenced,
                    format!("stage `{}` requires itself; remove `{r}` from its `requires`", out.stages[k].name),
                )),
                Some(&j) => {
                    if !out.stages[k].requires.contains(&j) {
                        out.stages[k].requires.push(j);
                    }
                }
                None => {
                    let hint = unknown_name_hint(r.trim(), &names, &mut suggestions, "stage");
                    errs.push(YamlError::at(
                        file,
                        req.referenced,
                        format!("stage `{}` requires unknown stage `{r}`; {hint}", out.stages[k].name),
                    ));
                }
            }
        }
    }
    let reqs: Vec<Vec<u32>> = out.stages.iter().map(|s| s.requires.iter().map(|&j| j as u32).collect()).collect();
    if let Some(cycle) = graph::find_cycle(&reqs) {
        let names: Vec<&str> = cycle.iter().map(|&k| out.stages[k].name.as_str()).collect();
        errs.push(YamlError::at(file, positions[cycle[0]], format!("stage cycle: {}; remove one of these `requires`", names.join(" → "))));
        for s in &mut out.stages {
            s.requires.clear();
        }
    }
    Some(out)
}

/// Every task's dependencies on the tasks of the stages its stage requires (added to the
/// ones it lists, each once).
pub(super) fn stage_dependencies(stage_of: &[usize], stages: &[Stage], deps: &mut [Vec<u32>]) {
    let mut members: Vec<Vec<u32>> = vec![Vec::new(); stages.len()];
    for (i, &k) in stage_of.iter().enumerate() {
        members[k].push(i as u32);
    }
    for (i, &k) in stage_of.iter().enumerate() {
        for &r in &stages[k].requires {
            for &m in &members[r] {
                if !deps[i].contains(&m) {
                    deps[i].push(m);
                }
            }
        }
    }
}
