//! How each step of a task runs, on the execution host or simulated: the command (after the
//! task environment and working directory) and the agent (pointed at the task's CCR instance,
//! its prompt never on a command line).

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use zo_common::model::Simulate;
use zo_common::store::Job;

use super::context::{Runner, TaskContext};
use super::simulated;
use crate::exec::run::{run_script, OutputSink, RunOutput, Stream};
use crate::exec::{shell_quote, ExecError};

impl Runner {
    /// Runs the task's command until it ends, `deadline` passes or `cancel` fires. `alone`:
    /// the task has no prompt (a simulated command then takes the `simulate:` duration and
    /// answers its `output`).
    #[allow(clippy::too_many_arguments)]
    pub async fn run_command(
        &self,
        ctx: &TaskContext,
        cmd: &str,
        sim: &Simulate,
        alone: bool,
        deadline: Instant,
        cancel: &CancellationToken,
        sink: &dyn OutputSink,
    ) -> Result<RunOutput, ExecError> {
        match self {
            Runner::Host(ex) => {
                let script = format!("{}{cmd}", step_prelude(ctx));
                run_script(ex.as_ref(), &script, None, &[], deadline, cancel, ctx.max_output, sink).await
            }
            Runner::Simulated => Ok(told(sink, simulated::command(cmd, sim, alone, deadline, cancel).await)),
        }
    }

    /// Runs the task's agent with `prompt`, fed `input` (the command's output) on stdin.
    #[allow(clippy::too_many_arguments)]
    pub async fn run_agent(
        &self,
        ctx: &TaskContext,
        job: &Job,
        prompt: &str,
        input: &[u8],
        sim: &Simulate,
        deadline: Instant,
        cancel: &CancellationToken,
        sink: &dyn OutputSink,
    ) -> Result<RunOutput, ExecError> {
        match self {
            Runner::Host(ex) => {
                let port = ex.agent_port(&job.spec.instance).await?;
                let script = agent_script(ctx, job, prompt, port);
                run_script(ex.as_ref(), &script, Some(prompt), input, deadline, cancel, ctx.max_output, sink).await
            }
            Runner::Simulated => Ok(told(sink, simulated::agent(ctx, &job.spec, prompt, input, sim, deadline, cancel).await)),
        }
    }
}

/// A simulated step's output, given to the sink as one chunk per stream.
fn told(sink: &dyn OutputSink, run: RunOutput) -> RunOutput {
    if !run.stdout.is_empty() {
        sink.chunk(Stream::Stdout, &run.stdout);
    }
    if !run.stderr.is_empty() {
        sink.chunk(Stream::Stderr, &run.stderr);
    }
    run
}

/// What every step's script starts with: the task environment from `executor.env` and
/// `executor.pass_env`, then the working directory.
pub(super) fn step_prelude(ctx: &TaskContext) -> String {
    let mut s = String::new();
    for (k, v) in &ctx.task_env {
        s.push_str(&format!("export {k}={}\n", shell_quote(v)));
    }
    s.push_str(&cd_prefix(ctx.workdir.as_deref()));
    s
}

pub(crate) fn cd_prefix(workdir: Option<&str>) -> String {
    match workdir {
        None => String::new(),
        Some(d) => format!("cd -- {q} || {{ echo \"zo: cannot enter working directory \"{q} >&2; exit 96; }}\n", q = shell_quote(d)),
    }
}

/// Prompts longer than this (bytes) reach the agent on stdin instead of as its last argument
/// (one argument is limited to 128 KiB on Linux).
pub const LONG_PROMPT: usize = 100 * 1024;

/// The agent step's script: environment pointing at the task's CCR instance, then the agent
/// command with the prompt (from `$ZO_PROMPT`, never from the command line) as last argument.
pub fn agent_script(ctx: &TaskContext, job: &Job, prompt: &str, tunnel_port: Option<u16>) -> String {
    let spec = &job.spec;
    let url = match tunnel_port {
        Some(p) => format!("http://127.0.0.1:{p}"),
        None => {
            let port = ctx.catalog.get(&spec.instance).map(|i| i.port).unwrap_or(0);
            ctx.base_url.replace("{port}", &port.to_string()).replace("{instance}", &spec.instance)
        }
    };
    let mut s = step_prelude(ctx);
    s.push_str(&format!("export ANTHROPIC_BASE_URL={}\n", shell_quote(&url)));
    let key = ctx.instance_keys.get(&spec.instance).cloned().or_else(|| ctx.api_key.clone()).unwrap_or_else(|| "zo-worker".into());
    s.push_str(&format!("export ANTHROPIC_API_KEY={}\n", shell_quote(&key)));
    s.push_str("export CLAUDE_CODE_MAX_RETRIES=\"${CLAUDE_CODE_MAX_RETRIES:-2}\"\n");
    // The agent's own request timeout never outlives the task.
    s.push_str(&format!("export API_TIMEOUT_MS={}\n", spec.timeout_ms));
    s.push_str(&format!(
        "export ZO_TASK={} ZO_INSTANCE={} ZO_RUN={}\n",
        shell_quote(&spec.name),
        shell_quote(&spec.instance),
        shell_quote(&job.run_id)
    ));
    for (k, v) in &ctx.agent_env {
        s.push_str(&format!("export {k}={}\n", shell_quote(v)));
    }
    // The prompt: in `ZO_PROMPT`, or in a private file when long (read by a builtin, removed).
    s.push_str("zo_prompt=${ZO_PROMPT-}\n");
    s.push_str(
        "if [ -n \"${ZO_PROMPT_FILE:-}\" ]; then IFS= read -r -d \"\" zo_prompt < \"$ZO_PROMPT_FILE\"; rm -f -- \"$ZO_PROMPT_FILE\"; fi\n",
    );
    s.push_str("unset ZO_PROMPT ZO_PROMPT_FILE\n");
    if prompt.len() > LONG_PROMPT {
        // Too long for one argument: the agent reads it from stdin, ahead of the command's
        // output (`claude -p` without a prompt argument takes stdin as the prompt).
        s.push_str(&format!("exec {} < <(printf '%s\\n\\n' \"$zo_prompt\"; exec cat)\n", ctx.agent_command));
    } else {
        // A prompt that starts with '-' would read as an option.
        let sep = if prompt.starts_with('-') { " --" } else { "" };
        s.push_str(&format!("exec {}{sep} \"$zo_prompt\"\n", ctx.agent_command));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::WorkerConfig;
    use zo_common::catalog::Catalog;

    #[test]
    fn agent_script_never_embeds_the_prompt() {
        let cfg: WorkerConfig = zo_common::yaml::from_str("executor: {kind: local}\ninstances: [{name: fast}]\n", "w").unwrap();
        let ctx = TaskContext::new(&cfg, Catalog::builtin(), None, None);
        let spec = zo_common::model::TaskSpec {
            prompt: Some("-$(x)".into()),
            timeout_ms: 1000,
            ..zo_common::model::TaskSpec::new("it's", "fast")
        };
        let job = Job { run_id: "R".into(), idx: 0, attempt: 1, spec };
        let s = agent_script(&ctx, &job, "-$(x)", None);
        assert!(!s.contains("$(x)"), "{s}");
        assert!(s.contains("export ANTHROPIC_BASE_URL='http://127.0.0.1:3457'"), "{s}");
        assert!(s.ends_with("exec claude -p --output-format json -- \"$zo_prompt\"\n"), "{s}");
    }
}
