//! Task files and specs for tests: simulated tasks, and specs and results for tests that
//! drive the run scripts directly.

/// A result of `status` for `attempt`, as a worker records it (for tests that drive the
/// scripts directly).
pub fn script_result(attempt: u32, status: zo_common::model::Status) -> zo_common::model::TaskResult {
    zo_common::model::TaskResult {
        outcome: zo_common::model::Outcome {
            status,
            error_class: None,
            error: None,
            output: String::new(),
            exit_code: Some(0),
            command: None,
            agent: None,
        },
        attempt,
        worker: "test".into(),
        started_ms: 0,
        finished_ms: 0,
        queue_wait_ms: 0,
        reclaimed: false,
        cost_nanos: None,
        rate_wait_ms: 0,
    }
}

/// Task `name` on instance `fast` (command `true`, 1 s timeout), depending on `deps`.
pub fn true_task(name: impl Into<String>, deps: Vec<u32>) -> zo_common::model::TaskSpec {
    zo_common::model::TaskSpec { command: Some("true".into()), timeout_ms: 1000, deps, ..zo_common::model::TaskSpec::new(name, "fast") }
}

/// A task file of `n` simulated tasks (`t0`, `t1`, …) of `duration` each on instance `fast`.
pub fn simulated_tasks(n: usize, duration: &str) -> String {
    let mut yaml = String::from("tasks:\n");
    for i in 0..n {
        yaml.push_str(&format!("  - {{ name: t{i}, ccr_instance: fast, prompt: \"p\", simulate: {{ duration: {duration} }} }}\n"));
    }
    yaml
}
