//! Running one task: its command, then the agent with the command's output on stdin, all
//! within the task's timeout; the outcome becomes a [`TaskResult`].

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use zo_common::catalog::Catalog;
use zo_common::model::{AgentOutcome, CommandOutcome, ErrorClass, Outcome, Simulate, Status};
use zo_common::store::Job;

use crate::config::{AgentMode, WorkerConfig};
use crate::exec::run::{run_script, OutputSink, RunOutput};
use crate::exec::{shell_quote, ExecError, Executor};

/// Everything a task needs from the worker, shared by all its tasks.
pub struct TaskContext {
    /// `None` with the `simulate` executor.
    pub executor: Option<Arc<dyn Executor>>,
    pub agent_mode: AgentMode,
    pub agent_command: String,
    pub base_url: String,
    pub api_key: Option<String>,
    /// The CCR `APIKEY` of each supervised instance (wins over `api_key`).
    pub instance_keys: std::collections::HashMap<String, String>,
    pub agent_env: Vec<(String, String)>,
    /// `executor.env` and `executor.pass_env`, resolved: every step of every task gets them.
    pub task_env: Vec<(String, String)>,
    pub workdir: Option<String>,
    pub max_output: usize,
    pub catalog: Catalog,
}

impl TaskContext {
    pub fn new(cfg: &WorkerConfig, catalog: Catalog, executor: Option<Arc<dyn Executor>>, api_key: Option<String>) -> Self {
        TaskContext {
            executor,
            agent_mode: cfg.agent.mode,
            agent_command: cfg.agent.command.clone(),
            base_url: cfg.agent.base_url.clone(),
            api_key,
            instance_keys: Default::default(),
            agent_env: cfg.agent.env.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            task_env: Vec::new(),
            workdir: cfg.workdir.clone(),
            max_output: cfg.max_output_bytes,
            catalog,
        }
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

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
        let run = match &ctx.executor {
            None => simulate_command(cmd, &sim, spec.prompt.is_none(), deadline, cancel).await,
            Some(ex) => {
                let script = format!("{}{cmd}", step_prelude(ctx));
                match run_script(ex.as_ref(), &script, None, &[], deadline, cancel, ctx.max_output, sink).await {
                    Ok(r) => r,
                    Err(e) => return exec_error(e),
                }
            }
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
    let run = match (ctx.agent_mode, &ctx.executor) {
        (AgentMode::Simulate, _) | (_, None) => simulate_agent(ctx, spec, prompt, &input, &sim, deadline, cancel).await,
        (AgentMode::Command, Some(ex)) => {
            let port = match ex.agent_port(&spec.instance).await {
                Ok(p) => p,
                Err(e) => {
                    let mut o = exec_error(e);
                    o.command = command;
                    return o;
                }
            };
            let script = agent_script(ctx, job, prompt, port);
            match run_script(ex.as_ref(), &script, Some(prompt), &input, deadline, cancel, ctx.max_output, sink).await {
                Ok(r) => r,
                Err(e) => {
                    let mut o = exec_error(e);
                    o.command = command;
                    return o;
                }
            }
        }
    };
    let mut o = judge_agent(&run, timeout);
    o.exit_code = command.as_ref().and_then(|c| c.exit_code).or(o.exit_code);
    o.command = command;
    o
}

/// What every step's script starts with: the task environment from `executor.env` and
/// `executor.pass_env`, then the working directory.
fn step_prelude(ctx: &TaskContext) -> String {
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

fn last_lines(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(n)..].join(" | ")
}

/// Reads the agent's answer: success only with exit code 0 and `is_error: false`.
pub fn judge_agent(run: &RunOutput, timeout: Duration) -> Outcome {
    let stderr = text(&run.stderr);
    let mut agent = AgentOutcome {
        exit_code: run.exit_code,
        duration_ms: run.duration.as_millis() as u64,
        stderr: stderr.clone(),
        ..Default::default()
    };
    if run.timed_out {
        let mut o = Outcome::fail(
            ErrorClass::Timeout,
            format!("timed out after {} while the agent was running; its processes were killed", humantime::format_duration(timeout)),
        );
        o.agent = Some(agent);
        return o;
    }
    if run.cancelled {
        let mut o = Outcome::fail(ErrorClass::Cancelled, "cancelled while the agent was running".into());
        o.agent = Some(agent);
        return o;
    }
    let stdout = text(&run.stdout);
    let json = parse_agent_json(&stdout);
    let answer = match &json {
        Some(v) => {
            agent.is_error = v.get("is_error").and_then(|x| x.as_bool()).unwrap_or(false);
            agent.api_error_status = v.get("api_error_status").and_then(|x| x.as_i64());
            agent.num_turns = v.get("num_turns").and_then(|x| x.as_u64());
            if let Some(u) = v.get("usage") {
                let n = |k: &str| u.get(k).and_then(|x| x.as_u64()).unwrap_or(0);
                agent.input_tokens = n("input_tokens");
                agent.output_tokens = n("output_tokens");
                agent.cache_read_tokens = n("cache_read_input_tokens");
                agent.cache_creation_tokens = n("cache_creation_input_tokens");
            }
            v.get("result").and_then(|x| x.as_str()).unwrap_or_default().to_string()
        }
        None => {
            agent.raw_text = true;
            stdout.clone()
        }
    };
    let ok = run.exit_code == Some(0) && !agent.is_error;
    if ok {
        return Outcome {
            status: Status::Success,
            error_class: None,
            error: None,
            output: answer,
            exit_code: run.exit_code,
            command: None,
            agent: Some(agent),
        };
    }
    let rate_limited = agent.api_error_status == Some(429) || says_rate_limited(&answer) || says_rate_limited(&stderr);
    let class = if rate_limited { ErrorClass::RateLimit } else { ErrorClass::Model };
    let detail = if !answer.trim().is_empty() { answer.trim().to_string() } else { last_lines(&stderr, 5) };
    let how = match (run.exit_code, agent.api_error_status) {
        (_, Some(s)) => format!("agent reported an API error (status {s})"),
        (Some(0), None) => "agent reported an error".to_string(),
        (Some(c), None) => format!("agent exited with code {c}"),
        (None, None) => "agent was killed by a signal".to_string(),
    };
    let mut o = Outcome::fail(class, if detail.is_empty() { how } else { format!("{how}: {detail}") });
    o.output = answer;
    o.exit_code = run.exit_code;
    o.agent = Some(agent);
    o
}

/// Whether an agent's words say the model refused for its rate limit: "rate limit", "Too Many
/// Requests", or a 429 in an API error as Claude Code prints them (`API Error: 429 …`,
/// `API Error: Request rejected (429)`, `(status 429)`), whatever the JSON's fields say.
fn says_rate_limited(text: &str) -> bool {
    let t = text.to_ascii_lowercase();
    if t.contains("rate limit") || t.contains("rate-limit") || t.contains("too many requests") {
        return true;
    }
    // A 429 standing alone (not part of a longer number), soon after "api error".
    let lone_429 = |s: &str| {
        s.match_indices("429").any(|(i, _)| {
            let b = s.as_bytes();
            let digit_before = i > 0 && b[i - 1].is_ascii_digit();
            let digit_after = b.get(i + 3).is_some_and(u8::is_ascii_digit);
            !digit_before && !digit_after
        })
    };
    let window = |at: usize| {
        let mut end = t.len().min(at + 80);
        while !t.is_char_boundary(end) {
            end -= 1;
        }
        &t[at..end]
    };
    t.match_indices("api error").any(|(at, _)| lone_429(window(at))) || t.contains("status 429")
}

/// The agent prints one JSON object; tolerate log lines around it.
fn parse_agent_json(stdout: &str) -> Option<serde_json::Value> {
    let t = stdout.trim();
    if let Ok(v @ serde_json::Value::Object(_)) = serde_json::from_str(t) {
        return Some(v);
    }
    t.lines().rev().find_map(|l| match serde_json::from_str(l.trim()) {
        Ok(v @ serde_json::Value::Object(_)) if v.get("result").is_some() || v.get("is_error").is_some() => Some(v),
        _ => None,
    })
}

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

async fn simulate_command(cmd: &str, sim: &Simulate, takes_duration: bool, deadline: Instant, cancel: &CancellationToken) -> RunOutput {
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

async fn simulate_agent(
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

#[cfg(test)]
mod tests {
    use super::*;

    fn out(stdout: &str, code: i32) -> RunOutput {
        RunOutput { stdout: stdout.as_bytes().to_vec(), exit_code: Some(code), ..Default::default() }
    }

    #[test]
    fn judges_by_is_error_and_exit_code() {
        let t = Duration::from_secs(5);
        let ok = judge_agent(
            &out(
                r#"{"type":"result","subtype":"success","is_error":false,"result":"hi","num_turns":1,"usage":{"input_tokens":7,"output_tokens":3}}"#,
                0,
            ),
            t,
        );
        assert_eq!((ok.status, ok.output.as_str()), (Status::Success, "hi"));
        assert_eq!(ok.agent.as_ref().map(|a| (a.input_tokens, a.output_tokens)), Some((7, 3)));
        let err = judge_agent(&out(r#"{"subtype":"success","is_error":true,"result":"API Error: 500"}"#, 1), t);
        assert_eq!((err.status, err.error_class), (Status::Failed, Some(ErrorClass::Model)));
        assert_eq!(err.error.as_deref(), Some("agent exited with code 1: API Error: 500"));
        // What Claude Code prints for a provider's 429, with and without `api_error_status`.
        for answer in [
            r#"{"is_error":true,"api_error_status":429,"result":"Too many requests"}"#,
            r#"{"is_error":true,"result":"API Error: 429 Too Many Requests · Please slow down"}"#,
            r#"{"is_error":true,"result":"API Error: Request rejected (429) · Error from provider(stub,model-fast: 429): {\"error\":{\"code\":\"1302\"}}"}"#,
            r#"{"is_error":true,"result":"API Error: 429 {\"type\":\"error\",\"error\":{\"type\":\"overloaded\"}}"}"#,
        ] {
            assert_eq!(judge_agent(&out(answer, 1), t).error_class, Some(ErrorClass::RateLimit), "{answer}");
        }
        for not_limited in [
            r#"{"is_error":true,"result":"API Error: 500 upstream 4290 bytes"}"#,
            r#"{"is_error":true,"result":"wrote 429 files"}"#,
            r#"{"is_error":true,"result":"API Error: 500 ééééééééééééééééééééééééééééééééééééééééééé"}"#,
        ] {
            assert_eq!(judge_agent(&out(not_limited, 1), t).error_class, Some(ErrorClass::Model), "{not_limited}");
        }
        let rl = judge_agent(&out(r#"{"is_error":true,"api_error_status":429,"result":"Too many requests"}"#, 1), t);
        assert_eq!(rl.error_class, Some(ErrorClass::RateLimit));
        let plain = judge_agent(&out("just text\n", 0), t);
        assert_eq!((plain.status, plain.output.as_str()), (Status::Success, "just text\n"));
    }

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
