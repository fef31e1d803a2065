//! The workflow keys of a task file: `trigger_rule` names, and the seed's `on_success` /
//! `on_failure` lists, which become conditions on the tasks they name (the named task waits
//! for this one and runs only if it succeeded, resp. failed).

use std::collections::HashMap;

use super::raw::{RawExpect, Sp};
use crate::checks::{compile_expect, Gate};
use crate::model::{Condition, Expect, TriggerRule, When};
use crate::yaml::{closest, YamlError};

/// A `trigger_rule` value, or an error naming the closest rule.
pub(super) fn trigger_rule(v: &Sp<String>, file: &str, what: &str, errs: &mut Vec<YamlError>) -> Option<TriggerRule> {
    let name = v.value.trim();
    if let Some(r) = TriggerRule::parse(name) {
        return Some(r);
    }
    let names = TriggerRule::ALL.map(TriggerRule::as_str);
    let hint = match closest(name, names.iter().copied()) {
        Some(s) => format!("did you mean `{s}`?"),
        None => format!("use one of: {}", names.join(", ")),
    };
    errs.push(YamlError::at(file, v.referenced, format!("{what}: unknown trigger_rule `{}`; {hint}", name.escape_default())));
    None
}

/// A task's `expect:`, its regexes and schema compiled to find mistakes now.
pub(super) fn expect(raw: Sp<RawExpect>, file: &str, what: &str, errs: &mut Vec<YamlError>) -> Option<Box<Expect>> {
    let r = raw.value;
    let e = Expect {
        contains: r.contains.map(|v| v.into_vec()).unwrap_or_default(),
        not_contains: r.not_contains.map(|v| v.into_vec()).unwrap_or_default(),
        regex: r.regex.map(|v| v.into_vec()).unwrap_or_default(),
        not_regex: r.not_regex.map(|v| v.into_vec()).unwrap_or_default(),
        min_length: r.min_length,
        max_length: r.max_length,
        json: r.json,
        json_schema: r.json_schema.map(|v| v.to_string()),
    };
    if let Err(m) = compile_expect(&e) {
        errs.push(YamlError::at(file, raw.referenced, format!("{what}: expect: {m}")));
        return None;
    }
    Some(Box::new(e))
}

/// A task's `gate:`, parsed to find mistakes now (the worker parses the same text again).
pub(super) fn gate(raw: Sp<String>, file: &str, what: &str, errs: &mut Vec<YamlError>) -> Option<String> {
    match Gate::parse(&raw.value) {
        Ok(g) => Some(g.to_string()),
        Err(m) => {
            errs.push(YamlError::at(file, raw.referenced, format!("{what}: gate `{}` {m}", raw.value.escape_default())));
            None
        }
    }
}

/// What to say about a name that is no task of the file: the closest task name while
/// `suggestions_left` lasts (comparing with every name is quadratic over thousands of typos).
pub(super) fn unknown_task_hint(name: &str, index: &HashMap<&str, usize>, suggestions_left: &mut usize) -> String {
    unknown_name_hint(name, index, suggestions_left, "task")
}

/// [`unknown_task_hint`] for names of `what` (tasks, stages).
pub(super) fn unknown_name_hint(name: &str, index: &HashMap<&str, usize>, suggestions_left: &mut usize, what: &str) -> String {
    let suggestion = if *suggestions_left > 0 {
        *suggestions_left -= 1;
        closest(name, index.keys().copied())
    } else {
        None
    };
    match suggestion {
        Some(s) => format!("did you mean `{s}`?"),
        None => format!("name a {what} defined in this file"),
    }
}

/// One task's `on_success` and `on_failure` lists, as written.
#[derive(Default)]
pub(super) struct Edges {
    pub on_success: Vec<Sp<String>>,
    pub on_failure: Vec<Sp<String>>,
}

/// Resolves every task's `on_success`/`on_failure` names into conditions on the named tasks
/// (indexed like `names`). Unknown names (with a suggestion while `suggestions_left` lasts),
/// a task naming itself, a name listed twice and a task named in both lists of one task are
/// errors.
pub(super) fn conditions(
    names: &[&str],
    edges: &[Edges],
    index: &HashMap<&str, usize>,
    file: &str,
    suggestions_left: &mut usize,
    errs: &mut Vec<YamlError>,
) -> Vec<Vec<Condition>> {
    let mut out: Vec<Vec<Condition>> = vec![Vec::new(); names.len()];
    for (i, e) in edges.iter().enumerate() {
        let mut seen: Vec<(usize, When)> = Vec::new();
        for (key, list, when) in [("on_success", &e.on_success, When::Succeeded), ("on_failure", &e.on_failure, When::Failed)] {
            for target in list {
                let what = format!("task `{}`", names[i]);
                let Some(&j) = index.get(target.value.as_str()) else {
                    let hint = unknown_task_hint(&target.value, index, suggestions_left);
                    errs.push(YamlError::at(
                        file,
                        target.referenced,
                        format!("{what}: `{key}` names unknown task `{}`; {hint}", target.value),
                    ));
                    continue;
                };
                if j == i {
                    errs.push(YamlError::at(file, target.referenced, format!("{what} names itself in `{key}`; remove `{}`", target.value)));
                    continue;
                }
                if let Some(&(_, w)) = seen.iter().find(|(t, _)| *t == j) {
                    let msg = if w == when {
                        format!("{what} lists `{}` twice in `{key}`; remove one", target.value)
                    } else {
                        format!(
                            "{what} names `{}` in both `on_success` and `on_failure`, so it could never run; keep it in one of them",
                            target.value
                        )
                    };
                    errs.push(YamlError::at(file, target.referenced, msg));
                    continue;
                }
                seen.push((j, when));
                out[j].push(Condition { on: i as u32, when });
            }
        }
    }
    out
}
