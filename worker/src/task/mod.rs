//! Running one task: its command, then the agent with the command's output on stdin, all
//! within the task's timeout; the outcome becomes a [`TaskResult`](zo_common::model::TaskResult).
//! Where each step runs is the context's [`Runner`] for it (`context.rs`), how it runs
//! `steps.rs` (`simulated.rs` for the simulated ones), how the agent's answer reads
//! `judge.rs`.

mod context;
mod judge;
mod simulated;
mod steps;

pub use context::{Runner, TaskContext};
pub use judge::judge_agent;
pub(crate) use steps::cd_prefix;
pub use steps::{agent_script, LONG_PROMPT};

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use zo_common::model::{CommandOutcome, ErrorClass, Outcome, Status};
use zo_common::store::Job;

use crate::exec::run::OutputSink;
use crate::exec::ExecError;
use judge::{last_lines, text};

fn exec_error(e: ExecError) -> Outcome {
    match e {
        ExecError::Network(m) => Outcome::fail(ErrorClass::Network, m),
        ExecError::Config(m) => Outcome::fail(ErrorClass::Config, m),
    }
}

/// Runs a task to its outcome, then its result checks (`expect:`, `gate:`) over a successful
/// output: an unmet check fails it with class `validation` or `gate` (its output kept).
/// Never panics on bad input; every failure is classified. The steps' output goes to `sink`
/// as it arrives.
pub async fn execute(ctx: &TaskContext, job: &Job, cancel: &CancellationToken, sink: &dyn OutputSink) -> Outcome {
    let mut o = run_steps(ctx, job, cancel, sink).await;
    if o.status == Status::Success {
        let spec = &job.spec;
        if let Err((class, why)) = zo_common::checks::check_output(spec.expect.as_deref(), spec.gate.as_deref(), &o.output) {
            o.status = Status::Failed;
            o.error_class = Some(class);
            o.error = Some(why);
        }
    }
    o
}

/// The command, then the agent fed its stdout.
async fn run_steps(ctx: &TaskContext, job: &Job, cancel: &CancellationToken, sink: &dyn OutputSink) -> Outcome {
    let spec = &job.spec;
    let timeout = spec.timeout();
    let deadline = Instant::now() + timeout;
    let sim = spec.simulate.clone().unwrap_or_default();

    // 1. The command.
    let mut command: Option<CommandOutcome> = None;
    if let Some(cmd) = &spec.command {
        let run = match ctx.command.run_command(ctx, cmd, &sim, spec.prompt.is_none(), deadline, cancel, sink).await {
            Ok(r) => r,
            Err(e) => return exec_error(e),
        };
        let outcome = CommandOutcome {
            stdout: text(&run.stdout),
            stderr: text(&run.stderr),
            exit_code: run.exit_code,
            duration_ms: run.duration.as_millis() as u64,
            truncated: run.truncated,
        };
        if run.timed_out {
            let mut o = Outcome::fail(
                ErrorClass::Timeout,
                format!("timed out after {} while running the command; its processes were killed", humantime::format_duration(timeout)),
            );
            o.command = Some(outcome);
            return o;
        }
        if run.cancelled {
            let mut o = Outcome::fail(ErrorClass::Cancelled, "cancelled while running the command".into());
            o.command = Some(outcome);
            return o;
        }
        if run.exit_code != Some(0) {
            let how = match run.exit_code {
                Some(c) => format!("exited with code {c}"),
                None => "was killed by a signal".to_string(),
            };
            let tail = last_lines(&outcome.stderr, 5);
            let mut o = Outcome::fail(
                ErrorClass::Command,
                if tail.is_empty() { format!("command {how}") } else { format!("command {how}: {tail}") },
            );
            o.exit_code = run.exit_code;
            o.output = outcome.stdout.clone();
            o.command = Some(outcome);
            return o;
        }
        command = Some(outcome);
    }

    // 2. The agent, fed the command's stdout.
    let Some(prompt) = &spec.prompt else {
        let c = command.expect("a task has a command or a prompt");
        return Outcome {
            status: Status::Success,
            error_class: None,
            error: None,
            output: c.stdout.clone(),
            exit_code: c.exit_code,
            command: Some(c),
            agent: None,
        };
    };
    let input = command.as_ref().map(|c| c.stdout.as_bytes().to_vec()).unwrap_or_default();
    let run = match ctx.agent.run_agent(ctx, job, prompt, &input, &sim, deadline, cancel, sink).await {
        Ok(r) => r,
        Err(e) => {
            let mut o = exec_error(e);
            o.command = command;
            return o;
        }
    };
    let mut o = judge_agent(&run, timeout);
    o.exit_code = command.as_ref().and_then(|c| c.exit_code).or(o.exit_code);
    o.command = command;
    o
}
