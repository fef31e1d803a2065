//! One task on its own: its name, instance, command and prompt, timeout, output file,
//! simulation, retry policy, priority, checks and trigger rule, each checked and every
//! problem collected with its position; the `defaults:` it falls back on. What needs the
//! other tasks (unique names, dependencies, cycles) is `across.rs`.

use super::durations::{duration_of, DEFAULT_TIMEOUT, MAX_TIMEOUT, MIN_TIMEOUT};
use super::raw::{RawDefaults, RawRetry, RawTask, Sp};
use super::templates::TemplateFields;
use super::workflow::{self, Edges};
use crate::catalog::Catalog;
use crate::model::{ErrorClass, Priority, RetryPolicy, Simulate, TaskSpec, TriggerRule};
use crate::yaml::{closest, Pos, YamlError};

/// Longest `command` or `prompt` accepted (what it becomes on the execution host — a script,
/// an agent prompt on stdin — has no smaller limit on any executor).
pub const MAX_TEXT_BYTES: usize = 4 << 20;

/// What `defaults:` gives every task that does not say otherwise.
pub(super) struct Defaults {
    retry: RetryPolicy,
    priority: Priority,
    rule: TriggerRule,
}

impl Defaults {
    pub(super) fn of(raw: Option<RawDefaults>, file: &str, errs: &mut Vec<YamlError>) -> Self {
        let raw = raw.unwrap_or_default();
        let retry = match &raw.retry_policy {
            Some(r) => retry_policy(r, &RetryPolicy::default(), file, "defaults", errs),
            None => RetryPolicy::default(),
        };
        let rule = raw.trigger_rule.as_ref().and_then(|r| workflow::trigger_rule(r, file, "defaults", errs)).unwrap_or_default();
        Defaults { retry, priority: raw.priority.unwrap_or_default(), rule }
    }
}

/// A task checked on its own: its spec (dependencies and conditions not resolved yet), the
/// names it depends on, its `on_success`/`on_failure` edges, where its name and entry are.
pub(super) struct Checked {
    pub spec: TaskSpec,
    pub deps: Vec<Sp<String>>,
    pub edges: Option<Edges>,
    pub name_at: Pos,
    pub line: u64,
}

/// Checks task `i` (0-based) of the file. Values are moved out of the parsed task, not
/// copied (prompts can be long); where its templates are is noted in `fields`.
pub(super) fn check(
    i: usize,
    t: Sp<Box<RawTask>>,
    defaults: &Defaults,
    catalog: &Catalog,
    file: &str,
    fields: &mut TemplateFields,
    errs: &mut Vec<YamlError>,
) -> Checked {
    let at: Pos = t.referenced;
    let mut t = t.value;
    let name_at = pos_of(&t.name, at);
    let name = name_of(i, &mut t, at, name_at, file, errs);
    let instance = instance_of(&mut t, &name, at, catalog, file, errs);
    check_texts(&t, &name, file, errs);
    fields.note(i, [text_at(&t.command), text_at(&t.prompt), t.simulate.as_ref().and_then(|s| text_at(&s.value.output))]);
    let command = take_non_empty(&mut t.command);
    let prompt = take_non_empty(&mut t.prompt);
    if command.is_none() && prompt.is_none() {
        errs.push(YamlError::at(file, at, format!("task `{name}` has neither `command` nor `prompt`; add at least one")));
    }
    let timeout = timeout_of(&t, &name, file, errs);
    let output_file = output_file_of(&mut t, &name, file, errs);
    let simulate = simulate_of(&t, &name, file, errs);
    let what = format!("task `{name}`");
    let retry = match &t.retry_policy {
        Some(r) => retry_policy(r, &defaults.retry, file, &what, errs),
        None => defaults.retry.clone(),
    };
    let expect = t.expect.take().and_then(|e| workflow::expect(*e, file, &what, errs));
    let gate = t.gate.take().and_then(|g| workflow::gate(g, file, &what, errs));
    let trigger_rule = match &t.trigger_rule {
        Some(r) => workflow::trigger_rule(r, file, &what, errs).unwrap_or_default(),
        None => defaults.rule,
    };
    let edges = (t.on_success.is_some() || t.on_failure.is_some())
        .then(|| Edges { on_success: t.on_success.take().unwrap_or_default(), on_failure: t.on_failure.take().unwrap_or_default() });
    let spec = TaskSpec {
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
        priority: t.priority.unwrap_or(defaults.priority),
    };
    Checked { spec, deps: t.dependencies, edges, name_at, line: at.line }
}

/// The task's name, trimmed; a placeholder (`#N`) after an error when it has none.
fn name_of(i: usize, t: &mut RawTask, at: Pos, name_at: Pos, file: &str, errs: &mut Vec<YamlError>) -> String {
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
    name
}

/// The task's `ccr_instance`, which the catalog must know.
fn instance_of(t: &mut RawTask, name: &str, at: Pos, catalog: &Catalog, file: &str, errs: &mut Vec<YamlError>) -> String {
    match t.ccr_instance.take() {
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
                errs.push(YamlError::at(file, inst.referenced, format!("task `{name}`: unknown ccr_instance `{}`; {hint}", inst.value)));
            }
            inst.value
        }
    }
}

/// `command` and `prompt` within [`MAX_TEXT_BYTES`] and free of NUL.
fn check_texts(t: &RawTask, name: &str, file: &str, errs: &mut Vec<YamlError>) {
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
}

/// The task's timeout, within 1 s – 24 h (the default after an error).
fn timeout_of(t: &RawTask, name: &str, file: &str, errs: &mut Vec<YamlError>) -> std::time::Duration {
    match &t.timeout {
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
    }
}

/// The task's `output_file`, normalised and kept inside the output directory.
fn output_file_of(t: &mut RawTask, name: &str, file: &str, errs: &mut Vec<YamlError>) -> Option<String> {
    match t.output_file.take() {
        None => None,
        Some(o) => match output_path(&o.value) {
            Ok(p) => Some(p),
            Err(why) => {
                errs.push(YamlError::at(file, o.referenced, format!("task `{name}`: `output_file` {why}")));
                None
            }
        },
    }
}

/// The task's `simulate:` block, its duration read.
fn simulate_of(t: &RawTask, name: &str, file: &str, errs: &mut Vec<YamlError>) -> Option<Simulate> {
    match &t.simulate {
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
