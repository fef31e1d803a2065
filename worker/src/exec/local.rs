//! The `local` executor: task scripts run on the worker's own machine.

use std::process::Stdio;

use tokio::process::Command;

use super::{BoxFuture, ExecError, Executor, Spawned, WRAPPER};

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
    fn spawn(&self) -> BoxFuture<'_, Result<Spawned, ExecError>> {
        Box::pin(async move {
            let mut child = Command::new("bash")
                .arg("-c")
                .arg(WRAPPER)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                // Its own group: a Ctrl-C at the worker's terminal must not hit running tasks.
                .process_group(0)
                .kill_on_drop(true)
                .spawn()
                .map_err(|e| ExecError::Config(format!("cannot start bash on this machine: {e}")))?;
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
