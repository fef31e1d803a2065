//! Validation of a parsed task file as a whole: each task on its own (names, instances,
//! command/prompt, timeouts, output files, retry policies), then across tasks (unique names
//! and output files, known dependencies, no cycles). Every problem is collected, each with its
//! position, and reported sorted by position.

use std::collections::{HashMap, HashSet};

use super::durations::{duration_of, DEFAULT_TIMEOUT, MAX_TIMEOUT, MIN_TIMEOUT};
use super::limits;
use super::pipeline;
use super::raw::{RawFile, RawRetry, Sp};
use super::templates;
use super::workflow::{self, Edges};
use super::{TaskFile, TaskFileError};
use crate::catalog::Catalog;
use crate::graph;
use crate::model::{ErrorClass, RetryPolicy, Simulate, TaskSpec};
use crate::yaml::{closest, Pos, YamlError};

/// Longest `command` or `prompt` accepted (what it becomes on the execution host — a script,
/// an agent prompt on stdin — has no smaller limit on any executor).
pub const MAX_TEXT_BYTES: usize = 4 << 20;

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
    let defaults = raw.defaults.unwrap_or_default();
    let base_retry = match &defaults.retry_policy {
        Some(r) => retry_policy(r, &RetryPolicy::default(), file, "defaults", &mut errs),
        None => RetryPolicy::default(),
    };
    let base_priority = defaults.priority.unwrap_or_default();
    let base_rule = defaults.trigger_rule.as_ref().and_then(|r| workflow::trigger_rule(r, file, "defaults", &mut errs)).unwrap_or_default();
    let budget_at = raw.resource_limits.as_ref().and_then(|l| l.value.budget.as_ref().map(|b| b.referenced));
    let run_limits = limits::limits(raw.resource_limits, file, catalog, &mut errs);
    let Listed { tasks, stage_of, stages, name, description } =
        listed(raw.tasks, raw.pipeline, raw.name, raw.description, file, &mut errs)?;
    if tasks.value.is_empty() {
        return Err(TaskFileError(vec![YamlError::at(file, tasks.referenced, "`tasks` is empty; add at least one task")]));
    }

    // Pass 1: each task on its own.
    let mut specs = Vec::with_capacity(tasks.value.len());
    let mut dep_names: Vec<Vec<Sp<String>>> = Vec::with_capacity(tasks.value.len());
    let mut edges: Vec<Edges> = Vec::new();
    let mut name_pos: Vec<Pos> = Vec::with_capacity(tasks.value.len());
    let mut lines: Vec<u64> = Vec::with_capacity(tasks.value.len());
    let mut fields = templates::TemplateFields::default();
    for (i, t) in tasks.value.into_iter().enumerate() {
        let at: Pos = t.referenced;
        let mut t = t.value;
        let name_at = pos_of(&t.name, at);
        // Values are moved out of the parsed task, not copied (prompts can be long).
        let name = match t.name.take() {
            Some(n) if n.value.trim().len() == n.value.len() && !n.value.is_empty() => n.value,
            Some(n) if !n.value.trim().is_empty() => n.value.trim().to_string(),
            Some(n) => {
                errs.push(YamlError::at(file, n.referenced, "task `name` is empty; give the task a name"));
                format!("#{}", i + 1)
            }
            None => {
                errs.push(YamlError::at(file, at, format!("task #{} has no `name`; add `name: \"...\"`", i + 1)));
                format!("#{}", i + 1)
            }
        };
        if name.chars().any(char::is_control) {
            errs.push(YamlError::at(
                file,
                name_at,
                format!("task name `{}` contains a control character; use plain text", name.escape_default()),
            ));
        }
        let instance = match t.ccr_instance.take() {
            None => {
                errs.push(YamlError::at(
                    file,
                    at,
                    format!("task `{name}` has no `ccr_instance`; add one of: {}", catalog.names().collect::<Vec<_>>().join(", ")),
                ));
                String::new()
            }
            Some(inst) => {
                if catalog.get(&inst.value).is_none() {
                    let hint = match closest(&inst.value, catalog.names()) {
                        Some(s) => format!("did you mean `{s}`?"),
                        None => format!("use one of: {}", catalog.names().collect::<Vec<_>>().join(", ")),
                    };
                    errs.push(YamlError::at(
                        file,
                        inst.referenced,
                        format!("task `{name}`: unknown ccr_instance `{}`; {hint}", inst.value),
                    ));
                }
                inst.value
            }
        };
        for (key, v) in [("command", &t.command), ("prompt", &t.prompt)] {
            if let Some(v) = v {
                if v.value.len() > MAX_TEXT_BYTES {
                    errs.push(YamlError::at(
                        file,
                        v.referenced,
                        format!("task `{name}`: `{key}` is {} bytes, more than the {} MiB a task may carry; shorten it or have the command read a file", v.value.len(), MAX_TEXT_BYTES >> 20),
                    ));
                }
                if v.value.contains('\0') {
                    errs.push(YamlError::at(
                        file,
                        v.referenced,
                        format!("task `{name}`: `{key}` contains a NUL character, which cannot be passed to a program; remove it"),
                    ));
                }
            }
        }
        fields.note(i, [text_at(&t.command), text_at(&t.prompt), t.simulate.as_ref().and_then(|s| text_at(&s.value.output))]);
        let command = take_non_empty(&mut t.command);
        let prompt = take_non_empty(&mut t.prompt);
        if command.is_none() && prompt.is_none() {
            errs.push(YamlError::at(file, at, format!("task `{name}` has neither `command` nor `prompt`; add at least one")));
        }
        let timeout = match &t.timeout {
            None => DEFAULT_TIMEOUT,
            Some(sp) => match duration_of(&sp.value) {
                Ok(d) if (MIN_TIMEOUT..=MAX_TIMEOUT).contains(&d) => d,
                Ok(d) => {
                    errs.push(YamlError::at(
                        file,
                        sp.referenced,
                        format!("task `{name}`: timeout {} is out of range; use 1s to 24h", crate::text::duration(d)),
                    ));
                    DEFAULT_TIMEOUT
                }
                Err(m) => {
                    errs.push(YamlError::at(file, sp.referenced, format!("task `{name}`: {m}")));
                    DEFAULT_TIMEOUT
                }
            },
        };
        let output_file = match t.output_file.take() {
            None => None,
            Some(o) => match output_path(&o.value) {
                Ok(p) => Some(p),
                Err(why) => {
                    errs.push(YamlError::at(file, o.referenced, format!("task `{name}`: `output_file` {why}")));
                    None
                }
            },
        };
        let simulate = match &t.simulate {
            None => None,
            Some(s) => {
                let duration_ms = match &s.value.duration {
                    None => 0,
                    Some(d) => match duration_of(&d.value) {
                        Ok(d) => d.as_millis() as u64,
                        Err(m) => {
                            errs.push(YamlError::at(file, d.referenced, format!("task `{name}`: simulate.{m}")));
                            0
                        }
                    },
                };
                Some(Simulate {
                    duration_ms,
                    fail: s.value.fail,
                    exit_code: s.value.exit_code,
                    output: s.value.output.as_ref().map(|o| o.value.clone()),
                })
            }
        };
        let retry = match &t.retry_policy {
            Some(r) => retry_policy(r, &base_retry, file, &format!("task `{name}`"), &mut errs),
            None => base_retry.clone(),
        };
        let priority = t.priority.unwrap_or(base_priority);
        let what = format!("task `{name}`");
        let expect = t.expect.take().and_then(|e| workflow::expect(*e, file, &what, &mut errs));
        let gate = t.gate.take().and_then(|g| workflow::gate(g, file, &what, &mut errs));
        let trigger_rule = match &t.trigger_rule {
            Some(r) => workflow::trigger_rule(r, file, &format!("task `{name}`"), &mut errs).unwrap_or_default(),
            None => base_rule,
        };
        if t.on_success.is_some() || t.on_failure.is_some() {
            // Only tasks with edges make the list grow (a 100,000-task file usually has none).
            edges.resize_with(i + 1, Edges::default);
            edges[i] = Edges { on_success: t.on_success.take().unwrap_or_default(), on_failure: t.on_failure.take().unwrap_or_default() };
        }
        name_pos.push(name_at);
        dep_names.push(t.dependencies);
        specs.push(TaskSpec {
            name,
            instance,
            command,
            prompt,
            timeout_ms: timeout.as_millis() as u64,
            deps: Vec::new(),
            trigger_rule,
            conditions: Vec::new(),
            tags: t.tags,
            description: t.description,
            output_file,
            simulate,
            expect,
            gate,
            stage: None,
            needs_approval: false,
            inputs: Vec::new(),
            price: None,
            rate: None,
            quotas: None,
            retry,
            priority,
        });
        lines.push(at.line);
    }

    // Pass 2: names are unique, dependencies exist.
    let mut index: HashMap<&str, usize> = HashMap::with_capacity(specs.len());
    let mut dup_errs = Vec::new();
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
    let mut all_deps = Vec::with_capacity(specs.len());
    // Suggestions compare a name with every task's: only for the first few unknown names, so
    // a file with thousands of them is not quadratic.
    let mut suggestions_left = MAX_SUGGESTIONS;
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
                    let hint = workflow::unknown_task_hint(&d.value, &index, &mut suggestions_left);
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
    // Cycles are looked for whatever else is wrong (unknown dependencies are left out of the
    // graph), so one run shows every problem.
    {
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
    if errs.is_empty() {
        let description = description.filter(|d| !d.trim().is_empty());
        Ok(TaskFile { path: file.to_string(), name, description, tasks: specs, lines, stages, limits: run_limits })
    } else {
        errs.sort_by_key(|e| e.pos);
        Err(TaskFileError(errs))
    }
}

/// A retry policy: `raw` over `base`, every value checked.
fn retry_policy(raw: &RawRetry, base: &RetryPolicy, file: &str, what: &str, errs: &mut Vec<YamlError>) -> RetryPolicy {
    let mut p = base.clone();
    if let Some(m) = &raw.max_retries {
        if m.value > 100 {
            errs.push(YamlError::at(file, m.referenced, format!("{what}: max_retries {} is too many; use 0 to 100", m.value)));
        } else {
            p.max_retries = m.value;
        }
    }
    if let Some(list) = &raw.retry_on {
        p.retry_on.clear();
        for item in list {
            match ErrorClass::parse_retry_name(&item.value) {
                Some(c) => p.retry_on.push(c),
                None => {
                    let names = ErrorClass::RETRY_NAMES;
                    let hint = match closest(&item.value, names.iter().copied()) {
                        Some(s) => format!("did you mean `{s}`?"),
                        None => format!("use one of: {}", names.join(", ")),
                    };
                    errs.push(YamlError::at(
                        file,
                        item.referenced,
                        format!("{what}: unknown error class `{}` in retry_on; {hint}", item.value),
                    ));
                }
            }
        }
    }
    if let Some(b) = raw.backoff {
        p.backoff = b;
    }
    if let Some(j) = raw.jitter {
        p.jitter = j;
    }
    for (key, v, slot) in [("base_delay", &raw.base_delay, &mut p.base_delay_ms), ("max_delay", &raw.max_delay, &mut p.max_delay_ms)] {
        if let Some(v) = v {
            match duration_of(&v.value) {
                Ok(d) if d <= MAX_TIMEOUT => *slot = d.as_millis() as u64,
                Ok(_) => errs.push(YamlError::at(file, v.referenced, format!("{what}: {key} is longer than 24h; shorten it"))),
                Err(m) => errs.push(YamlError::at(file, v.referenced, format!("{what}: {key}: {m}"))),
            }
        }
    }
    if p.base_delay_ms > p.max_delay_ms {
        p.max_delay_ms = p.base_delay_ms;
    }
    p
}

fn pos_of(v: &Option<Sp<String>>, fallback: Pos) -> Pos {
    v.as_ref().map(|s| s.referenced).unwrap_or(fallback)
}

/// Moves out the text of a key that is present and not blank.
fn text_at(f: &Option<Sp<String>>) -> Option<(&str, Pos)> {
    f.as_ref().map(|c| (c.value.as_str(), c.referenced))
}

fn take_non_empty(v: &mut Option<Sp<String>>) -> Option<String> {
    v.take().map(|s| s.value).filter(|s| !s.trim().is_empty())
}

/// An `output_file` as it will be written: relative to the output directory (zo-submit's
/// working directory or `--output-dir`), normalised (`./` and repeated `/` dropped) so that two
/// spellings of one file are seen as one. Absolute paths and `..` are refused: a task's output
/// comes from a model and must not reach files outside the run's directory.
pub(super) fn output_path(raw: &str) -> Result<String, String> {
    let shown = raw.escape_default().to_string();
    if raw.trim().is_empty() {
        return Err("is empty; give a file name or remove the key".into());
    }
    if raw.ends_with('/') {
        return Err(format!("`{shown}` names a directory; give a file name"));
    }
    if raw.starts_with('/') || raw.starts_with('~') {
        return Err(format!(
            "`{shown}` is absolute; give a path inside the output directory (zo-submit's working directory, or --output-dir), e.g. `reports/summary.md`"
        ));
    }
    if raw.chars().any(char::is_control) {
        return Err(format!("`{shown}` contains a control character; use a plain file name"));
    }
    let mut parts = Vec::new();
    for part in raw.split('/') {
        match part {
            "" | "." => {}
            ".." => return Err(format!("`{shown}` leaves the output directory (`..`); give a path inside it")),
            p => parts.push(p),
        }
    }
    if parts.is_empty() {
        return Err(format!("`{shown}` names no file; give a file name"));
    }
    Ok(parts.join("/"))
}

#[cfg(test)]
mod tests {
    use super::output_path;

    #[test]
    fn output_paths_stay_inside_and_are_normalised() {
        assert_eq!(output_path("out.md").unwrap(), "out.md");
        assert_eq!(output_path("./a//b/./c.txt").unwrap(), "a/b/c.txt");
        for bad in ["/etc/passwd", "~/.bashrc", "../x", "a/../../x", "a/..", ".", "a/", " ", "a\u{1b}b"] {
            assert!(output_path(bad).is_err(), "{bad:?}");
        }
    }
}
