//! Task files: the seed's YAML schema under `tasks:`, parsed strictly and validated as a whole.
//!
//! Parsing keeps the position of every value (`Spanned`), so that each error names
//! `file:line:col` and says what to change. Validation covers: unknown keys, missing
//! name/instance, unknown instances, neither `command` nor `prompt`, timeouts outside
//! 1 s – 24 h, duplicate names, unknown or repeated dependencies and dependency cycles.

use std::path::Path;

use crate::catalog::Catalog;
use crate::yaml;

mod across;
mod durations;
mod lenient;
mod limits;
mod parsed;
mod partial;
mod pipeline;
mod raw;
mod split;
mod task;
mod templates;
mod validate;
mod workflow;

pub use pipeline::Stage;

use raw::{RawFile, RawTask, Sp};

pub use durations::{DEFAULT_TIMEOUT, MAX_TIMEOUT, MIN_TIMEOUT};
pub use parsed::{TaskFile, TaskFileError};

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

/// Reads (a regular file of at most `max_bytes`) and validates a task file.
pub fn load(path: &Path, catalog: &Catalog, max_bytes: u64) -> Result<TaskFile, TaskFileError> {
    let text = yaml::read_file(path, max_bytes).map_err(|e| TaskFileError(vec![e]))?;
    parse(&text, &path.display().to_string(), catalog)
}

/// Parses and validates task-file text; `file` is the name used in messages.
pub fn parse(text: &str, file: &str, catalog: &Catalog) -> Result<TaskFile, TaskFileError> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()).min(8);
    let raw = match split::split(text, cores).and_then(|s| parse_split(&s, file)) {
        Some(raw) => raw,
        None => match yaml::from_str::<RawFile>(text, file) {
            Ok(raw) => raw,
            // serde stops at the first structural problem: look again for all of them.
            Err(first) => {
                let mut all = lenient::problems(text, file);
                if all.is_empty() {
                    return Err(TaskFileError(vec![first]));
                }
                // The rest of the problems in the same report, when the structural ones can
                // be set aside (see `partial`).
                let rest = partial::without_unknown_keys(text, &all)
                    .and_then(|set| yaml::from_str::<RawFile>(&set.text, file).ok().map(|raw| (raw, set)));
                if let Some((raw, set)) = rest {
                    if let Err(more) = validate::validate(raw, &set.text, file, catalog) {
                        all.extend(more.0.into_iter().filter(|e| !set.echoes(e)));
                        all.sort_by_key(|e| e.pos);
                    }
                }
                return Err(TaskFileError(all));
            }
        },
    };
    validate::validate(raw, text, file, catalog)
}

#[cfg(test)]
mod tests;
