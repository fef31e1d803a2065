//! Executors: where a task's shell runs (over SSH, or on this machine), behind one trait.
//!
//! Two ways to start a script, both keeping user text (commands and prompts) off command
//! lines and out of shell quoting, and both able to kill the script's whole process tree:
//!
//! - directly: the SSH executor's remote helper (`helper.rs`) receives script and prompt in a
//!   frame and starts bash in its own session, one fork and exec per task and no SSH session;
//!   the local executor starts bash as a process group leader, in a clean environment;
//! - otherwise (SSH without the helper) the small bash wrapper ([`WRAPPER`]) runs, one process (or SSH session) per
//!   task. It reads, from stdin, one base64 line with the script to run and one with the prompt
//!   (empty when none), then starts the script as its own process group (`set -m`, then
//!   `set +m` so bash prints no job notices), prints that group id on stderr (`ZO-PGID n`) and
//!   waits. The rest of stdin flows to the script.
//!
//! Every way hands the script to bash in its environment (`ZO_SCRIPT`, unset before it runs;
//! see [`RUN_FROM_ENV`]) or, when it is long, in a private file named there (`ZO_SCRIPT_FILE`,
//! mode 0600 in a 0700 directory, removed once read) — never on a command line, so `ps` never
//! shows a script (which may hold the agent's key). Prompts likewise (`ZO_PROMPT`,
//! `ZO_PROMPT_FILE`); a long prompt reaches the agent on stdin, ahead of the command's output.

pub mod helper;
pub mod local;
pub mod run;
pub mod run_as;
pub mod ssh;

use std::future::Future;
use std::pin::Pin;

use tokio::io::{AsyncRead, AsyncWrite};

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// How bash runs the script it is handed: in `ZO_SCRIPT`, or — past [`SPILL_OVER`] bytes, too
/// long for one environment string — in the private file `ZO_SCRIPT_FILE`, read by a builtin
/// (no extra process) and removed; both variables are unset before the script runs.
pub const RUN_FROM_ENV: &str = r#"if [ -n "${ZO_SCRIPT_FILE:-}" ]; then IFS= read -r -d "" zo_s < "$ZO_SCRIPT_FILE"; rm -f -- "$ZO_SCRIPT_FILE"; else zo_s=$ZO_SCRIPT; fi; unset ZO_SCRIPT ZO_SCRIPT_FILE; eval "$zo_s""#;

/// Scripts and prompts longer than this travel in a private file instead of the environment
/// (one environment string or argument is limited to 128 KiB on Linux).
pub const SPILL_OVER: usize = 64 * 1024;

/// The bash program every task step runs in (`bash -c WRAPPER`).
pub const WRAPPER: &str = r#"set -m
IFS= read -r zo_s || exit 97
IFS= read -r zo_p || exit 97
zo_s="$(printf %s "$zo_s" | base64 -d; printf x)" || exit 97
zo_p="$(printf %s "$zo_p" | base64 -d; printf x)" || exit 97
zo_tok="w$$-$RANDOM$RANDOM$RANDOM"
zo_s="${zo_s%x}"; zo_p="${zo_p%x}"; zo_sf=; zo_pf=; zo_d=
# Long text goes through private files (0600 in a 0700 directory): one environment string is
# limited to 128 KiB.
if [ "${#zo_s}" -gt 30000 ] || [ "${#zo_p}" -gt 30000 ]; then zo_d=$(umask 077; mktemp -d) || exit 97; fi
if [ "${#zo_s}" -gt 30000 ]; then zo_sf="$zo_d/script" && (umask 077; printf %s "$zo_s" > "$zo_sf") && zo_s= || exit 97; fi
if [ "${#zo_p}" -gt 30000 ]; then zo_pf="$zo_d/prompt" && (umask 077; printf %s "$zo_p" > "$zo_pf") && zo_p= || exit 97; fi
ZO_PROMPT="$zo_p" ZO_PROMPT_FILE="$zo_pf" ZO_SCRIPT="$zo_s" ZO_SCRIPT_FILE="$zo_sf" ZO_TASK_TOKEN="$zo_tok" bash -c 'printf "ZO-PGID %s\n" "$$" >&2; if [ -n "${ZO_SCRIPT_FILE:-}" ]; then IFS= read -r -d "" zo_s < "$ZO_SCRIPT_FILE"; rm -f -- "$ZO_SCRIPT_FILE"; else zo_s=$ZO_SCRIPT; fi; unset ZO_SCRIPT ZO_SCRIPT_FILE; eval "$zo_s"' &
zo_pid=$!
set +m
wait "$zo_pid"
zo_rc=$?
kill -KILL -- -"$zo_pid" 2>/dev/null
for zo_f in $(grep -lzx "ZO_TASK_TOKEN=$zo_tok" /proc/[0-9]*/environ 2>/dev/null); do zo_f=${zo_f#/proc/}; kill -KILL "${zo_f%/environ}" 2>/dev/null; done
[ -z "$zo_d" ] || rm -rf -- "$zo_d"
exit "$zo_rc"
"#;

/// Exit code of the wrapper when its input was garbled.
pub const WRAPPER_PROTOCOL_EXIT: i32 = 97;

/// Why an execution could not be carried out (as opposed to a command exiting non-zero).
#[derive(Debug, Clone, thiserror::Error)]
pub enum ExecError {
    /// The host could not be reached, the connection dropped, or auth was refused.
    #[error("{0}")]
    Network(String),
    /// The executor is misconfigured (e.g. no bash on the host).
    #[error("{0}")]
    Config(String),
}

/// A process started by an executor.
pub struct Spawned {
    pub stdin: Box<dyn AsyncWrite + Send + Unpin>,
    pub stdout: Box<dyn AsyncRead + Send + Unpin>,
    pub stderr: Box<dyn AsyncRead + Send + Unpin>,
    /// Resolves to the exit code (`None` when killed by a signal). Poll it only after stdout
    /// and stderr reached EOF.
    pub wait: BoxFuture<'static, Result<Option<i32>, ExecError>>,
    /// How the script was started, which says how to stop it.
    pub group: Group,
}

/// How a started script's process group is found and killed.
pub enum Group {
    /// `bash -c WRAPPER`: the caller sends the header on stdin, the group id arrives on stderr
    /// (`ZO-PGID n`) and a plain command kills the group.
    Wrapper,
    /// Started directly as the leader of group `pgid`; a plain command kills the group.
    Leader { pgid: i32 },
    /// Started by the remote helper: calling `kill` has the group TERMed, then KILLed.
    Helper { kill: Box<dyn FnOnce() + Send> },
}

/// Where task scripts run.
pub trait Executor: Send + Sync + 'static {
    /// Starts `script` (bash) on the execution host, with `prompt` in `$ZO_PROMPT`: directly
    /// ([`Group::Leader`], [`Group::Helper`]) or as `bash -c WRAPPER` ([`Group::Wrapper`],
    /// script and prompt to be sent by the caller).
    fn spawn<'a>(&'a self, script: &'a str, prompt: Option<&'a str>) -> BoxFuture<'a, Result<Spawned, ExecError>>;
    /// Runs a short plain shell command (used to signal process groups).
    fn run_plain<'a>(&'a self, script: &'a str) -> BoxFuture<'a, Result<Option<i32>, ExecError>>;
    /// Host name for messages.
    fn host(&self) -> &str;
    /// Releases connections (SSH masters) at shutdown.
    fn close(&self) -> BoxFuture<'_, ()>;
    /// The port on the execution host where the agent reaches this instance's CCR, when the
    /// executor provides one (the SSH executor's reverse tunnels); `None`: use `agent.base_url`.
    fn agent_port<'a>(&'a self, _instance: &'a str) -> BoxFuture<'a, Result<Option<u16>, ExecError>> {
        Box::pin(async { Ok(None) })
    }
}

/// Quotes a string for a POSIX shell.
pub fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
    }
}
