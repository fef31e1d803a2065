//! The printed execution plan: dependency layers ("batches") of a validated task file.
//!
//! Batches are what the seed executed one after another. We print them as the plan, but
//! the queue does not wait for a batch to end: a task is released the moment its last
//! dependency succeeds.

use std::fmt::Write as _;

use crate::catalog::Catalog;
use crate::estimate::{Estimate, Source, TaskEstimate};
use crate::graph;
use crate::model::{format_usd, Nanos, When};
use crate::taskfile::TaskFile;

/// The dependency layers of a file's tasks.
pub fn batches(file: &TaskFile) -> Vec<Vec<usize>> {
    graph::layers(&file.parents())
}

/// The seed's execution plan, as text.
pub fn render(file: &TaskFile, catalog: &Catalog) -> String {
    render_with(file, catalog, None)
}

/// `~20s`, `~20-24s`, or `≤5m` when only the timeout bounds it.
fn duration_range(e: &TaskEstimate) -> String {
    let s = |ms: u64| format!("{}s", (ms as f64 / 1000.0).round() as u64);
    match e.source {
        Source::Timeout => format!("≤{}", crate::text::duration(std::time::Duration::from_secs(e.high_ms / 1000))),
        _ if (e.high_ms as f64 / 1000.0).round() == (e.low_ms as f64 / 1000.0).round() => format!("~{}", s(e.high_ms)),
        _ => format!("~{}-{}", (e.low_ms as f64 / 1000.0).round() as u64, s(e.high_ms)),
    }
}

fn cost_range((low, high): (Nanos, Nanos)) -> String {
    if format_usd(low) == format_usd(high) {
        format_usd(high)
    } else {
        format!("{} - {}", format_usd(low), format_usd(high))
    }
}

/// The plan with dry-run estimates: the run's duration and cost ranges, and each task's and
/// batch's.
pub fn render_with(file: &TaskFile, catalog: &Catalog, est: Option<&Estimate>) -> String {
    render_at_most(file, catalog, est, usize::MAX)
}

/// The plan as a submission prints it before its live view: every batch, at most
/// `per_batch` tasks of each (then how many more), so a file of thousands of tasks does not
/// flood the terminal.
pub fn render_brief(file: &TaskFile, catalog: &Catalog, per_batch: usize) -> String {
    render_at_most(file, catalog, None, per_batch)
}

fn render_at_most(file: &TaskFile, catalog: &Catalog, est: Option<&Estimate>, per_batch: usize) -> String {
    let b = batches(file);
    let mut s = String::new();
    let title = file.name.as_deref().unwrap_or(&file.path);
    let _ = writeln!(s, "Execution plan: {title}");
    if let Some(d) = &file.description {
        let _ = writeln!(s, "{}", crate::text::escape_line(d.trim()));
    }
    let _ = writeln!(s, "Total tasks: {}   Batches: {}", file.tasks.len(), b.len());
    if let Some(e) = est {
        let _ = writeln!(s, "Estimated Duration: {}-{} seconds", (e.low_ms as f64 / 1000.0).round(), (e.high_ms as f64 / 1000.0).round());
        match e.cost {
            Some(c) if e.first_run_costs > 0 => {
                let _ = writeln!(
                    s,
                    "Estimated Cost: {} ({} of it a first-run estimate: tokens from the prompt's length, no earlier run to go by)",
                    cost_range(c),
                    if e.first_run_costs == 1 { "1 task".to_string() } else { format!("{} tasks", e.first_run_costs) }
                );
            }
            Some(c) => {
                let _ = writeln!(s, "Estimated Cost: {}", cost_range(c));
            }
            None => {
                let _ = writeln!(
                    s,
                    "Estimated Cost: unknown (no task has a price; set cost_per_1k_tokens in resource_limits.models or the catalog)"
                );
            }
        }
        let count = |src: Source| e.tasks.iter().filter(|t| t.source == src).count();
        let _ = writeln!(
            s,
            "Estimates from: {} by earlier runs of the same task, {} by their instance's median, {} by their timeout only",
            count(Source::History),
            count(Source::Instance),
            count(Source::Timeout)
        );
    }
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
        let span = est.map(|e| {
            let high = batch.iter().map(|&i| e.tasks[i].high_ms).max().unwrap_or(0);
            let low = batch.iter().map(|&i| e.tasks[i].low_ms).max().unwrap_or(0);
            let any_timeout = batch.iter().any(|&i| e.tasks[i].source == Source::Timeout);
            let r = TaskEstimate {
                low_ms: low,
                high_ms: high,
                cost: None,
                source: if any_timeout { Source::Timeout } else { Source::History },
                first_run_cost: false,
            };
            format!(" {}", duration_range(&r))
        });
        let _ = writeln!(
            s,
            "\nBatch {} ({} task{}{}):{}",
            n + 1,
            batch.len(),
            if batch.len() == 1 { "" } else { "s" },
            if batch.len() > 1 { " in parallel" } else { "" },
            span.unwrap_or_default()
        );
        for &i in batch.iter().take(per_batch) {
            s.push_str(&task_line(file, catalog, est, i));
            s.push('\n');
        }
        if batch.len() > per_batch {
            let _ = writeln!(s, "  … and {} more (zo-submit plan FILE lists them all)", batch.len() - per_batch);
        }
    }
    let _ = writeln!(s, "\nValidation: PASSED");
    // The title and descriptions come from the file: no live control character.
    crate::text::escape_controls(&s).into_owned()
}

/// One task's line of the plan: instance and model, timeout, what it runs, what it waits
/// for, and its estimate when there is one.
fn task_line(file: &TaskFile, catalog: &Catalog, est: Option<&Estimate>, i: usize) -> String {
    let mut s = String::new();
    let t = &file.tasks[i];
    let model = catalog.get(&t.instance).map(|c| c.model.as_str()).unwrap_or("?");
    let kind = match (&t.command, &t.prompt) {
        (Some(_), Some(_)) => "command | agent",
        (Some(_), None) => "command",
        _ => "agent",
    };
    let _ = write!(s, "  - {} [{} · {}] timeout {} · {}", t.name, t.instance, model, crate::text::duration(t.timeout()), kind);
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
    if let Some(e) = est.map(|e| &e.tasks[i]) {
        let _ = write!(s, " · {}", duration_range(e));
        if let Some(c) = e.cost {
            let _ = write!(s, ", {}{}", cost_range(c), if e.first_run_cost { " first run" } else { "" });
        }
        let _ = write!(s, " ({})", e.source.as_str());
    }
    s
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
        let described = crate::taskfile::parse("description: \"Nightly:\\nreview\"\npipeline:\n  name: P\n  description: ignored\n  stages:\n    - {name: S, description: doc, tasks: [{name: A, ccr_instance: fast, command: ls}]}\n", "t.yaml", &Catalog::builtin()).unwrap();
        assert!(
            render(&described, &Catalog::builtin()).starts_with("Execution plan: P\nNightly:\\nreview\nTotal tasks: 1"),
            "the file's description, one line"
        );
        let brief = render_brief(&f, &Catalog::builtin(), 1);
        assert!(brief.contains("  - B [") && !brief.contains("  - C [") && brief.contains("  … and 1 more"), "{brief}");
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
