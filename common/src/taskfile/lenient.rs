//! The second look at a task file that serde refused: serde stops at the first structural
//! problem (an unknown key, a list where text belongs, a bad `priority`), so the file is read
//! again loosely — every value kept as plain data, every task with its position — and checked
//! key by key, so that one run reports every such problem at once. Only files that failed
//! come here; valid files take the fast path.

use serde::Deserialize;
use serde_json::{Map, Value};

use super::durations::duration_of;
use super::durations::{MAX_TIMEOUT, MIN_TIMEOUT};
use super::raw::{RawTimeout, Sp};
use crate::yaml::{self, closest, find_key, Pos, YamlError};

const TOP: [&str; 6] = ["name", "description", "defaults", "tasks", "pipeline", "resource_limits"];
const DEFAULTS: [&str; 3] = ["retry_policy", "priority", "trigger_rule"];
const TASK: [&str; 17] = [
    "name",
    "ccr_instance",
    "command",
    "prompt",
    "timeout",
    "dependencies",
    "tags",
    "description",
    "output_file",
    "simulate",
    "retry_policy",
    "priority",
    "trigger_rule",
    "on_success",
    "on_failure",
    "expect",
    "gate",
];
const EXPECT: [&str; 8] = ["contains", "not_contains", "regex", "not_regex", "min_length", "max_length", "json", "json_schema"];
const TEXT: [&str; 8] = ["name", "ccr_instance", "command", "prompt", "description", "output_file", "trigger_rule", "gate"];
const RETRY: [&str; 6] = ["max_retries", "retry_on", "backoff", "base_delay", "max_delay", "jitter"];
const SIMULATE: [&str; 4] = ["duration", "fail", "exit_code", "output"];

const LIMITS: [&str; 5] = ["max_concurrent_tasks", "max_tasks_per_instance", "models", "budget", "quotas"];
const MODEL: [&str; 6] = ["name", "max_rpm", "max_tpm", "cost_per_1k_tokens", "cost_per_1k_input", "cost_per_1k_output"];
const BUDGET: [&str; 2] = ["max_cost_per_workflow", "alert_threshold"];
const QUOTAS: [&str; 4] = ["max_cpu_percent", "max_memory_gb", "max_disk_gb", "quota_wait"];

const PIPELINE: [&str; 3] = ["name", "description", "stages"];
const STAGE: [&str; 5] = ["name", "description", "requires", "approval_required", "tasks"];

#[derive(Deserialize)]
struct LooseTasks {
    #[serde(default)]
    tasks: Option<Vec<Sp<Value>>>,
}

#[derive(Deserialize)]
struct LoosePipelineFile {
    pipeline: Option<LoosePipeline>,
}

#[derive(Deserialize)]
struct LoosePipeline {
    #[serde(default)]
    stages: Option<Vec<Sp<LooseStage>>>,
    #[serde(flatten)]
    rest: Map<String, Value>,
}

#[derive(Deserialize)]
struct LooseStage {
    #[serde(default)]
    tasks: Option<Vec<Sp<Value>>>,
    #[serde(flatten)]
    rest: Map<String, Value>,
}

/// Every structural problem found, sorted by position; empty when the loose reading finds
/// none (then the strict parser's message stands).
pub(super) fn problems(text: &str, file: &str) -> Vec<YamlError> {
    let Ok(top) = yaml::from_str::<Map<String, Value>>(text, file) else { return Vec::new() };
    let mut errs = Vec::new();
    let start = Pos { line: 1, col: 1 };
    let at = |from: Pos, key: &str| find_key(text, from, key).unwrap_or(from);
    unknown_keys(&top, &TOP, "", file, start, &at, &mut errs);
    for key in ["name", "description"] {
        if top.get(key).is_some_and(|v| v.is_array() || v.is_object()) {
            errs.push(YamlError::at(file, at(start, key), format!("`{key}` must be text, not a list or a mapping")));
        }
    }
    if let Some(d) = top.get("defaults") {
        let pos = at(start, "defaults");
        match d.as_object() {
            Some(m) => {
                unknown_keys(m, &DEFAULTS, "defaults: ", file, pos, &at, &mut errs);
                check_priority(m.get("priority"), "defaults", file, at(pos, "priority"), &mut errs);
                check_retry(m.get("retry_policy"), "defaults", file, at(pos, "retry_policy"), &at, &mut errs);
            }
            None if d.is_null() => {}
            None => errs.push(YamlError::at(file, pos, "`defaults` must be a mapping of `key: value` pairs")),
        }
    }
    match top.get("tasks") {
        Some(Value::Array(_)) => {
            if let Ok(LooseTasks { tasks: Some(tasks) }) = yaml::from_str::<LooseTasks>(text, file) {
                for (i, t) in tasks.iter().enumerate() {
                    check_task(&t.value, i, t.referenced, file, &at, &mut errs);
                }
            }
        }
        Some(Value::Null) | None => {}
        Some(_) => errs.push(YamlError::at(file, at(start, "tasks"), "`tasks` must be a list of tasks (one `- name: …` entry each)")),
    }
    if let Some(l) = top.get("resource_limits") {
        limits_problems(l, file, at(start, "resource_limits"), &at, &mut errs);
    }
    if top.get("pipeline").is_some_and(Value::is_object) {
        pipeline_problems(text, file, at(start, "pipeline"), &at, &mut errs);
    }
    errs.sort_by_key(|e| e.pos);
    errs
}

/// The `pipeline:` form: its keys, each stage's keys, and every task of every stage.
fn pipeline_problems(text: &str, file: &str, pos: Pos, at: &dyn Fn(Pos, &str) -> Pos, errs: &mut Vec<YamlError>) {
    let Ok(LoosePipelineFile { pipeline: Some(p) }) = yaml::from_str::<LoosePipelineFile>(text, file) else { return };
    // `stages` and `tasks` were taken out of `rest`, which holds every other key.
    unknown_keys(&p.rest, &PIPELINE, "pipeline: ", file, pos, at, errs);
    let mut n = 0;
    for stage in p.stages.iter().flatten() {
        let keys = &stage.value.rest;
        let what = match keys.get("name") {
            Some(Value::String(s)) => format!("stage `{s}`: "),
            _ => "stage: ".to_string(),
        };
        unknown_keys(keys, &STAGE, &what, file, stage.referenced, at, errs);
        for t in stage.value.tasks.iter().flatten() {
            check_task(&t.value, n, t.referenced, file, at, errs);
            n += 1;
        }
    }
}

/// `resource_limits:`: its keys and those of its parts; numbers where numbers belong.
fn limits_problems(v: &Value, file: &str, pos: Pos, at: &dyn Fn(Pos, &str) -> Pos, errs: &mut Vec<YamlError>) {
    let Some(m) = v.as_object() else {
        if !v.is_null() {
            errs.push(YamlError::at(
                file,
                pos,
                "`resource_limits` must be a mapping, e.g. `resource_limits: { max_concurrent_tasks: 10 }`",
            ));
        }
        return;
    };
    let numbers = |o: &Map<String, Value>, keys: &[&str], what: &str, from: Pos, errs: &mut Vec<YamlError>| {
        for key in keys {
            if o.get(*key).is_some_and(|x| !x.is_number() && !x.is_null()) {
                errs.push(YamlError::at(file, at(from, key), format!("{what}`{key}` must be a number")));
            }
        }
    };
    unknown_keys(m, &LIMITS, "resource_limits: ", file, pos, at, errs);
    numbers(m, &LIMITS[..2], "resource_limits: ", pos, errs);
    let part = |key: &str, known: &[&str], errs: &mut Vec<YamlError>| {
        let Some(v) = m.get(key).filter(|v| !v.is_null()) else { return };
        let kpos = at(pos, key);
        match v.as_object() {
            Some(o) => {
                let what = format!("resource_limits: {key}: ");
                unknown_keys(o, known, &what, file, kpos, at, errs);
                let nums: Vec<&str> = known.iter().copied().filter(|k| *k != "quota_wait").collect();
                numbers(o, &nums, &what, kpos, errs);
            }
            None => errs.push(YamlError::at(file, kpos, format!("resource_limits: `{key}` must be a mapping of `key: value` pairs"))),
        }
    };
    part("budget", &BUDGET, errs);
    part("quotas", &QUOTAS, errs);
    match m.get("models") {
        None | Some(Value::Null) => {}
        Some(Value::Array(models)) => {
            // Entries have no positions in the loose reading: each is found after the one before.
            let mut from = at(pos, "models");
            for e in models {
                match e.as_object() {
                    Some(o) => {
                        let epos = at(from, "name");
                        let what = match o.get("name") {
                            Some(Value::String(n)) => format!("resource_limits: model `{n}`: "),
                            _ => "resource_limits: models: ".to_string(),
                        };
                        unknown_keys(o, &MODEL, &what, file, epos, at, errs);
                        numbers(o, &MODEL[1..], &what, epos, errs);
                        from = Pos { line: epos.line + 1, col: 1 };
                    }
                    None => errs.push(YamlError::at(
                        file,
                        from,
                        "resource_limits: each `models` entry is a mapping (`- name: smart`, `max_rpm: 50`)",
                    )),
                }
            }
        }
        Some(_) => {
            errs.push(YamlError::at(file, at(pos, "models"), "resource_limits: `models` must be a list (`- name: smart`, `max_rpm: 50`)"))
        }
    }
}

fn unknown_keys(
    map: &Map<String, Value>,
    known: &[&str],
    what: &str,
    file: &str,
    from: Pos,
    at: &dyn Fn(Pos, &str) -> Pos,
    errs: &mut Vec<YamlError>,
) {
    for key in map.keys().filter(|k| !known.contains(&k.as_str())) {
        let hint = match closest(key, known.iter().copied()) {
            Some(s) => format!("did you mean `{s}`?"),
            None => format!("valid keys are: {}", known.join(", ")),
        };
        errs.push(YamlError::at(file, at(from, key), format!("{what}unknown key `{key}`; {hint}")));
    }
}

fn check_task(v: &Value, i: usize, pos: Pos, file: &str, at: &dyn Fn(Pos, &str) -> Pos, errs: &mut Vec<YamlError>) {
    let Some(m) = v.as_object() else {
        errs.push(YamlError::at(file, pos, format!("task #{} must be a mapping (`name: …`, `ccr_instance: …`, `command: …`)", i + 1)));
        return;
    };
    let name = match m.get("name") {
        Some(Value::String(s)) => format!("task `{s}`"),
        _ => format!("task #{}", i + 1),
    };
    unknown_keys(m, &TASK, "", file, pos, at, errs);
    for key in TEXT {
        if m.get(key).is_some_and(|v| v.is_array() || v.is_object()) {
            errs.push(YamlError::at(file, at(pos, key), format!("{name}: `{key}` must be text, not a list or a mapping")));
        }
    }
    for key in ["dependencies", "tags", "on_success", "on_failure"] {
        match m.get(key) {
            None | Some(Value::Null) => {}
            Some(Value::Array(items)) if items.iter().all(|x| !x.is_array() && !x.is_object()) => {}
            Some(_) => errs.push(YamlError::at(file, at(pos, key), format!("{name}: `{key}` must be a list of names, e.g. `[a, b]`"))),
        }
    }
    if let Some(t) = m.get("timeout") {
        check_duration(t, &format!("{name}: "), file, at(pos, "timeout"), errs);
    }
    check_priority(m.get("priority"), &name, file, at(pos, "priority"), errs);
    check_retry(m.get("retry_policy"), &name, file, at(pos, "retry_policy"), at, errs);
    let block = |key: &str, known: &[&str], shape: &str, errs: &mut Vec<YamlError>| {
        let Some(v) = m.get(key) else { return };
        let kpos = at(pos, key);
        match v.as_object() {
            Some(o) => unknown_keys(o, known, &format!("{name}: {key}: "), file, kpos, at, errs),
            None => errs.push(YamlError::at(file, kpos, format!("{name}: `{key}` must be a mapping{shape}"))),
        }
    };
    block("expect", &EXPECT, ", e.g. `expect: { contains: \"ok\" }`", errs);
    block("simulate", &SIMULATE, " of `key: value` pairs", errs);
}

fn check_priority(v: Option<&Value>, what: &str, file: &str, pos: Pos, errs: &mut Vec<YamlError>) {
    match v {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) if ["high", "medium", "low"].contains(&s.as_str()) => {}
        Some(other) => {
            let shown = other.as_str().map_or_else(|| other.to_string(), str::to_string);
            errs.push(YamlError::at(file, pos, format!("{what}: priority `{shown}` is not a priority; use high, medium or low")));
        }
    }
}

fn check_retry(v: Option<&Value>, what: &str, file: &str, pos: Pos, at: &dyn Fn(Pos, &str) -> Pos, errs: &mut Vec<YamlError>) {
    let Some(v) = v else { return };
    let Some(o) = v.as_object() else {
        errs.push(YamlError::at(file, pos, format!("{what}: `retry_policy` must be a mapping of `key: value` pairs")));
        return;
    };
    unknown_keys(o, &RETRY, &format!("{what}: retry_policy: "), file, pos, at, errs);
    if let Some(b) = o.get("backoff") {
        if !matches!(b.as_str(), Some("exponential" | "fixed")) {
            errs.push(YamlError::at(file, at(pos, "backoff"), format!("{what}: retry_policy: `backoff` is exponential or fixed")));
        }
    }
}

/// A timeout in the task file's forms (seconds, or a duration text), range-checked as the
/// strict validation does (same words).
fn check_duration(v: &Value, what: &str, file: &str, pos: Pos, errs: &mut Vec<YamlError>) {
    let raw = match v {
        Value::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => RawTimeout::Int(i),
            (None, Some(f)) => RawTimeout::Float(f),
            _ => return,
        },
        Value::String(s) => RawTimeout::Text(s.clone()),
        Value::Null => return,
        _ => {
            errs.push(YamlError::at(
                file,
                pos,
                format!("{what}timeout must be seconds (300) or a duration (\"5m\"), not a list or a mapping"),
            ));
            return;
        }
    };
    match duration_of(&raw) {
        Ok(d) if (MIN_TIMEOUT..=MAX_TIMEOUT).contains(&d) => {}
        Ok(d) => errs.push(YamlError::at(file, pos, format!("{what}timeout {} is out of range; use 1s to 24h", crate::text::duration(d)))),
        Err(m) => errs.push(YamlError::at(file, pos, format!("{what}{m}"))),
    }
}
