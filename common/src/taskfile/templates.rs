//! The `${{ … }}` templates of a file's tasks, checked once every task's dependencies are
//! known: each reference must name a direct dependency (see [`crate::template`]); what they
//! read becomes the task's `inputs`. Errors point at the `${{` in the file.

use std::collections::HashMap;

use crate::model::{Input, TaskSpec};
use crate::template::{self, Scope};
use crate::yaml::{Pos, YamlError};

/// Where a task's template fields start in the file (only tasks with a template have one),
/// in the order of `template::fields_of`.
#[derive(Default)]
pub(super) struct TemplateFields(HashMap<usize, [Option<Pos>; 3]>);

impl TemplateFields {
    /// Notes where task `i`'s `command`, `prompt` and `simulate.output` start, when any of
    /// them is a template.
    pub fn note(&mut self, i: usize, fields: [Option<(&str, Pos)>; 3]) {
        let at = fields.map(|f| f.filter(|(t, _)| template::is_template(t)).map(|(_, p)| p));
        if at.iter().any(Option::is_some) {
            self.0.insert(i, at);
        }
    }
}

/// Checks every template and fills in the tasks' `inputs`.
pub(super) fn check(specs: &mut [TaskSpec], fields: &TemplateFields, src: &str, file: &str, errs: &mut Vec<YamlError>) {
    if fields.0.is_empty() {
        return;
    }
    let mut lines = LineIndex::default();
    let mut found: Vec<(usize, Vec<Input>)> = Vec::with_capacity(fields.0.len());
    {
        let all: HashMap<&str, usize> = specs.iter().enumerate().map(|(i, s)| (s.name.as_str(), i)).collect();
        let mut order: Vec<_> = fields.0.iter().collect();
        order.sort_by_key(|(i, _)| **i);
        for (&i, at) in order {
            let spec = &specs[i];
            let deps: HashMap<&str, u32> = spec.parents().map(|p| (specs[p as usize].name.as_str(), p)).collect();
            let scope = Scope { task: &spec.name, deps: &deps, all: &all };
            let mut reads = template::Reads::default();
            for ((field, text), pos) in template::fields_of(spec).into_iter().zip(*at) {
                let (Some(text), Some(pos)) = (text, pos) else { continue };
                match template::check(text, field, &scope) {
                    Ok(r) => reads.merge(r),
                    Err(es) => {
                        for e in es {
                            let p = lines.locate(src, pos, text, e.offset);
                            errs.push(YamlError::at(file, p, format!("task `{}`: `{}`: {}", spec.name, field.as_str(), e.message)));
                        }
                    }
                }
            }
            let inputs = reads.deps.into_iter().map(|(name, json)| Input { task: deps[name.as_str()], name, json }).collect();
            found.push((i, inputs));
        }
    }
    for (i, inputs) in found {
        specs[i].inputs = inputs;
    }
}

/// Byte offsets of line starts, built on first use (only when a template has an error).
#[derive(Default)]
struct LineIndex(Vec<usize>);

impl LineIndex {
    fn offset_of(&mut self, src: &str, p: Pos) -> Option<usize> {
        if self.0.is_empty() {
            self.0.push(0);
            self.0.extend(src.match_indices('\n').map(|(i, _)| i + 1));
        }
        let start = *self.0.get((p.line as usize).checked_sub(1)?)?;
        let line = &src[start..];
        let col = (p.col as usize).saturating_sub(1);
        Some(start + line.char_indices().nth(col).map(|(b, _)| b).unwrap_or(line.len()))
    }

    fn pos_of(&mut self, src: &str, offset: usize) -> Pos {
        if self.0.is_empty() {
            self.offset_of(src, Pos { line: 1, col: 1 });
        }
        let line = self.0.partition_point(|&s| s <= offset).max(1);
        let start = self.0[line - 1];
        Pos { line: line as u64, col: src[start..offset].chars().count() as u64 + 1 }
    }

    /// Where byte `offset` of a field's value (which starts at `field` in the file) was
    /// written: the `${{` before it is found by count among the `${{` after the field's start,
    /// the rest of its line added. Falls back to the field's start (e.g. an escaped `$`).
    fn locate(&mut self, src: &str, field: Pos, value: &str, offset: usize) -> Pos {
        let offset = offset.min(value.len());
        let Some(open) = value[..(offset + template::OPEN.len()).min(value.len())].rfind(template::OPEN) else { return field };
        let nth = value[..open].matches(template::OPEN).count();
        let Some(from) = self.offset_of(src, field) else { return field };
        let Some((at, _)) = src[from..].match_indices(template::OPEN).nth(nth) else { return field };
        let mut p = self.pos_of(src, from + at);
        let rest = &value[open..offset];
        if !rest.contains('\n') {
            p.col += rest.chars().count() as u64;
        }
        p
    }
}
