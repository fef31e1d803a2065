//! Task files: the seed's YAML schema under `tasks:`, parsed strictly and validated as a whole.
//!
//! Parsing keeps the position of every value (`Spanned`), so that each error names
//! `file:line:col` and says what to change. Validation covers: unknown keys, missing
//! name/instance, unknown instances, neither `command` nor `prompt`, timeouts outside
//! 1 s – 24 h, duplicate names, unknown or repeated dependencies and dependency cycles.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_saphyr::Spanned;

/// A value and where it was written: what validation needs of serde-saphyr's [`Spanned`]
/// (which carries two full locations) at a third of its size — a 100,000-task file holds
/// hundreds of thousands of these while it is checked.
#[derive(Deserialize, Clone)]
#[serde(from = "Spanned<T>", bound(deserialize = "T: Deserialize<'de>"))]
struct Sp<T> {
    value: T,
    referenced: Pos,
}

impl<T> From<Spanned<T>> for Sp<T> {
    fn from(s: Spanned<T>) -> Self {
        Sp { value: s.value, referenced: s.referenced.into() }
    }
}

use crate::catalog::Catalog;
use crate::model::ErrorClass;
use crate::yaml::{self, closest, Pos, YamlError};

pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);
pub const MIN_TIMEOUT: Duration = Duration::from_secs(1);
pub const MAX_TIMEOUT: Duration = Duration::from_secs(24 * 3600);

/// What a simulated run of the task does (used by the `simulate` agent and executor).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Simulate {
    /// How long the simulated work takes.
    pub duration_ms: u64,
    /// The simulated agent answers with an error.
    pub fail: bool,
    /// Exit code of the simulated command (only with the `simulate` executor).
    pub exit_code: i32,
    /// The simulated answer text; a labelled synthetic answer when absent.
    pub output: Option<String>,
}

/// How urgently an instance's backlog should run a task.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    High,
    #[default]
    Medium,
    Low,
}

impl Priority {
    pub const ALL: [Priority; 3] = [Priority::High, Priority::Medium, Priority::Low];

    pub fn is_default(&self) -> bool {
        *self == Priority::Medium
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Priority::High => "high",
            Priority::Medium => "medium",
            Priority::Low => "low",
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backoff {
    #[default]
    Exponential,
    Fixed,
}

/// When and how often a failed task is tried again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetryPolicy {
    pub max_retries: u32,
    pub retry_on: Vec<ErrorClass>,
    pub backoff: Backoff,
    pub base_delay_ms: u64,
    pub max_delay_ms: u64,
    pub jitter: bool,
}

impl Default for RetryPolicy {
    /// Network and rate-limit errors are retried (3 times, 2 s doubling to 60 s, jittered);
    /// failing commands, model errors and timeouts are not.
    fn default() -> Self {
        RetryPolicy {
            max_retries: 3,
            retry_on: vec![ErrorClass::Network, ErrorClass::RateLimit],
            backoff: Backoff::Exponential,
            base_delay_ms: 2000,
            max_delay_ms: 60_000,
            jitter: true,
        }
    }
}

impl RetryPolicy {
    /// True for the policy a task gets when its file says nothing.
    pub fn is_default(&self) -> bool {
        static DEFAULT: std::sync::LazyLock<RetryPolicy> = std::sync::LazyLock::new(RetryPolicy::default);
        *self == *DEFAULT
    }

    /// Whether attempt `attempt` (1-based) that failed with `class` gets another try.
    pub fn retries(&self, class: ErrorClass, attempt: u32) -> bool {
        attempt <= self.max_retries && self.retry_on.contains(&class)
    }

    /// The wait before the attempt after `attempt`; `unit` in [0, 1) draws the jitter.
    pub fn delay(&self, attempt: u32, unit: f64) -> Duration {
        let base = match self.backoff {
            Backoff::Fixed => self.base_delay_ms,
            Backoff::Exponential => self.base_delay_ms.saturating_mul(1u64 << attempt.saturating_sub(1).min(30)),
        }
        .min(self.max_delay_ms);
        let ms = if self.jitter { base / 2 + ((base / 2) as f64 * unit.clamp(0.0, 1.0)) as u64 } else { base };
        Duration::from_millis(ms)
    }
}

/// One validated task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskSpec {
    pub name: String,
    pub instance: String,
    pub command: Option<String>,
    pub prompt: Option<String>,
    pub timeout: Duration,
    /// Indices (into [`TaskFile::tasks`]) of the tasks this one waits for.
    pub deps: Vec<usize>,
    pub tags: Vec<String>,
    pub description: Option<String>,
    pub output_file: Option<String>,
    pub simulate: Option<Simulate>,
    pub retry: RetryPolicy,
    pub priority: Priority,
    /// Line of the task in its file, for messages.
    pub line: u64,
}

/// A validated task file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskFile {
    pub path: String,
    pub name: Option<String>,
    pub tasks: Vec<TaskSpec>,
}

/// Every problem found in a task file, each one line with its position.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct TaskFileError(pub Vec<YamlError>);

impl fmt::Display for TaskFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    defaults: Option<RawDefaults>,
    // Boxed: a 100,000-task file would otherwise hold (and regrow) a vector of large structs.
    tasks: Option<Sp<Vec<Sp<Box<RawTask>>>>>,
}

/// Run-wide defaults that tasks may override.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawDefaults {
    retry_policy: Option<RawRetry>,
    priority: Option<Priority>,
}

#[derive(Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
struct RawRetry {
    max_retries: Option<Sp<u32>>,
    retry_on: Option<Vec<Sp<String>>>,
    backoff: Option<Backoff>,
    base_delay: Option<Sp<RawTimeout>>,
    max_delay: Option<Sp<RawTimeout>>,
    jitter: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTask {
    name: Option<Sp<String>>,
    ccr_instance: Option<Sp<String>>,
    command: Option<Sp<String>>,
    prompt: Option<Sp<String>>,
    timeout: Option<Sp<RawTimeout>>,
    #[serde(default)]
    dependencies: Vec<Sp<String>>,
    #[serde(default)]
    tags: Vec<String>,
    description: Option<String>,
    output_file: Option<Sp<String>>,
    // Rare keys stay out of line, so every task does not carry their space.
    simulate: Option<Box<Sp<RawSimulate>>>,
    retry_policy: Option<Box<RawRetry>>,
    priority: Option<Priority>,
}

#[derive(Deserialize, Clone)]
#[serde(untagged)]
enum RawTimeout {
    Int(i64),
    Float(f64),
    Text(String),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSimulate {
    duration: Option<Sp<RawTimeout>>,
    #[serde(default)]
    fail: bool,
    #[serde(default)]
    exit_code: i32,
    output: Option<String>,
}

/// Parses the parts of a split file on one thread each; `None` when any part does not parse
/// or holds other than the expected number of tasks (the caller then parses the whole file,
/// which also gives the error messages).
fn parse_split(split: &split::Split, file: &str) -> Option<RawFile> {
    type Tasks = Vec<Sp<Box<RawTask>>>;
    let (rest, parts) = std::thread::scope(|scope| {
        let handles: Vec<_> = split.parts[1..]
            .iter()
            .map(|p| scope.spawn(move || yaml::from_str::<Tasks>(&p.text, file).ok().filter(|t| t.len() == p.items)))
            .collect();
        let first = &split.parts[0];
        let mut parts: Vec<Option<Tasks>> = vec![yaml::from_str::<Tasks>(&first.text, file).ok().filter(|t| t.len() == first.items)];
        let rest = yaml::from_str::<RawFile>(&split.rest, file).ok();
        parts.extend(handles.into_iter().map(|h| h.join().ok().flatten()));
        (rest, parts)
    });
    let mut raw = rest?;
    if raw.tasks.is_some() {
        return None;
    }
    let mut tasks: Tasks = Vec::with_capacity(split.parts.iter().map(|p| p.items).sum());
    for p in parts {
        tasks.extend(p?);
    }
    raw.tasks = Some(Sp { value: tasks, referenced: split.start });
    Some(raw)
}

/// Reads and validates a task file.
pub fn load(path: &Path, catalog: &Catalog) -> Result<TaskFile, TaskFileError> {
    let text = yaml::read_file(path).map_err(|e| TaskFileError(vec![e]))?;
    parse(&text, &path.display().to_string(), catalog)
}

/// Parses and validates task-file text; `file` is the name used in messages.
pub fn parse(text: &str, file: &str, catalog: &Catalog) -> Result<TaskFile, TaskFileError> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()).min(8);
    let raw = match split::split(text, cores).and_then(|s| parse_split(&s, file)) {
        Some(raw) => raw,
        None => yaml::from_str::<RawFile>(text, file).map_err(|e| TaskFileError(vec![e]))?,
    };
    validate(raw, file, catalog)
}

/// Checks a parsed file as a whole and builds its tasks.
fn validate(raw: RawFile, file: &str, catalog: &Catalog) -> Result<TaskFile, TaskFileError> {
    let _ = raw.description;
    let mut errs = Vec::new();
    let defaults = raw.defaults.unwrap_or_default();
    let base_retry = match &defaults.retry_policy {
        Some(r) => retry_policy(r, &RetryPolicy::default(), file, "defaults", &mut errs),
        None => RetryPolicy::default(),
    };
    let base_priority = defaults.priority.unwrap_or_default();
    let Some(tasks) = raw.tasks else {
        return Err(TaskFileError(vec![YamlError::plain(file, "missing required key `tasks`; list your tasks under `tasks:`")]));
    };
    if tasks.value.is_empty() {
        return Err(TaskFileError(vec![YamlError::at(file, tasks.referenced, "`tasks` is empty; add at least one task")]));
    }

    // Pass 1: each task on its own.
    let mut specs = Vec::with_capacity(tasks.value.len());
    let mut dep_names: Vec<Vec<Sp<String>>> = Vec::with_capacity(tasks.value.len());
    let mut name_pos: Vec<Pos> = Vec::with_capacity(tasks.value.len());
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
                if v.value.contains('\0') {
                    errs.push(YamlError::at(
                        file,
                        v.referenced,
                        format!("task `{name}`: `{key}` contains a NUL character, which cannot be passed to a program; remove it"),
                    ));
                }
            }
        }
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
                        format!("task `{name}`: timeout {} is out of range; use 1s to 24h", humantime::format_duration(d)),
                    ));
                    DEFAULT_TIMEOUT
                }
                Err(m) => {
                    errs.push(YamlError::at(file, sp.referenced, format!("task `{name}`: {m}")));
                    DEFAULT_TIMEOUT
                }
            },
        };
        let output_file = match &t.output_file {
            Some(o) if o.value.trim().is_empty() => {
                errs.push(YamlError::at(
                    file,
                    o.referenced,
                    format!("task `{name}`: `output_file` is empty; give a file name or remove the key"),
                ));
                None
            }
            Some(o) if o.value.ends_with('/') => {
                errs.push(YamlError::at(
                    file,
                    o.referenced,
                    format!("task `{name}`: `output_file` `{}` names a directory; give a file name", o.value),
                ));
                None
            }
            Some(_) => t.output_file.take().map(|o| o.value),
            None => None,
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
                Some(Simulate { duration_ms, fail: s.value.fail, exit_code: s.value.exit_code, output: s.value.output.clone() })
            }
        };
        let retry = match &t.retry_policy {
            Some(r) => retry_policy(r, &base_retry, file, &format!("task `{name}`"), &mut errs),
            None => base_retry.clone(),
        };
        let priority = t.priority.unwrap_or(base_priority);
        name_pos.push(name_at);
        dep_names.push(t.dependencies);
        specs.push(TaskSpec {
            name,
            instance,
            command,
            prompt,
            timeout,
            deps: Vec::new(),
            tags: t.tags,
            description: t.description,
            output_file,
            simulate,
            retry,
            priority,
            line: at.line,
        });
    }

    // Pass 2: names are unique, dependencies exist.
    let mut index: HashMap<&str, usize> = HashMap::with_capacity(specs.len());
    let mut dup_errs = Vec::new();
    for (i, s) in specs.iter().enumerate() {
        if let Some(&first) = index.get(s.name.as_str()) {
            dup_errs.push(YamlError::at(
                file,
                name_pos[i],
                format!("duplicate task name `{}` (first used on line {}); rename one of them", s.name, specs[first].line),
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
                    Pos { line: s.line, col: 1 }.max(name_pos[i]),
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
    for (i, deps) in dep_names.iter().enumerate() {
        let mut resolved: Vec<usize> = Vec::with_capacity(deps.len());
        for d in deps {
            match index.get(d.value.as_str()) {
                Some(&j) if j == i => dup_errs.push(YamlError::at(
                    file,
                    d.referenced,
                    format!("task `{}` depends on itself; remove `{}` from its dependencies", specs[i].name, d.value),
                )),
                Some(&j) if resolved.contains(&j) => dup_errs.push(YamlError::at(
                    file,
                    d.referenced,
                    format!("task `{}` lists dependency `{}` twice; remove one", specs[i].name, d.value),
                )),
                Some(&j) => resolved.push(j),
                None => {
                    let hint = match closest(&d.value, index.keys().copied()) {
                        Some(s) => format!("did you mean `{s}`?"),
                        None => "name a task defined in this file".to_string(),
                    };
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
    errs.extend(dup_errs);
    for (s, d) in specs.iter_mut().zip(all_deps) {
        s.deps = d;
    }
    if errs.is_empty() {
        if let Some(cycle) = crate::plan::find_cycle(&specs) {
            let names: Vec<&str> = cycle.iter().map(|&i| specs[i].name.as_str()).collect();
            errs.push(YamlError::at(
                file,
                name_pos[cycle[0]],
                format!("dependency cycle: {}; remove one of these dependencies", names.join(" → ")),
            ));
        }
    }
    if errs.is_empty() {
        Ok(TaskFile { path: file.to_string(), name: raw.name, tasks: specs })
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
fn take_non_empty(v: &mut Option<Sp<String>>) -> Option<String> {
    v.take().map(|s| s.value).filter(|s| !s.trim().is_empty())
}

fn duration_of(t: &RawTimeout) -> Result<Duration, String> {
    match t {
        RawTimeout::Int(n) if *n >= 0 => Ok(Duration::from_secs(*n as u64)),
        RawTimeout::Int(n) => Err(format!("timeout {n} is negative; use seconds (300) or a duration (\"5m\")")),
        RawTimeout::Float(f) if f.is_finite() && *f >= 0.0 && *f < 1e9 => Ok(Duration::from_secs_f64(*f)),
        RawTimeout::Float(f) => Err(format!("timeout {f} is not a valid number of seconds; use seconds (300) or a duration (\"5m\")")),
        RawTimeout::Text(s) => humantime::parse_duration(s.trim())
            .map_err(|e| format!("timeout `{s}` is not a duration ({e}); use seconds (300) or a duration such as \"90s\" or \"5m\"")),
    }
}

mod split;

#[cfg(test)]
mod tests;
