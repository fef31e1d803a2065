//! Claude Code Router instances: one CCR process per served instance, each with its own
//! `HOME` (CCR's config path is fixed at `$HOME/.claude-code-router/config.json`) and its own
//! `TMPDIR`, its config written there with secrets substituted, `LOG` off unless asked for, a
//! fresh random `APIKEY` unless the config sets one, and `HOST` on loopback.
//!
//! [`supervise`] keeps one instance running for a worker: ready means `GET /health` answers;
//! a crashed instance is restarted with exponential backoff (its exit status and last stderr
//! lines logged); stop is SIGTERM, a grace period, then SIGKILL, and the child is always
//! reaped. The same state files (`<state_dir>/<instance>/state.json`) serve `zo-worker ccr
//! start|stop|status`, so the CLI and a running worker agree on what runs.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};
use zo_common::catalog::Catalog;
use zo_common::model::now_ms;

use crate::config::{CcrConfig, WorkerConfig};
use crate::secrets::{self, Secrets};

/// Where one instance lives: enough to find, stop or inspect it (no secrets needed).
#[derive(Debug, Clone)]
pub struct Located {
    pub name: String,
    pub model: String,
    pub port: u16,
    /// The address it listens on: loopback, or `callback_host` with `reach: callback`.
    pub host: String,
    /// The instance's home: config, state, logs.
    pub home: PathBuf,
}

/// One instance, ready to start.
#[derive(Clone)]
pub struct Prepared {
    pub at: Located,
    /// The config with secrets in it; written to disk (0600) only in `home`.
    config: String,
    /// The key clients must send (`APIKEY`).
    pub apikey: String,
}

impl std::ops::Deref for Prepared {
    type Target = Located;

    fn deref(&self) -> &Located {
        &self.at
    }
}

impl std::fmt::Debug for Prepared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prepared").field("at", &self.at).finish_non_exhaustive()
    }
}

/// What `state.json` records about a running instance.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct State {
    pub pid: Option<u32>,
    pub port: u16,
    pub started_ms: u64,
    pub restarts: u32,
    /// `worker <id>` or `cli`.
    pub owner: String,
}

pub fn state_dir(cfg: &CcrConfig) -> PathBuf {
    match &cfg.state_dir {
        Some(d) => d.clone(),
        None => {
            let base = std::env::var_os("XDG_STATE_HOME")
                .map(PathBuf::from)
                .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state")))
                .unwrap_or_else(|| PathBuf::from("/tmp"));
            base.join("zo-worker")
        }
    }
}

fn random_key() -> String {
    format!("zo-{:032x}", rand::random::<u128>())
}

/// The served instances (or the one named) with their ports and homes.
pub fn locate(cfg: &WorkerConfig, catalog: &Catalog, only: Option<&str>) -> Result<Vec<Located>, String> {
    let ccr = cfg.ccr.as_ref().ok_or("the worker config has no `ccr:` section; add one to let the worker run CCR")?;
    let dir = state_dir(ccr);
    let mut out = Vec::new();
    for inst in cfg.instances.iter().filter(|i| only.is_none_or(|o| o == i.name)) {
        let entry = catalog.get(&inst.name).ok_or_else(|| format!("instance `{}` is not in the catalog", inst.name))?;
        let host = match (ccr.reach, &ccr.callback_host) {
            (crate::config::Reach::Callback, Some(h)) => h.clone(),
            _ => "127.0.0.1".to_string(),
        };
        out.push(Located { name: inst.name.clone(), model: entry.model.clone(), port: entry.port, host, home: dir.join(&inst.name) });
    }
    if let Some(o) = only {
        if out.is_empty() {
            return Err(format!("this worker does not serve an instance named `{o}`"));
        }
    }
    Ok(out)
}

/// Builds every served instance's config (or the one named), with secrets substituted.
/// An unset variable is an error naming it and the instance.
pub fn prepare(cfg: &WorkerConfig, catalog: &Catalog, secrets: &Secrets, only: Option<&str>) -> Result<Vec<Prepared>, String> {
    let ccr = cfg.ccr.as_ref().ok_or("the worker config has no `ccr:` section; add one to let the worker run CCR")?;
    let mut out = Vec::new();
    for at in locate(cfg, catalog, only)? {
        let path = match cfg.instances.iter().find(|i| i.name == at.name).and_then(|i| i.ccr_config.as_ref()) {
            Some(p) => cfg.resolve(p),
            None => cfg.resolve(&ccr.configs_dir).join(format!("{}.json", at.name)),
        };
        let text = std::fs::read_to_string(&path)
            .map_err(|e| format!("instance `{}`: cannot read CCR config {}: {e}", at.name, path.display()))?;
        let text = secrets::substitute(&text, secrets).map_err(|var| {
            let bws = secrets.bws_error.as_deref().map(|e| format!(" (Bitwarden could not be read: {e})")).unwrap_or_default();
            format!(
                "instance `{}`: {} needs `{var}`, which is not set in Bitwarden, the environment or {}{bws}; set it",
                at.name,
                path.display(),
                ccr.env_file.display()
            )
        })?;
        let mut json: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| format!("instance `{}`: {} is not valid JSON: {e}", at.name, path.display()))?;
        let obj = json.as_object_mut().ok_or_else(|| format!("instance `{}`: {} is not a JSON object", at.name, path.display()))?;
        let apikey = obj.get("APIKEY").and_then(|v| v.as_str()).filter(|k| !k.is_empty()).map(str::to_string).unwrap_or_else(random_key);
        obj.insert("APIKEY".into(), apikey.clone().into());
        obj.insert("PORT".into(), at.port.into());
        obj.insert("HOST".into(), at.host.clone().into());
        obj.insert("LOG".into(), ccr.log.into());
        obj.insert("NON_INTERACTIVE_MODE".into(), true.into());
        out.push(Prepared { at, config: serde_json::to_string_pretty(&json).expect("json"), apikey });
    }
    Ok(out)
}

impl Located {
    fn state_path(&self) -> PathBuf {
        self.home.join("state.json")
    }

    pub fn read_state(&self) -> State {
        std::fs::read(self.state_path()).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default()
    }

    fn write_state(&self, st: &State) {
        let _ = std::fs::write(self.state_path(), serde_json::to_vec_pretty(st).expect("json"));
    }
}

impl Prepared {
    /// Writes the config (readable by this user only) and creates the instance's dirs.
    fn install(&self) -> std::io::Result<()> {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        let cfg_dir = self.home.join(".claude-code-router");
        std::fs::create_dir_all(&cfg_dir)?;
        std::fs::create_dir_all(self.home.join("tmp"))?;
        std::fs::set_permissions(&self.home, std::fs::Permissions::from_mode(0o700))?;
        let path = cfg_dir.join("config.json");
        let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&path)?;
        std::io::Write::write_all(&mut f, self.config.as_bytes())?;
        Ok(())
    }

    fn command(&self, command_line: &str) -> tokio::process::Command {
        let mut c = tokio::process::Command::new("sh");
        // A cleared environment: CCR reads its keys from its config (substituted there), so
        // none of the worker's variables — provider keys, `BWS_ACCESS_TOKEN` — reach it.
        c.env_clear();
        if let Some(path) = std::env::var_os("PATH") {
            c.env("PATH", path);
        }
        c.arg("-c")
            .arg(format!("exec {command_line}"))
            .env("HOME", &self.home)
            .env("TMPDIR", self.home.join("tmp"))
            .env("SERVICE_PORT", self.port.to_string())
            .stdin(Stdio::null())
            // Its own process group: a Ctrl-C at the worker's terminal is the worker's to handle.
            .process_group(0);
        c
    }
}

/// `GET /health` on the address the instance listens on answers `{"status":"ok"}`.
pub async fn healthy(at: &Located) -> bool {
    let probe = async {
        let mut s = tokio::net::TcpStream::connect((at.host.as_str(), at.port)).await.ok()?;
        s.write_all(format!("GET /health HTTP/1.0\r\nHost: {}\r\n\r\n", at.host).as_bytes()).await.ok()?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await.ok()?;
        let text = String::from_utf8_lossy(&buf);
        Some(text.starts_with("HTTP/1.") && text.contains("\"status\":\"ok\""))
    };
    tokio::time::timeout(Duration::from_secs(2), probe).await.ok().flatten().unwrap_or(false)
}

/// Whether a process id is alive (Linux: `/proc/PID`).
pub fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat")).map(|s| s.contains(") Z ")).unwrap_or(false)
}

async fn signal(pid: u32, sig: &str) {
    let _ = tokio::process::Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await;
}

/// SIGTERM, wait up to `grace`, then SIGKILL.
pub async fn stop_pid(pid: u32, grace: Duration) {
    signal(pid, "TERM").await;
    let deadline = tokio::time::Instant::now() + grace;
    while alive(pid) && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if alive(pid) {
        signal(pid, "KILL").await;
    }
}

/// Keeps one instance running until `shutdown`, reporting readiness on `ready` and counting
/// every (re)start in `generation`.
pub async fn supervise(
    p: Prepared,
    ccr: CcrConfig,
    owner: String,
    ready: watch::Sender<bool>,
    generation: std::sync::Arc<std::sync::atomic::AtomicU32>,
    shutdown: CancellationToken,
) {
    let mut restarts = 0u32;
    let mut backoff = Duration::from_secs(1);
    loop {
        if let Err(e) = p.install() {
            warn!(instance = %p.name, "cannot write the CCR config in {}: {e}", p.home.display());
        }
        let mut child = match p.command(&ccr.command).stdout(Stdio::null()).stderr(Stdio::piped()).kill_on_drop(true).spawn() {
            Ok(c) => c,
            Err(e) => {
                warn!(instance = %p.name, "cannot start CCR (`{}`): {e}; retrying in {backoff:?}", ccr.command);
                tokio::select! { _ = shutdown.cancelled() => return, _ = tokio::time::sleep(backoff) => {} }
                backoff = (backoff * 2).min(Duration::from_secs(60));
                continue;
            }
        };
        let pid = child.id();
        generation.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let started = now_ms();
        p.write_state(&State { pid, port: p.port, started_ms: started, restarts, owner: owner.clone() });
        // Keep the last stderr lines for the crash report.
        let tail = std::sync::Arc::new(std::sync::Mutex::new(VecDeque::<String>::new()));
        let reader = child.stderr.take().map(|err| {
            let tail = tail.clone();
            tokio::spawn(async move {
                let mut lines = tokio::io::BufReader::new(err).lines();
                while let Ok(Some(l)) = lines.next_line().await {
                    let mut t = tail.lock().expect("tail lock");
                    if t.len() == 20 {
                        t.pop_front();
                    }
                    t.push_back(l);
                }
            })
        });
        info!(instance = %p.name, port = p.port, pid, "CCR starting");
        let mut was_ready = false;
        let mut misses = 0u32;
        let exit = loop {
            tokio::select! {
                st = child.wait() => break Some(st),
                _ = shutdown.cancelled() => break None,
                _ = tokio::time::sleep(Duration::from_millis(if was_ready { 2000 } else { 150 })) => {
                    let ok = healthy(&p).await;
                    if ok && !was_ready {
                        info!(instance = %p.name, port = p.port, "CCR ready");
                        let _ = ready.send(true);
                        was_ready = true;
                        misses = 0;
                    } else if ok {
                        misses = 0;
                    } else if was_ready {
                        misses += 1;
                        if misses >= 3 {
                            warn!(instance = %p.name, "CCR stopped answering /health; restarting it");
                            let _ = ready.send(false);
                            if let Some(pid) = pid { stop_pid(pid, ccr.grace).await; }
                        }
                    } else if now_ms().saturating_sub(started) > ccr.ready_timeout.as_millis() as u64 {
                        warn!(instance = %p.name, "CCR did not become ready within {}; restarting it", humantime::format_duration(ccr.ready_timeout));
                        if let Some(pid) = pid { stop_pid(pid, ccr.grace).await; }
                    }
                }
            }
        };
        let _ = ready.send(false);
        match exit {
            None => {
                if let Some(pid) = pid {
                    stop_pid(pid, ccr.grace).await;
                }
                let _ = child.wait().await;
                if let Some(r) = reader {
                    r.abort();
                    let _ = r.await;
                }
                p.write_state(&State { pid: None, port: p.port, started_ms: 0, restarts, owner: owner.clone() });
                info!(instance = %p.name, "CCR stopped");
                return;
            }
            Some(status) => {
                if let Some(r) = reader {
                    let _ = tokio::time::timeout(Duration::from_secs(1), r).await;
                }
                let last: Vec<String> = tail.lock().expect("tail lock").iter().cloned().collect();
                let status = status.map(|s| s.to_string()).unwrap_or_else(|e| e.to_string());
                if now_ms().saturating_sub(started) > 60_000 {
                    backoff = Duration::from_secs(1);
                }
                restarts += 1;
                warn!(instance = %p.name, restarts, "CCR exited ({status}); restarting in {backoff:?}; last stderr: {}", last.join(" | "));
                p.write_state(&State { pid: None, port: p.port, started_ms: 0, restarts, owner: owner.clone() });
                tokio::select! { _ = shutdown.cancelled() => return, _ = tokio::time::sleep(backoff) => {} }
                backoff = (backoff * 2).min(Duration::from_secs(60));
            }
        }
    }
}

/// The instances `zo-worker ccr start` left running, for a worker that uses them instead of
/// starting its own (`--use-running-ccr`): each one's key, read from the config it was
/// started with. An instance not running or not answering `/health` is an error that says how
/// to start them.
pub async fn running(list: &[Located], config: &Path) -> Result<Vec<(Located, String)>, String> {
    let mut out = Vec::new();
    let start = format!("zo-worker --config {} ccr start", config.display());
    for at in list {
        let st = at.read_state();
        if !st.pid.is_some_and(alive) {
            return Err(format!("instance `{}`: no CCR started by `zo-worker ccr start` is running; start them with `{start}`", at.name));
        }
        if !healthy(at).await {
            return Err(format!(
                "instance `{}`: the CCR on port {} (pid {}) does not answer /health; restart it with `{start}` after `ccr stop`",
                at.name,
                at.port,
                st.pid.unwrap_or(0)
            ));
        }
        let path = at.home.join(".claude-code-router/config.json");
        let key = std::fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .and_then(|v| v.get("APIKEY").and_then(|k| k.as_str()).map(str::to_string))
            .filter(|k| !k.is_empty())
            .ok_or_else(|| {
                format!("instance `{}`: {} holds no APIKEY; restart it with `{start}` after `ccr stop`", at.name, path.display())
            })?;
        out.push((at.clone(), key));
    }
    Ok(out)
}

/// Follows an instance this worker did not start: ready while it answers `/health`; never
/// started, restarted or stopped from here.
pub async fn follow_running(
    at: Located,
    ready: watch::Sender<bool>,
    generation: std::sync::Arc<std::sync::atomic::AtomicU32>,
    shutdown: CancellationToken,
) {
    generation.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let mut was_ready = None;
    loop {
        let ok = healthy(&at).await;
        if was_ready != Some(ok) {
            if ok {
                info!(instance = %at.name, port = at.port, "using the running CCR");
            } else {
                warn!(instance = %at.name, port = at.port, "the running CCR stopped answering /health; its jobs wait (this worker did not start it and does not restart it)");
            }
            let _ = ready.send(ok);
            was_ready = Some(ok);
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
        }
    }
}

/// `zo-worker ccr start`: starts instances that outlive the command.
pub async fn cli_start(list: &[Prepared], ccr: &CcrConfig) -> Result<Vec<String>, String> {
    let mut report = Vec::new();
    for p in list {
        let st = p.read_state();
        if st.pid.is_some_and(alive) && healthy(p).await {
            report.push(format!("{}: already running (pid {}, port {})", p.name, st.pid.unwrap_or(0), p.port));
            continue;
        }
        if healthy(p).await {
            return Err(format!(
                "{}: port {} already answers /health but no instance of ours runs there; stop that process first",
                p.name, p.port
            ));
        }
        p.install().map_err(|e| format!("{}: cannot write its config in {}: {e}", p.name, p.home.display()))?;
        let log = std::fs::File::create(p.home.join("ccr.log")).map_err(|e| format!("{}: {e}", p.name))?;
        let child = p
            .command(&ccr.command)
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .spawn()
            .map_err(|e| format!("{}: cannot start `{}`: {e}", p.name, ccr.command))?;
        let pid = child.id();
        // Detached on purpose: it outlives this command; `zo-worker ccr stop` ends it.
        drop(child);
        p.write_state(&State { pid, port: p.port, started_ms: now_ms(), restarts: 0, owner: "cli".into() });
        let deadline = tokio::time::Instant::now() + ccr.ready_timeout;
        loop {
            if healthy(p).await {
                report.push(format!("{}: started (pid {}, port {})", p.name, pid.unwrap_or(0), p.port));
                break;
            }
            if !pid.is_some_and(alive) || tokio::time::Instant::now() > deadline {
                let log = std::fs::read_to_string(p.home.join("ccr.log")).unwrap_or_default();
                let last: Vec<&str> = log.lines().rev().take(5).collect();
                return Err(format!(
                    "{}: CCR did not become ready; log {}: {}",
                    p.name,
                    p.home.join("ccr.log").display(),
                    last.into_iter().rev().collect::<Vec<_>>().join(" | ")
                ));
            }
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
    }
    Ok(report)
}

/// `zo-worker ccr stop`.
pub async fn cli_stop(list: &[Located], grace: Duration) -> Vec<String> {
    let mut report = Vec::new();
    for p in list {
        let mut st = p.read_state();
        match st.pid.filter(|&pid| alive(pid)) {
            Some(pid) => {
                stop_pid(pid, grace).await;
                st.pid = None;
                p.write_state(&st);
                report.push(format!("{}: stopped (pid {pid})", p.name));
            }
            None => report.push(format!("{}: not running", p.name)),
        }
    }
    report
}

/// One row of `zo-worker ccr status`.
#[derive(Debug, Clone, Serialize)]
pub struct StatusRow {
    pub instance: String,
    pub model: String,
    pub port: u16,
    pub pid: Option<u32>,
    pub healthy: bool,
    pub uptime_s: Option<u64>,
    pub restarts: u32,
    pub owner: String,
}

pub async fn cli_status(list: &[Located]) -> Vec<StatusRow> {
    let mut rows = Vec::new();
    for p in list {
        let st = p.read_state();
        let pid = st.pid.filter(|&pid| alive(pid));
        rows.push(StatusRow {
            instance: p.name.clone(),
            model: p.model.clone(),
            port: p.port,
            pid,
            healthy: healthy(p).await,
            uptime_s: pid.map(|_| now_ms().saturating_sub(st.started_ms) / 1000),
            restarts: st.restarts,
            owner: if pid.is_some() { st.owner } else { String::new() },
        });
    }
    rows
}
