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
pub mod run_as;
pub mod ssh;

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use base64::Engine as _;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

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

/// How a script run ended.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunOutput {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub exit_code: Option<i32>,
    pub truncated: bool,
    pub timed_out: bool,
    pub cancelled: bool,
    pub duration: Duration,
}

/// Quotes a string for a POSIX shell.
pub fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// The wrapper's stdin header: script and prompt, each one base64 line.
fn header(script: &str, prompt: Option<&str>) -> Vec<u8> {
    let b = base64::engine::general_purpose::STANDARD;
    let mut h = b.encode(script.as_bytes()).into_bytes();
    h.push(b'\n');
    h.extend_from_slice(b.encode(prompt.unwrap_or("").as_bytes()).as_bytes());
    h.push(b'\n');
    h
}

/// Reads everything, keeping at most `limit` bytes.
async fn read_capped(mut r: impl AsyncRead + Unpin, limit: usize) -> (Vec<u8>, bool) {
    let mut kept = Vec::new();
    let mut truncated = false;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let room = limit.saturating_sub(kept.len());
                if room < n {
                    truncated = true;
                }
                kept.extend_from_slice(&buf[..n.min(room)]);
            }
        }
    }
    (kept, truncated)
}

/// Reads stderr, reporting the `ZO-PGID` line as soon as it arrives and removing it.
async fn read_stderr(mut r: impl AsyncRead + Unpin, limit: usize, pgid_tx: tokio::sync::watch::Sender<Option<i32>>) -> (Vec<u8>, bool) {
    let mut kept = Vec::new();
    let mut truncated = false;
    let mut found = false;
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match r.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let room = limit.saturating_sub(kept.len());
        truncated |= room < n;
        kept.extend_from_slice(&buf[..n.min(room + 64)]);
        if !found {
            if let Some(pos) = find_subslice(&kept, b"ZO-PGID ") {
                if let Some(end) = kept[pos..].iter().position(|&b| b == b'\n') {
                    let line = String::from_utf8_lossy(&kept[pos + 8..pos + end]).trim().to_string();
                    if let Ok(p) = line.parse::<i32>() {
                        let _ = pgid_tx.send(Some(p));
                    }
                    kept.drain(pos..pos + end + 1);
                    found = true;
                }
            }
        }
        kept.truncate(limit);
    }
    (kept, truncated)
}

fn find_subslice(h: &[u8], n: &[u8]) -> Option<usize> {
    h.windows(n.len()).position(|w| w == n)
}

/// Runs `script` (bash) through the wrapper with `prompt` in `$ZO_PROMPT` and `input` on
/// stdin, until it exits, `deadline` passes or `cancel` fires. On deadline or cancel the
/// script's whole process group is killed on the execution host (TERM, then KILL).
pub async fn run_script(
    ex: &dyn Executor,
    script: &str,
    prompt: Option<&str>,
    input: &[u8],
    deadline: Instant,
    cancel: &CancellationToken,
    limit: usize,
) -> Result<RunOutput, ExecError> {
    let started = Instant::now();
    let sp = tokio::select! {
        r = ex.spawn(script, prompt) => r?,
        _ = tokio::time::sleep_until(deadline) => return Ok(RunOutput { timed_out: true, duration: started.elapsed(), ..Default::default() }),
        _ = cancel.cancelled() => return Ok(RunOutput { cancelled: true, duration: started.elapsed(), ..Default::default() }),
    };
    let Spawned { mut stdin, stdout, stderr, wait, group } = sp;
    let (pgid_tx, mut pgid_rx) = tokio::sync::watch::channel(None);
    let wrapped = matches!(group, Group::Wrapper);
    let mut head = if wrapped { header(script, prompt) } else { Vec::new() };
    head.extend_from_slice(input);
    let feed = async move {
        // A script that does not read its stdin closes the pipe early; that is fine.
        let _ = stdin.write_all(&head).await;
        let _ = stdin.shutdown().await;
        drop(stdin);
    };
    let read_err = async move {
        if wrapped {
            read_stderr(stderr, limit, pgid_tx).await
        } else {
            read_capped(stderr, limit).await
        }
    };
    let work = async {
        // Wait only after stdout and stderr reached EOF: with OpenSSH multiplexing, a finished
        // wait closes the mux connection and the master stops forwarding output that is still
        // in flight (openssh-rust/openssh#103).
        let (_, (out, out_trunc), (err, err_trunc)) = tokio::join!(feed, read_capped(stdout, limit), read_err);
        let code = wait.await;
        (out, out_trunc || err_trunc, err, code)
    };
    tokio::pin!(work);
    let interrupted = tokio::select! {
        (stdout, truncated, stderr, code) = &mut work => {
            let exit_code = code?;
            if wrapped && exit_code == Some(WRAPPER_PROTOCOL_EXIT) && find_subslice(&stderr, b"base64").is_some() {
                return Err(ExecError::Config(format!("the wrapper could not decode its input on {}: {}", ex.host(), String::from_utf8_lossy(&stderr).trim())));
            }
            let no_bash = if wrapped {
                // The wrapper never reported a group: bash did not start the script.
                exit_code == Some(127) && stdout.is_empty() && find_subslice(&stderr, b"bash").is_some() && pgid_rx.borrow().is_none()
            } else {
                exit_code == Some(127) && stderr.starts_with(helper::NO_BASH.as_bytes())
            };
            if no_bash {
                return Err(ExecError::Config(format!("bash is needed on {} to run tasks: {}", ex.host(), String::from_utf8_lossy(&stderr).trim())));
            }
            return Ok(RunOutput { stdout, stderr, exit_code, truncated, duration: started.elapsed(), ..Default::default() });
        }
        _ = tokio::time::sleep_until(deadline) => Interrupt::Timeout,
        _ = cancel.cancelled() => Interrupt::Cancel,
    };
    match group {
        Group::Helper { kill } => kill(),
        Group::Leader { pgid } => kill_group(ex, pgid).await,
        Group::Wrapper => {
            // Kill the process group on the execution host. The group id may still be on its way.
            let known = *pgid_rx.borrow();
            let pgid = match known {
                Some(p) => Some(p),
                None => tokio::time::timeout(Duration::from_secs(2), pgid_rx.wait_for(Option::is_some))
                    .await
                    .ok()
                    .and_then(|r| r.ok().and_then(|v| *v)),
            };
            if let Some(p) = pgid {
                kill_group(ex, p).await;
            }
        }
    }
    // Let the script's end reach us; never wait long for a peer that is gone.
    let _ = tokio::time::timeout(Duration::from_secs(5), &mut work).await;
    Ok(RunOutput {
        timed_out: interrupted == Interrupt::Timeout,
        cancelled: interrupted == Interrupt::Cancel,
        duration: started.elapsed(),
        ..Default::default()
    })
}

#[derive(PartialEq, Eq)]
enum Interrupt {
    Timeout,
    Cancel,
}

/// TERM the group, then KILL whatever is left after a grace second.
async fn kill_group(ex: &dyn Executor, pgid: i32) {
    // `kill -SIG -PGID`, not `kill -- -PGID`: dash's kill builtin does not take `--`.
    let script = format!("kill -TERM -{pgid} 2>/dev/null; for i in 1 2 3 4 5 6 7 8 9 10; do kill -0 -{pgid} 2>/dev/null || exit 0; sleep 0.1; done; kill -KILL -{pgid} 2>/dev/null; exit 0");
    match tokio::time::timeout(Duration::from_secs(10), ex.run_plain(&script)).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => tracing::warn!(pgid, host = ex.host(), "could not kill the task's processes: {e}"),
        Err(_) => tracing::warn!(pgid, host = ex.host(), "killing the task's processes timed out"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
    }

    #[tokio::test]
    async fn stderr_pgid_line_is_extracted() {
        let (tx, rx) = tokio::sync::watch::channel(None);
        let (err, _) = read_stderr(&b"ZO-PGID 4242\nwarning: x\n"[..], 1024, tx).await;
        assert_eq!(*rx.borrow(), Some(4242));
        assert_eq!(err, b"warning: x\n");
    }
}
