//! Validation of a parsed task file as a whole, in stages: the file's own parts (defaults,
//! `resource_limits:`, its tasks or pipeline), each task on its own (`task.rs`), the tasks
//! together (`across.rs`: unique names and output files, known dependencies, conditions,
//! stages), templates and prices, and no cycles. Every problem is collected, each with its
//! position, and reported sorted by position.

use super::across;
use super::limits;
use super::parsed::{TaskFile, TaskFileError};
use super::pipeline;
use super::raw::{RawFile, Sp};
use super::task::{self, Checked, Defaults};
use super::templates;
use super::workflow::{self, Edges};
use crate::catalog::Catalog;
use crate::model::TaskSpec;
use crate::yaml::{Pos, YamlError};

/// How many unknown names get a "did you mean" suggestion.
const MAX_SUGGESTIONS: usize = 50;

/// The tasks of a file, from its `tasks:` or its `pipeline:` (flattened, with the stage of
/// each), and its name and description (a pipeline's stand in for the file's).
struct Listed {
    tasks: Sp<Vec<Sp<Box<super::RawTask>>>>,
    stage_of: Vec<usize>,
    stages: Vec<super::Stage>,
    name: Option<String>,
    description: Option<String>,
}

fn listed(
    tasks: Option<Sp<Vec<Sp<Box<super::RawTask>>>>>,
    pipeline: Option<Sp<super::raw::RawPipeline>>,
    name: Option<String>,
    description: Option<String>,
    file: &str,
    errs: &mut Vec<YamlError>,
) -> Result<Listed, TaskFileError> {
    match (tasks, pipeline) {
        (Some(_), Some(p)) => Err(TaskFileError(vec![YamlError::at(
            file,
            p.referenced,
            "a task file has `tasks:` or `pipeline:`, not both; move the tasks into a stage or drop `pipeline:`",
        )])),
        (Some(tasks), None) => Ok(Listed { tasks, stage_of: Vec::new(), stages: Vec::new(), name, description }),
        (None, Some(p)) => {
            let at = p.referenced;
            let Some(flat) = pipeline::flatten(p, file, errs) else {
                return Err(TaskFileError(std::mem::take(errs)));
            };
            Ok(Listed {
                tasks: Sp { value: flat.tasks, referenced: at },
                stage_of: flat.stage_of,
                stages: flat.stages,
                name: name.or(flat.name),
                description: description.or(flat.description),
            })
        }
        (None, None) => Err(TaskFileError(vec![YamlError::plain(
            file,
            "missing required key `tasks`; list your tasks under `tasks:` (or stages under `pipeline:`)",
        )])),
    }
}

/// Checks a parsed file as a whole and builds its tasks.
pub(super) fn validate(raw: RawFile, src: &str, file: &str, catalog: &Catalog) -> Result<TaskFile, TaskFileError> {
    let mut errs = Vec::new();
    let defaults = Defaults::of(raw.defaults, file, &mut errs);
    let budget_at = raw.resource_limits.as_ref().and_then(|l| l.value.budget.as_ref().map(|b| b.referenced));
    let run_limits = limits::limits(raw.resource_limits, file, catalog, &mut errs);
    let Listed { tasks, stage_of, stages, name, description } =
        listed(raw.tasks, raw.pipeline, raw.name, raw.description, file, &mut errs)?;
    if tasks.value.is_empty() {
        return Err(TaskFileError(vec![YamlError::at(file, tasks.referenced, "`tasks` is empty; add at least one task")]));
    }
    let mut each = EachTask::with_capacity(tasks.value.len());
    let mut fields = templates::TemplateFields::default();
    for (i, t) in tasks.value.into_iter().enumerate() {
        each.push(i, task::check(i, t, &defaults, catalog, file, &mut fields, &mut errs));
    }
    let EachTask { mut specs, dep_names, edges, name_pos, lines } = each;

    let mut dup_errs = Vec::new();
    let index = across::unique_names(&specs, &name_pos, &lines, file, &mut dup_errs);
    across::unique_outputs(&specs, &name_pos, &lines, file, &mut dup_errs);
    let mut suggestions_left = MAX_SUGGESTIONS;
    let mut all_deps = across::dependencies(&dep_names, &specs, &index, file, &mut suggestions_left, &mut dup_errs);
    pipeline::stage_dependencies(&stage_of, &stages, &mut all_deps);
    let conditions = {
        let names: Vec<&str> = specs.iter().map(|s| s.name.as_str()).collect();
        workflow::conditions(&names, &edges, &index, file, &mut suggestions_left, &mut dup_errs)
    };
    errs.extend(dup_errs);
    for ((s, d), c) in specs.iter_mut().zip(all_deps).zip(conditions) {
        s.deps = d;
        s.conditions = c;
    }
    for (s, &k) in specs.iter_mut().zip(&stage_of) {
        s.stage = Some(stages[k].name.clone());
        s.needs_approval = stages[k].approval_required;
    }
    templates::check(&mut specs, &fields, src, file, &mut errs);
    limits::price_tasks(&mut specs, &run_limits, catalog, budget_at, file, &mut errs);
    across::cycle(&specs, &name_pos, file, &mut errs);
    if errs.is_empty() {
        let description = description.filter(|d| !d.trim().is_empty());
        Ok(TaskFile { path: file.to_string(), name, description, tasks: specs, lines, stages, limits: run_limits })
    } else {
        errs.sort_by_key(|e| e.pos);
        Err(TaskFileError(errs))
    }
}

/// The tasks checked one by one, gathered for the checks across them.
struct EachTask {
    specs: Vec<TaskSpec>,
    dep_names: Vec<Vec<Sp<String>>>,
    /// Each task's `on_success`/`on_failure` edges; only as long as the last task with any
    /// (a 100,000-task file usually has none).
    edges: Vec<Edges>,
    name_pos: Vec<Pos>,
    lines: Vec<u64>,
}

impl EachTask {
    fn with_capacity(n: usize) -> Self {
        EachTask {
            specs: Vec::with_capacity(n),
            dep_names: Vec::with_capacity(n),
            edges: Vec::new(),
            name_pos: Vec::with_capacity(n),
            lines: Vec::with_capacity(n),
        }
    }

    fn push(&mut self, i: usize, c: Checked) {
        if let Some(e) = c.edges {
            self.edges.resize_with(i + 1, Edges::default);
            self.edges[i] = e;
        }
        self.specs.push(c.spec);
        self.dep_names.push(c.deps);
        self.name_pos.push(c.name_at);
        self.lines.push(c.line);
    }
}
