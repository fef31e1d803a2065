//! The `local` executor: task scripts run on the worker's own machine, each in bash as the
//! leader of its own process group, in a clean environment: the worker's variables (the
//! provider keys its CCRs use among them) never reach a task. A task gets [`BASIC_ENV`] from
//! the worker, `ZO_PROMPT` for the agent step, and what the script itself exports
//! (`executor.env`, `executor.pass_env`, the agent's `ANTHROPIC_*`/`CLAUDE_*`, `agent.env`).

use std::process::Stdio;

use tokio::process::Command;

use super::{BoxFuture, ExecError, Executor, Group, Spawned, RUN_FROM_ENV};

/// The worker's variables a local task gets as they are (when set).
pub const BASIC_ENV: [&str; 8] = ["PATH", "HOME", "LANG", "LC_ALL", "USER", "LOGNAME", "TZ", "TMPDIR"];

pub struct LocalExecutor {
    host: String,
}

impl LocalExecutor {
    pub fn new() -> Self {
        let host = std::env::var("HOSTNAME").ok().filter(|h| !h.is_empty()).unwrap_or_else(|| "localhost".into());
        LocalExecutor { host }
    }
}

impl Default for LocalExecutor {
    fn default() -> Self {
        Self::new()
    }
}

impl Executor for LocalExecutor {
    fn spawn<'a>(&'a self, script: &'a str, prompt: Option<&'a str>) -> BoxFuture<'a, Result<Spawned, ExecError>> {
        Box::pin(async move {
            let mut cmd = Command::new("bash");
            cmd.arg("-c").arg(RUN_FROM_ENV).env_clear();
            for name in BASIC_ENV {
                if let Some(v) = std::env::var_os(name) {
                    cmd.env(name, v);
                }
            }
            cmd.env("ZO_SCRIPT", script);
            if let Some(p) = prompt {
                cmd.env("ZO_PROMPT", p);
            }
            let mut child = cmd
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                // Its own group: a timeout kills the whole tree, and a Ctrl-C at the worker's
                // terminal does not hit running tasks.
                .process_group(0)
                .kill_on_drop(true)
                .spawn()
                .map_err(|e| ExecError::Config(format!("cannot start bash on this machine: {e}")))?;
            let pgid = child.id().and_then(|p| i32::try_from(p).ok()).ok_or_else(|| ExecError::Config("bash exited at once".into()))?;
            let stdin = child.stdin.take().expect("piped");
            let stdout = child.stdout.take().expect("piped");
            let stderr = child.stderr.take().expect("piped");
            Ok(Spawned {
                stdin: Box::new(stdin),
                stdout: Box::new(stdout),
                stderr: Box::new(stderr),
                wait: Box::pin(async move {
                    child.wait().await.map(|s| s.code()).map_err(|e| ExecError::Config(format!("waiting for bash: {e}")))
                }),
                group: Group::Leader { pgid },
            })
        })
    }

    fn run_plain<'a>(&'a self, script: &'a str) -> BoxFuture<'a, Result<Option<i32>, ExecError>> {
        Box::pin(async move {
            let status = Command::new("sh")
                .arg("-c")
                .arg(script)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .await
                .map_err(|e| ExecError::Config(format!("cannot run sh: {e}")))?;
            Ok(status.code())
        })
    }

    fn host(&self) -> &str {
        &self.host
    }

    fn close(&self) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }
}
