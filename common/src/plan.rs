//! The printed execution plan: dependency layers ("batches") of a validated task file.
//!
//! Batches are what the seed executed one after another. We print them as the plan, but
//! the queue does not wait for a batch to end: a task is released the moment its last
//! dependency succeeds.

use std::fmt::Write as _;

use crate::catalog::Catalog;
use crate::graph;
use crate::model::When;
use crate::taskfile::TaskFile;

/// The dependency layers of a file's tasks.
pub fn batches(file: &TaskFile) -> Vec<Vec<usize>> {
    graph::layers(&file.parents())
}

/// The seed's execution plan, as text.
pub fn render(file: &TaskFile, catalog: &Catalog) -> String {
    let b = batches(file);
    let mut s = String::new();
    let title = file.name.as_deref().unwrap_or(&file.path);
    let _ = writeln!(s, "Execution plan: {title}");
    let _ = writeln!(s, "Total tasks: {}   Batches: {}", file.tasks.len(), b.len());
    if !file.stages.is_empty() {
        let stages: Vec<String> = file
            .stages
            .iter()
            .map(|st| {
                let after: Vec<&str> = st.requires.iter().map(|&r| file.stages[r].name.as_str()).collect();
                let mut d = st.name.clone();
                if !after.is_empty() {
                    d.push_str(&format!(" (after {})", after.join(", ")));
                }
                if st.approval_required {
                    d.push_str(" [approval required]");
                }
                d
            })
            .collect();
        let _ = writeln!(s, "Stages: {}", stages.join(" · "));
    }
    for (n, batch) in b.iter().enumerate() {
        let _ = writeln!(
            s,
            "\nBatch {} ({} task{}{}):",
            n + 1,
            batch.len(),
            if batch.len() == 1 { "" } else { "s" },
            if batch.len() > 1 { " in parallel" } else { "" }
        );
        for &i in batch {
            let t = &file.tasks[i];
            let model = catalog.get(&t.instance).map(|c| c.model.as_str()).unwrap_or("?");
            let kind = match (&t.command, &t.prompt) {
                (Some(_), Some(_)) => "command | agent",
                (Some(_), None) => "command",
                _ => "agent",
            };
            let _ = write!(s, "  - {} [{} · {}] timeout {} · {}", t.name, t.instance, model, humantime::format_duration(t.timeout()), kind);
            if !t.deps.is_empty() {
                let deps: Vec<&str> = t.deps.iter().map(|&d| file.tasks[d as usize].name.as_str()).collect();
                let _ = write!(s, " · after {}", deps.join(", "));
            }
            if let Some(st) = &t.stage {
                let _ = write!(s, " · stage {st}{}", if t.needs_approval { " (waits for approval)" } else { "" });
            }
            if !t.trigger_rule.is_default() {
                let _ = write!(s, " · when {}", t.trigger_rule.as_str());
            }
            for c in &t.conditions {
                let how = match c.when {
                    When::Succeeded => "succeeded",
                    When::Failed => "failed",
                };
                let _ = write!(s, " · only if {} {how}", file.tasks[c.on as usize].name);
            }
            s.push('\n');
        }
    }
    let _ = writeln!(s, "\nValidation: PASSED");
    // The title and descriptions come from the file: no live control character.
    crate::text::escape_controls(&s).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_batches_follow_dependencies() {
        let f = crate::taskfile::parse("tasks:\n  - {name: A, ccr_instance: fast, command: ls}\n  - {name: B, ccr_instance: fast, command: ls, dependencies: [A]}\n  - {name: C, ccr_instance: fast, command: ls, dependencies: [A]}\n  - {name: D, ccr_instance: fast, command: ls, dependencies: [B, C]}\n", "t.yaml", &Catalog::builtin()).unwrap();
        assert_eq!(batches(&f), vec![vec![0], vec![1, 2], vec![3]]);
        let text = render(&f, &Catalog::builtin());
        assert!(text.contains("Batch 2 (2 tasks in parallel):"), "{text}");
        assert!(text.contains("  - D [fast · Grok (xAI)] timeout 5m · command · after B, C"), "{text}");
    }

    #[test]
    fn the_seeds_pipeline_is_flattened_into_stages() {
        let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../tasks/examples/pipeline.yaml")).unwrap();
        let f = crate::taskfile::parse(&text, "pipeline.yaml", &Catalog::builtin()).unwrap();
        assert_eq!(f.name.as_deref(), Some("Code Analysis Pipeline"));
        assert_eq!(batches(&f), vec![vec![0], vec![1], vec![2]]);
        assert_eq!(f.tasks[2].deps, vec![1], "every task of a stage depends on every task of the stages it requires");
        assert_eq!((f.tasks[2].stage.as_deref(), f.tasks[2].needs_approval), (Some("Production"), true));
        assert_eq!(f.tasks[0].gate.as_deref(), Some("quality_score > 8.0"));
        let text = render(&f, &Catalog::builtin());
        assert!(
            text.contains("Stages: Development · Testing (after Development) · Production (after Testing) [approval required]"),
            "{text}"
        );
        assert!(text.contains("· after Run Tests · stage Production (waits for approval)"), "{text}");
    }

    #[test]
    fn plan_shows_rules_and_conditions() {
        let f = crate::taskfile::parse(
            "tasks:\n  - {name: Check, ccr_instance: fast, command: ls, on_success: [Deploy], on_failure: [Fix]}\n  - {name: Deploy, ccr_instance: fast, command: ls}\n  - {name: Fix, ccr_instance: fast, command: ls}\n  - {name: Report, ccr_instance: fast, command: ls, dependencies: [Deploy, Fix], trigger_rule: one_success}\n",
            "t.yaml",
            &Catalog::builtin(),
        )
        .unwrap();
        assert_eq!(batches(&f), vec![vec![0], vec![1, 2], vec![3]], "on_success/on_failure edges order the plan");
        let text = render(&f, &Catalog::builtin());
        assert!(text.contains("  - Deploy [fast · Grok (xAI)] timeout 5m · command · only if Check succeeded\n"), "{text}");
        assert!(text.contains("  - Fix [fast · Grok (xAI)] timeout 5m · command · only if Check failed\n"), "{text}");
        assert!(text.contains("· after Deploy, Fix · when one_success\n"), "{text}");
    }
}
