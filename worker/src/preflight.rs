//! Start-up checks: before taking a job the worker makes sure what its tasks will need is
//! there — the `ccr` command (when `ccr:` is configured), and on the execution host, reached
//! the way tasks reach it, `bash` and the agent command. A problem of the config (a command
//! that is missing, an SSH login that is refused) stops the worker with one line naming the
//! fix (exit 2), instead of failing every task or restarting a missing `ccr` forever. A host
//! that does not answer yet is only a loud warning: the worker takes no jobs until the host
//! answers (it checks again every [`RECHECK`]), so no task burns its retries meanwhile.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::config::{AgentMode, WorkerConfig};
use crate::exec::{ExecError, Executor};

/// How often an unreachable host is tried again.
pub const RECHECK: Duration = Duration::from_secs(5);

/// Exit codes of the host probe: no bash, no agent command.
const NO_BASH: i32 = 41;
const NO_AGENT: i32 = 42;

/// What a check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// The config must change (exit 2); the message says how.
    Config(String),
    /// The host does not answer now; it may later.
    Unreachable(String),
}

/// The program a command line starts: its first word that is not a `NAME=value` assignment.
fn program(command_line: &str) -> Option<&str> {
    command_line.split_whitespace().find(|w| !(w.contains('=') && !w.starts_with('/') && !w.starts_with('.')))
}

/// Whether `prog` is an executable file, found through `PATH` when it names no directory.
fn on_this_machine(prog: &str) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    let runnable = |p: &Path| p.metadata().is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0);
    if prog.contains('/') {
        return runnable(Path::new(prog));
    }
    std::env::var_os("PATH").is_some_and(|path| std::env::split_paths(&path).any(|dir| runnable(&dir.join(prog))))
}

/// Checks made on this machine: the `ccr` command, when this worker starts its CCRs.
pub fn local_checks(cfg: &WorkerConfig, starts_ccr: bool) -> Vec<Problem> {
    let mut out = Vec::new();
    if let (Some(ccr), true) = (&cfg.ccr, starts_ccr) {
        match program(&ccr.command) {
            Some(p) if on_this_machine(p) => {}
            p => out.push(Problem::Config(format!(
                "ccr.command `{}`: `{}` is not an executable on this machine; install Claude Code Router 2 (`npm install -g @musistudio/claude-code-router@2`) or give its full path in ccr.command",
                ccr.command,
                p.unwrap_or("")
            ))),
        }
    }
    out
}

/// SSH's own words for problems only the config can fix.
fn is_config_error(msg: &str) -> bool {
    const CONFIG: [&str; 6] = [
        "Permission denied",
        "Host key verification failed",
        "REMOTE HOST IDENTIFICATION HAS CHANGED",
        "Could not resolve hostname",
        "no such identity",
        "Bad configuration option",
    ];
    CONFIG.iter().any(|c| msg.contains(c))
}

/// Checks made on the execution host through `executor`: it answers, `bash` is there, and so
/// is the agent command (when the agent is not simulated).
pub async fn host_checks(cfg: &WorkerConfig, executor: &dyn Executor) -> Vec<Problem> {
    let agent = match cfg.agent.mode {
        AgentMode::Command => program(&cfg.agent.command),
        AgentMode::Simulate => None,
    };
    let mut probe = format!("command -v bash >/dev/null 2>&1 || exit {NO_BASH}");
    if let Some(a) = agent {
        probe.push_str(&format!("; command -v {} >/dev/null 2>&1 || exit {NO_AGENT}", crate::exec::shell_quote(a)));
    }
    let host = executor.host().to_string();
    match executor.run_plain(&probe).await {
        Ok(Some(0)) => Vec::new(),
        Ok(Some(NO_BASH)) => vec![Problem::Config(format!(
            "the execution host {host} has no `bash`, which every task runs under; install it there (e.g. `apt-get install bash`)"
        ))],
        Ok(Some(NO_AGENT)) => {
            let prog = agent.unwrap_or("");
            let where_ =
                if prog.contains('/') { format!("is not an executable on {host}") } else { format!("is not on the PATH of {host}") };
            vec![Problem::Config(format!(
                "agent.command `{}`: `{prog}` {where_}; install the Claude Code CLI there (`npm install -g @anthropic-ai/claude-code`) or give its full path in agent.command",
                cfg.agent.command
            ))]
        }
        Ok(code) => vec![Problem::Unreachable(format!("{host}: the start-up probe ended with {code:?}"))],
        Err(ExecError::Config(m)) => vec![Problem::Config(m)],
        Err(ExecError::Network(m)) if is_config_error(&m) => {
            vec![Problem::Config(format!("{m}; fix the executor's host, user, identity_file or known_hosts in the config"))]
        }
        Err(ExecError::Network(m)) => vec![Problem::Unreachable(m)],
    }
}

/// After a first check found the host unreachable: tries again every [`RECHECK`], warning each
/// time, until it answers (then `ready` turns true) or shutdown. A config problem found later
/// (the host answered but the agent is missing) is logged as an error and keeps the worker idle.
pub async fn wait_for_host(cfg: Arc<WorkerConfig>, executor: Arc<dyn Executor>, ready: watch::Sender<bool>, shutdown: CancellationToken) {
    loop {
        if crate::waiting::sleep_or_shutdown(RECHECK, &shutdown).await {
            return;
        }
        let problems = host_checks(&cfg, executor.as_ref()).await;
        match problems.first() {
            None => {
                info!(host = %executor.host(), "the execution host answers: taking jobs");
                let _ = ready.send(true);
                return;
            }
            Some(Problem::Unreachable(m)) => {
                warn!(host = %executor.host(), "execution host still unreachable ({m}); taking no jobs until it answers")
            }
            Some(Problem::Config(m)) => {
                tracing::error!(host = %executor.host(), "{m}; taking no jobs (fix the config and restart the worker)")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_program_of_a_command_line_skips_assignments() {
        assert_eq!(program("claude -p --output-format json"), Some("claude"));
        assert_eq!(program("IS_SANDBOX=1 /opt/bin/claude -p"), Some("/opt/bin/claude"));
        assert_eq!(program("  "), None);
    }

    #[test]
    fn executables_are_found_on_the_path_or_by_their_path() {
        assert!(on_this_machine("sh") && on_this_machine("/bin/sh"));
        assert!(!on_this_machine("/nonexistent/ccr") && !on_this_machine("surely-no-such-command-zo"));
        let dir = tempfile::tempdir().unwrap();
        let plain = dir.path().join("ccr");
        std::fs::write(&plain, "#!/bin/sh\n").unwrap();
        assert!(!on_this_machine(plain.to_str().unwrap()), "a file that is not executable");
        assert!(!on_this_machine(dir.path().to_str().unwrap()), "a directory");
    }

    #[test]
    fn ssh_refusals_are_config_problems_and_silence_is_not() {
        assert!(is_config_error("zo-e2e@127.0.0.1: Permission denied (publickey)."));
        assert!(is_config_error("Host key verification failed."));
        assert!(!is_config_error("ssh: connect to host 127.0.0.1 port 2: Connection refused"));
        assert!(!is_config_error("Connection timed out during banner exchange"));
    }
}
