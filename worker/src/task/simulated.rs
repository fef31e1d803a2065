//! The simulated steps: no process, no host. A command answers `[simulated] $ CMD` (or the
//! task's `simulate.output` when it has no prompt), an agent a JSON answer like Claude
//! Code's; each takes the `simulate:` duration, within the deadline and cancel.

use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use zo_common::model::Simulate;

use super::context::TaskContext;
use crate::exec::run::RunOutput;

/// Waits `d` (bounded by the deadline and cancel); returns false when interrupted.
async fn pause(d: Duration, deadline: Instant, cancel: &CancellationToken) -> (bool, bool) {
    if d.is_zero() {
        return (false, cancel.is_cancelled());
    }
    tokio::select! {
        _ = tokio::time::sleep(d) => (false, false),
        _ = tokio::time::sleep_until(deadline) => (true, false),
        _ = cancel.cancelled() => (false, true),
    }
}

/// A simulated command. `takes_duration`: the task has no prompt, so the command is its
/// only step and takes the `simulate:` duration and answers its `output`.
pub(super) async fn command(cmd: &str, sim: &Simulate, takes_duration: bool, deadline: Instant, cancel: &CancellationToken) -> RunOutput {
    let started = Instant::now();
    let (timed_out, cancelled) =
        if takes_duration { pause(Duration::from_millis(sim.duration_ms), deadline, cancel).await } else { (false, false) };
    RunOutput {
        // A task without a prompt answers with its command's output: `simulate.output` then.
        stdout: match (&sim.output, takes_duration) {
            (Some(o), true) => o.clone().into_bytes(),
            _ => format!("[simulated] $ {cmd}\n").into_bytes(),
        },
        stderr: Vec::new(),
        exit_code: if timed_out || cancelled { None } else { Some(sim.exit_code) },
        truncated: false,
        timed_out,
        cancelled,
        duration: started.elapsed(),
    }
}

/// A simulated agent: its answer as Claude Code prints one (`simulate.output`, or a line
/// naming the instance, its model and the prompt), failing when `simulate.fail`.
pub(super) async fn agent(
    ctx: &TaskContext,
    spec: &zo_common::model::TaskSpec,
    prompt: &str,
    input: &[u8],
    sim: &Simulate,
    deadline: Instant,
    cancel: &CancellationToken,
) -> RunOutput {
    let started = Instant::now();
    let (timed_out, cancelled) = pause(Duration::from_millis(sim.duration_ms), deadline, cancel).await;
    let model = ctx.catalog.get(&spec.instance).map(|i| i.model.as_str()).unwrap_or("?");
    let answer = match &sim.output {
        Some(o) => o.clone(),
        None => {
            let p: String = prompt.chars().take(80).collect();
            format!(
                "[simulated answer from {} · {model}] {p}{} (input: {} bytes)",
                spec.instance,
                if prompt.chars().count() > 80 { "…" } else { "" },
                input.len()
            )
        }
    };
    let doc = serde_json::json!({
        "type": "result",
        "subtype": "success",
        "is_error": sim.fail,
        "result": if sim.fail { format!("simulated failure: {answer}") } else { answer.clone() },
        "num_turns": 1,
        "usage": { "input_tokens": (prompt.len() + input.len()).div_ceil(4), "output_tokens": answer.len().div_ceil(4) },
    });
    RunOutput {
        stdout: doc.to_string().into_bytes(),
        stderr: Vec::new(),
        exit_code: Some(if sim.fail { 1 } else { 0 }),
        truncated: false,
        timed_out,
        cancelled,
        duration: started.elapsed(),
    }
}
