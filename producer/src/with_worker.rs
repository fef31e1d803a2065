//! `zo-submit FILE --with-worker CONFIG`: one command runs a task file, as the original tool
//! did. Starts `zo-worker --config CONFIG` on the same Redis and namespace (the binary next to
//! this one, else one on `PATH` of the same version), waits for its first heartbeat, and after
//! the run stops it with SIGTERM and waits for its drain. The worker serves the whole
//! namespace, as any worker does, and never outlives this process: it gets SIGTERM when this
//! process dies (`PR_SET_PDEATHSIG`), and runs in its own process group so a Ctrl-C at the
//! terminal is this process's question to ask, not the worker's signal. Its log (stdout and
//! stderr) goes to `worker_YYYYMMDD_HHMMSS.log` in the results directory.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use zo_common::store::Store;

use crate::cli::{ConnOpts, WithWorkerOpts};
use crate::exit;

/// How long the worker may take to send its first heartbeat (it checks its config, SSH host
/// and CCR commands first).
const START_WITHIN: Duration = Duration::from_secs(60);

/// A worker started for this run.
pub struct Started {
    child: tokio::process::Child,
    pid: u32,
    exe: PathBuf,
    config: PathBuf,
    pub log: PathBuf,
    stop_ccr_after: bool,
}

/// The one line that refuses an option meant for `--with-worker` when it is absent.
pub fn misplaced(opts: &WithWorkerOpts) -> Option<String> {
    if opts.with_worker.is_some() {
        return None;
    }
    let named = [
        (opts.ssh_host.is_some(), "--ssh-host"),
        (opts.windows_host.is_some(), "--windows-host"),
        (opts.no_start_ccr, "--no-start-ccr"),
        (opts.stop_after, "--stop-after"),
    ];
    let given: Vec<&str> = named.iter().filter(|(on, _)| *on).map(|(_, n)| *n).collect();
    (!given.is_empty()).then(|| {
        format!(
            "{} appl{} to --with-worker CONFIG (the worker zo-submit starts); a worker you run yourself takes these from its config",
            given.join(", "),
            if given.len() == 1 { "ies" } else { "y" }
        )
    })
}

/// The `zo-worker` to start: the one beside this binary, else one on `PATH` whose version is
/// this one's.
fn worker_binary() -> Result<PathBuf, String> {
    if let Some(beside) = std::env::current_exe().ok().and_then(|p| p.parent().map(|d| d.join("zo-worker"))) {
        if beside.is_file() {
            return Ok(beside);
        }
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    let found = std::env::split_paths(&path).map(|d| d.join("zo-worker")).find(|p| p.is_file());
    let Some(exe) = found else {
        return Err("no zo-worker beside zo-submit nor on PATH; build both (`cargo build --release`) or install zo-worker".into());
    };
    let out = std::process::Command::new(&exe)
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", exe.display()))?;
    let theirs = String::from_utf8_lossy(&out.stdout).trim().trim_start_matches("zo-worker").trim().to_string();
    if theirs != crate::VERSION {
        return Err(format!(
            "{} is version {}, this zo-submit is {}; use the zo-worker built with it (put both binaries in one directory)",
            exe.display(),
            if theirs.is_empty() { "unknown" } else { &theirs },
            crate::VERSION
        ));
    }
    Ok(exe)
}

fn log_path(results_dir: &Path) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(results_dir)?;
    let stamp = crate::output::utc_stamp();
    let mut p = results_dir.join(format!("worker_{stamp}.log"));
    let mut n = 2;
    while p.exists() {
        p = results_dir.join(format!("worker_{stamp}_{n}.log"));
        n += 1;
    }
    Ok(p)
}

/// The last lines of the worker's log, for a worker that exited before it started.
fn log_tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let tail = lines[lines.len().saturating_sub(5)..].join("\n  ");
    zo_common::text::escape_controls(&tail).into_owned()
}

/// Makes the child get SIGTERM when this process dies, and exit at once if it already has.
#[allow(unsafe_code)]
fn die_with_parent(cmd: &mut tokio::process::Command) {
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: the closure runs in the forked child before exec and only calls prctl and
    // getppid, both async-signal-safe; it allocates nothing and touches no lock.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            if libc::getppid() != parent {
                return Err(std::io::Error::other("zo-submit exited before its worker started"));
            }
            Ok(())
        });
    }
}

/// Starts the worker and waits for its first heartbeat. On failure the message is printed
/// and the exit code returned: the worker's own (2 a config problem, 3 what it needs is
/// missing), or 3.
pub async fn start(opts: &WithWorkerOpts, conn: &ConnOpts, results_dir: &Path, store: &Store, quiet: bool) -> Result<Started, u8> {
    let config = opts.with_worker.clone().expect("start is called with --with-worker");
    let fail = |code: u8, msg: String| {
        eprintln!("zo-submit: {msg}");
        code
    };
    let exe = worker_binary().map_err(|m| fail(exit::INFRA, m))?;
    let log = log_path(results_dir).map_err(|e| fail(exit::INFRA, format!("cannot create {}: {e}", results_dir.display())))?;
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)
        .map_err(|e| fail(exit::INFRA, format!("cannot write {}: {e}", log.display())))?;
    let err_file = file.try_clone().map_err(|e| fail(exit::INFRA, format!("cannot write {}: {e}", log.display())))?;
    let mut cmd = tokio::process::Command::new(&exe);
    cmd.arg("--config").arg(&config).args(["--redis", &conn.redis, "--namespace", &conn.namespace, "--color", "never"]);
    if let Some(h) = &opts.ssh_host {
        cmd.args(["--ssh-host", h]);
    }
    if let Some(a) = &opts.windows_host {
        cmd.args(["--ccr-callback-host", a]);
    }
    if opts.no_start_ccr {
        cmd.arg("--use-running-ccr");
    }
    cmd.stdin(Stdio::null()).stdout(file).stderr(err_file).process_group(0);
    die_with_parent(&mut cmd);
    let spawned = Instant::now();
    let since_ms = zo_common::model::now_ms().saturating_sub(1000);
    let child = cmd.spawn().map_err(|e| fail(exit::INFRA, format!("cannot start {}: {e}", exe.display())))?;
    let pid = child.id().unwrap_or(0);
    let mut started = Started { child, pid, exe, config, log, stop_ccr_after: opts.stop_after };
    loop {
        if let Ok(Some(status)) = started.child.try_wait() {
            let code = match status.code() {
                Some(c @ (2 | 3)) => c as u8,
                _ => exit::INFRA,
            };
            return Err(fail(
                code,
                format!("the worker exited ({status}) before it started; its log {}:\n  {}", started.log.display(), log_tail(&started.log)),
            ));
        }
        let seen = async {
            let mut c = store.conn().await?;
            store.live_workers(&mut c, zo_common::store::LIVE_WITHIN).await
        }
        .await;
        if let Some(w) = seen.ok().and_then(|live| live.into_iter().find(|w| w.info.pid == pid && w.info.started_ms >= since_ms)) {
            if !quiet {
                eprintln!("started worker {} ({}) for this run; its log: {}", w.info.id, started.config.display(), started.log.display());
            }
            return Ok(started);
        }
        if spawned.elapsed() > START_WITHIN {
            let log = started.log.clone();
            started.stop(true).await;
            return Err(fail(
                exit::INFRA,
                format!(
                    "the worker sent no heartbeat within {}s; its log {}:\n  {}",
                    START_WITHIN.as_secs(),
                    log.display(),
                    log_tail(&log)
                ),
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn terminate(pid: u32) {
    // SAFETY: kill(2) with a pid this process spawned and has not reaped yet (the child is
    // only reaped by `wait` below), so the pid cannot name another process.
    #[allow(unsafe_code)]
    unsafe {
        libc::kill(pid as libc::pid_t, libc::SIGTERM);
    }
}

impl Started {
    /// SIGTERM, then wait for the worker's drain (what it runs finishes or is handed back).
    /// A Ctrl-C meanwhile sends a second SIGTERM: the worker stops its tasks at once and
    /// hands their jobs back. With `--stop-after`, the CCR instances are stopped afterwards
    /// as `zo-worker ccr stop` does.
    pub async fn stop(mut self, quiet: bool) {
        if matches!(self.child.try_wait(), Ok(None)) {
            if !quiet {
                eprintln!("stopping the worker (pid {}); it finishes what it runs", self.pid);
            }
            terminate(self.pid);
            let waited = tokio::select! {
                w = self.child.wait() => Some(w),
                _ = tokio::signal::ctrl_c() => None,
            };
            if waited.is_none() {
                if !quiet {
                    eprintln!("stopping the worker now; its running tasks are handed back to the queue");
                }
                terminate(self.pid);
                let _ = self.child.wait().await;
            }
        }
        if self.stop_ccr_after {
            let out = tokio::process::Command::new(&self.exe)
                .arg("--config")
                .arg(&self.config)
                .args(["--color", "never", "ccr", "stop"])
                .stdin(Stdio::null())
                .output()
                .await;
            match out {
                Ok(o) => {
                    let text = format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
                    if !quiet || !o.status.success() {
                        for line in text.lines().filter(|l| !l.trim().is_empty()) {
                            eprintln!("ccr: {}", zo_common::text::escape_line(line));
                        }
                    }
                }
                Err(e) => eprintln!("zo-submit: cannot run `{} ccr stop`: {e}", self.exe.display()),
            }
        }
    }
}

impl Drop for Started {
    /// A path that forgot [`Started::stop`] still leaves no worker behind.
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            terminate(self.pid);
        }
    }
}
