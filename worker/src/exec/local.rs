//! The `local` executor: task scripts run on the worker's own machine, in a clean environment:
//! the worker's variables (the provider keys its CCRs use among them) never reach a task. A
//! task gets [`BASIC_ENV`] from the worker, `ZO_PROMPT` for the agent step, and what the
//! script itself exports (`executor.env`, `executor.pass_env`, the agent's
//! `ANTHROPIC_*`/`CLAUDE_*`, `agent.env`).
//!
//! Tasks start through the same helper as over SSH (`helper.rs`), run here as a child of the
//! worker: every task in its own session, its whole process tree killed when it ends (also what
//! left the session), and every task killed when the worker dies (the helper's stdin closes).
//! Without Perl, each script starts directly as the leader of its own process group, and what
//! it leaves in that group is killed when it ends.

use std::process::Stdio;
use std::time::Duration;

use tokio::process::Command;

use super::helper::{helper_args, Helper, HelperSlot, OpenError, HELPER};
use super::run_as::RunAs;
use super::{BoxFuture, ExecError, Executor, Group, Spawned, RUN_FROM_ENV, SPILL_OVER};

/// The worker's variables a local task gets as they are (when set).
pub const BASIC_ENV: [&str; 8] = ["PATH", "HOME", "LANG", "LC_ALL", "USER", "LOGNAME", "TZ", "TMPDIR"];

pub struct LocalExecutor {
    host: String,
    helper: HelperSlot,
    use_helper: bool,
    /// Private directory (0700) for long scripts and prompts of directly started tasks.
    spill_dir: std::sync::OnceLock<std::path::PathBuf>,
    /// The account tasks run as (`executor.run_as`), when not the worker's.
    run_as: Option<RunAs>,
}

impl LocalExecutor {
    /// `use_helper`: start tasks through the helper (when Perl is there); `run_as`: the
    /// account tasks run as.
    pub fn new(use_helper: bool, run_as: Option<RunAs>) -> Self {
        let host = std::env::var("HOSTNAME").ok().filter(|h| !h.is_empty()).unwrap_or_else(|| "localhost".into());
        let helper = HelperSlot::new(
            host.clone(),
            "local helper",
            "each task starts directly; what it leaves in its process group is killed when it ends, but not what leaves the group, nor its tasks when the worker is killed",
        );
        LocalExecutor { host, helper, use_helper, spill_dir: std::sync::OnceLock::new(), run_as }
    }

    /// A command with the clean environment every local task starts from, as the account
    /// tasks run as.
    fn clean(&self, program: &str) -> Command {
        let mut cmd = Command::new(program);
        cmd.env_clear();
        for name in BASIC_ENV {
            if let Some(v) = std::env::var_os(name) {
                cmd.env(name, v);
            }
        }
        if let Some(r) = &self.run_as {
            r.apply(&mut cmd);
        }
        cmd
    }

    /// Starts `perl -e HELPER` here (its tasks inherit its clean environment).
    async fn open_helper(&self) -> Result<Helper, OpenError> {
        let mut child = self
            .clean("perl")
            .arg("-e")
            .arg(HELPER)
            .args(helper_args())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| OpenError::Unavailable(format!("cannot run perl: {e}")))?;
        let stdin = child.stdin.take().expect("piped");
        let stdout = child.stdout.take().expect("piped");
        let stderr = child.stderr.take().expect("piped");
        let exited: BoxFuture<'static, Option<i32>> = Box::pin(async move { child.wait().await.ok().and_then(|s| s.code()) });
        Helper::open(stdin, stdout, stderr, exited, self.host.clone(), Duration::from_secs(10)).await
    }

    /// Writes long text to a new private file (0600, in a 0700 directory of this worker).
    fn spill(&self, kind: &str, token: &str, text: &str) -> Result<std::path::PathBuf, ExecError> {
        use std::io::Write as _;
        use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
        let fail = |e: std::io::Error| ExecError::Config(format!("cannot write a long {kind} to a private file: {e}"));
        let dir = match self.spill_dir.get() {
            Some(d) => d.clone(),
            None => {
                let d = std::env::temp_dir().join(format!("zo-worker-{}-{:08x}", std::process::id(), rand::random::<u32>()));
                std::fs::DirBuilder::new().mode(0o700).create(&d).map_err(fail)?;
                if let Some(r) = &self.run_as {
                    // The task removes the file once read: the directory is its user's.
                    r.own(&d).map_err(fail)?;
                }
                self.spill_dir.get_or_init(|| d).clone()
            }
        };
        let path = dir.join(format!("{kind}-{token}"));
        let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&path).map_err(fail)?;
        f.write_all(text.as_bytes()).map_err(fail)?;
        if let Some(r) = &self.run_as {
            r.own(&path).map_err(fail)?;
        }
        Ok(path)
    }

    /// Without the helper: `bash` as the leader of its own process group.
    fn spawn_direct(&self, script: &str, prompt: Option<&str>) -> Result<Spawned, ExecError> {
        let token = format!("{}-{:016x}", std::process::id(), rand::random::<u64>());
        let mut cmd = self.clean("bash");
        cmd.arg("-c").arg(RUN_FROM_ENV).env("ZO_TASK_TOKEN", &token);
        let mut files = Vec::new();
        if script.len() > SPILL_OVER {
            let f = self.spill("script", &token, script)?;
            cmd.env("ZO_SCRIPT_FILE", &f);
            files.push(f);
        } else {
            cmd.env("ZO_SCRIPT", script);
        }
        match prompt {
            Some(p) if p.len() > SPILL_OVER => {
                let f = self.spill("prompt", &token, p)?;
                cmd.env("ZO_PROMPT_FILE", &f);
                files.push(f);
            }
            Some(p) => {
                cmd.env("ZO_PROMPT", p);
            }
            None => {}
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
                let code = child.wait().await.map(|s| s.code()).map_err(|e| ExecError::Config(format!("waiting for bash: {e}")));
                // What the script left in its group (`sleep 1000 &`) ends with it, and so does
                // whatever left the group but carries its token.
                // `--`: procps' kill reads `-PGID` after a signal as a signal number otherwise
                // (and kills another group).
                let _ = Command::new("kill").args(["-KILL", "--"]).arg(format!("-{pgid}")).stderr(Stdio::null()).status().await;
                sweep(&token).await;
                for f in files {
                    let _ = std::fs::remove_file(f);
                }
                code
            }),
            group: Group::Leader { pgid },
        })
    }
}

/// Kills every process whose environment carries `ZO_TASK_TOKEN=token` (a few rounds, for
/// those forking meanwhile).
pub async fn sweep(token: &str) {
    let want = format!("ZO_TASK_TOKEN={token}").into_bytes();
    for _ in 0..3 {
        let want = want.clone();
        let pids = tokio::task::spawn_blocking(move || {
            let mut hit = Vec::new();
            for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
                let name = entry.file_name();
                let Some(pid) = name.to_str().filter(|n| n.bytes().all(|b| b.is_ascii_digit())) else { continue };
                if let Ok(env) = std::fs::read(entry.path().join("environ")) {
                    if env.split(|&b| b == 0).any(|v| v == want.as_slice()) {
                        hit.push(pid.to_string());
                    }
                }
            }
            hit
        })
        .await
        .unwrap_or_default();
        if pids.is_empty() {
            return;
        }
        let _ = Command::new("kill").args(["-KILL", "--"]).args(&pids).stderr(Stdio::null()).status().await;
    }
}

impl Executor for LocalExecutor {
    fn spawn<'a>(&'a self, script: &'a str, prompt: Option<&'a str>) -> BoxFuture<'a, Result<Spawned, ExecError>> {
        Box::pin(async move {
            if self.use_helper {
                if let Some(s) = self.helper.start(|| self.open_helper(), script, prompt).await? {
                    return Ok(s);
                }
            }
            self.spawn_direct(script, prompt)
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
        Box::pin(async move {
            self.helper.close().await;
            if let Some(d) = self.spill_dir.get() {
                let _ = std::fs::remove_dir_all(d);
            }
        })
    }
}
