//! The `ssh` executor: task scripts run on a remote host over multiplexed OpenSSH masters.
//!
//! One master (one TCP connection) carries up to `max_channels` sessions at once, below
//! sshd's `MaxSessions` (10 by default); when all are busy and fewer than `max_masters` exist,
//! another master is opened. A master that fails is dropped and replaced on the next use.
//! Masters persist only while idle for a minute, so a killed worker leaves none behind for long.
//!
//! Tasks start through the remote helper (`helper.rs`), one long-lived process on the host
//! that holds one session of a master; when the host cannot run it (no Perl) or the config
//! says `helper: false`, each task runs the bash wrapper in a session of its own.

use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use std::collections::HashMap;

use openssh::{ControlPersist, ForwardType, KnownHosts, Session, SessionBuilder, Socket, Stdio};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::helper::{helper_args, Helper, HelperSlot, OpenError, HELPER};
use super::{BoxFuture, ExecError, Executor, Group, Spawned, WRAPPER};
use crate::config::{KnownHostsPolicy, SshConfig};

struct Master {
    id: u64,
    session: Arc<Session>,
    slots: Arc<Semaphore>,
}

pub struct SshExecutor {
    cfg: SshConfig,
    /// Reverse tunnels to open: instance → local CCR port.
    tunnels: Vec<(String, u16)>,
    /// Open tunnels: the master carrying them and instance → port on the remote host.
    open_tunnels: Mutex<Option<(u64, HashMap<String, u16>)>>,
    tunnel_gate: tokio::sync::Semaphore,
    /// `user@host:port` for messages.
    label: String,
    masters: Mutex<Vec<Arc<Master>>>,
    next_id: std::sync::atomic::AtomicU64,
    /// Serializes opening masters so a burst of tasks does not open many at once.
    connecting: tokio::sync::Semaphore,
    /// The remote helper, started on first use; without Perl on the host every task gets its
    /// own session.
    helper: HelperSlot,
}

impl SshExecutor {
    pub fn new(cfg: SshConfig) -> Self {
        let mut label = cfg.host.clone();
        if let Some(u) = &cfg.user {
            label = format!("{u}@{label}");
        }
        if let Some(p) = cfg.port {
            label = format!("{label}:{p}");
        }
        SshExecutor {
            cfg,
            tunnels: Vec::new(),
            open_tunnels: Mutex::new(None),
            tunnel_gate: tokio::sync::Semaphore::new(1),
            label: label.clone(),
            masters: Mutex::new(Vec::new()),
            next_id: Default::default(),
            connecting: tokio::sync::Semaphore::new(1),
            helper: HelperSlot::new(
                label.clone(),
                "remote helper",
                "each task gets its own SSH session instead (slower; what a task leaves behind is killed by process group only)",
            ),
        }
    }

    /// Reverse-tunnels each instance's local CCR port to a port on the remote host's loopback,
    /// so the agent there reaches CCR while CCR listens on this machine's loopback only.
    pub fn with_tunnels(mut self, tunnels: Vec<(String, u16)>) -> Self {
        self.tunnels = tunnels;
        self
    }

    /// The open tunnels, (re)opened on a live master when needed. Remote ports are drawn at
    /// random and redrawn when taken, so several workers can share one remote host.
    async fn tunnels(&self) -> Result<HashMap<String, u16>, ExecError> {
        let _gate = self.tunnel_gate.acquire().await.expect("gate never closes");
        let live: Vec<u64> = self.masters.lock().expect("masters lock").iter().map(|m| m.id).collect();
        if let Some((id, ports)) = self.open_tunnels.lock().expect("tunnels lock").as_ref() {
            if live.contains(id) {
                return Ok(ports.clone());
            }
        }
        let (m, permit) = self.slot().await?;
        drop(permit);
        let mut ports = HashMap::new();
        for (instance, local) in &self.tunnels {
            let mut last = String::new();
            let mut opened = None;
            for _ in 0..20 {
                let remote: u16 = 20_000 + rand::random::<u16>() % 40_000;
                match m
                    .session
                    .request_port_forward(ForwardType::Remote, Socket::new("127.0.0.1", remote), Socket::new("127.0.0.1", *local))
                    .await
                {
                    Ok(()) => {
                        opened = Some(remote);
                        break;
                    }
                    Err(e) => last = describe(&e),
                }
            }
            let remote = opened.ok_or_else(|| {
                ExecError::Network(format!("cannot open a reverse tunnel on {} for instance `{instance}`: {last}", self.label))
            })?;
            tracing::info!(host = %self.label, instance = %instance, remote_port = remote, local_port = local, "reverse tunnel to CCR open");
            ports.insert(instance.clone(), remote);
        }
        *self.open_tunnels.lock().expect("tunnels lock") = Some((m.id, ports.clone()));
        Ok(ports)
    }

    fn builder(&self) -> SessionBuilder {
        let c = &self.cfg;
        let mut b = SessionBuilder::default();
        if let Some(u) = &c.user {
            b.user(u.clone());
        }
        if let Some(p) = c.port {
            b.port(p);
        }
        if let Some(k) = &c.identity_file {
            b.keyfile(expand_home(k));
        }
        b.known_hosts_check(match c.known_hosts {
            KnownHostsPolicy::Strict => KnownHosts::Strict,
            KnownHostsPolicy::AcceptNew => KnownHosts::Add,
            KnownHostsPolicy::Off => KnownHosts::Accept,
        });
        if let Some(f) = &c.known_hosts_file {
            b.user_known_hosts_file(expand_home(f));
        }
        if let Some(f) = &c.ssh_config {
            b.config_file(expand_home(f));
        }
        if let Some(d) = &c.control_dir {
            b.control_directory(d);
        }
        b.connect_timeout(c.connect_timeout);
        b.server_alive_interval(std::time::Duration::from_secs(15));
        b.control_persist(ControlPersist::IdleFor(NonZeroUsize::new(60).expect("non-zero")));
        b
    }

    async fn connect(&self) -> Result<Arc<Master>, ExecError> {
        let session = self
            .builder()
            .connect_mux(&self.cfg.host)
            .await
            .map_err(|e| ExecError::Network(format!("cannot connect to {}: {}", self.label, describe(&e))))?;
        let id = self.next_id.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        tracing::info!(host = %self.label, master = id, "SSH master connected");
        Ok(Arc::new(Master { id, session: Arc::new(session), slots: Arc::new(Semaphore::new(self.cfg.max_channels)) }))
    }

    /// A master with a free channel slot: an existing one, a new one, or the first to free up.
    async fn slot(&self) -> Result<(Arc<Master>, OwnedSemaphorePermit), ExecError> {
        loop {
            let masters: Vec<Arc<Master>> = self.masters.lock().expect("masters lock").clone();
            for m in &masters {
                if let Ok(p) = m.slots.clone().try_acquire_owned() {
                    return Ok((m.clone(), p));
                }
            }
            if masters.len() < self.cfg.max_masters {
                let _gate = self.connecting.acquire().await.expect("gate never closes");
                // Someone else may have connected while we waited at the gate.
                if self.masters.lock().expect("masters lock").len() != masters.len() {
                    continue;
                }
                let m = self.connect().await?;
                let p = m.slots.clone().try_acquire_owned().expect("fresh master has slots");
                self.masters.lock().expect("masters lock").push(m.clone());
                return Ok((m, p));
            }
            // All masters busy: wait for the least loaded one.
            let m = masters.iter().max_by_key(|m| m.slots.available_permits()).expect("at least one master").clone();
            let p = m.slots.clone().acquire_owned().await.expect("semaphore never closes");
            return Ok((m, p));
        }
    }

    fn drop_master(&self, id: u64) {
        let mut ms = self.masters.lock().expect("masters lock");
        if let Some(pos) = ms.iter().position(|m| m.id == id) {
            ms.remove(pos);
            crate::metrics::ssh_reconnect(&self.label);
            tracing::warn!(host = %self.label, master = id, "SSH master dropped after a failure; the next task reconnects");
        }
    }

    async fn spawn_on(&self, m: &Arc<Master>, command: &str, piped: bool) -> Result<openssh::Child<Arc<Session>>, openssh::Error> {
        let mut cmd = m.session.clone().arc_raw_command(command);
        if piped {
            cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
        } else {
            cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
        }
        cmd.spawn().await
    }

    /// Spawns on a healthy master. A dead master is replaced (once); a session the server
    /// refuses while it still counts channels we just closed (MaxSessions) is retried shortly.
    async fn spawn_retrying(&self, command: &str, piped: bool) -> Result<(openssh::Child<Arc<Session>>, OwnedSemaphorePermit), ExecError> {
        let mut reconnects = 0;
        let mut refusals = 0u32;
        loop {
            let (m, permit) = self.slot().await?;
            let e = match self.spawn_on(&m, command, piped).await {
                Ok(child) => return Ok((child, permit)),
                Err(e) => e,
            };
            drop(permit);
            let why = describe(&e);
            if m.session.check().await.is_err() {
                self.drop_master(m.id);
                reconnects += 1;
                if reconnects <= 1 {
                    continue;
                }
            } else if why.contains("refused") && refusals < 30 {
                refusals += 1;
                tokio::time::sleep(std::time::Duration::from_millis(10 * u64::from(refusals.min(10)))).await;
                continue;
            }
            return Err(ExecError::Network(format!("cannot start a session on {}: {why}", self.label)));
        }
    }
}

impl SshExecutor {
    /// Starts `perl -e HELPER` over a session of a master and opens it. A host that cannot
    /// run it (no Perl) while its connection is fine gets tasks in sessions of their own.
    async fn open_helper(&self) -> Result<Helper, OpenError> {
        let (mut child, permit) = self.spawn_retrying(&helper_command(), true).await.map_err(OpenError::Exec)?;
        let stdin = child.stdin().take().expect("piped");
        let stdout = child.stdout().take().expect("piped");
        let stderr = child.stderr().take().expect("piped");
        let session = child.session();
        let exited: BoxFuture<'static, Option<i32>> = Box::pin(async move {
            let code = child.wait().await.ok().and_then(|s| s.code());
            drop(permit);
            code
        });
        match Helper::open(stdin, stdout, stderr, exited, self.label.clone(), self.cfg.connect_timeout).await {
            Err(OpenError::Unavailable(why)) => match session.check().await {
                Err(e) => Err(OpenError::Network(format!("connection lost: {}", describe(&e)))),
                Ok(()) => Err(OpenError::Unavailable(why)),
            },
            other => other,
        }
    }

    async fn spawn_wrapper(&self) -> Result<Spawned, ExecError> {
        let (mut child, permit) = self.spawn_retrying(&wrapper_command(), true).await?;
        let stdin = child.stdin().take().expect("piped");
        let stdout = child.stdout().take().expect("piped");
        let stderr = child.stderr().take().expect("piped");
        let label = self.label.clone();
        let session = child.session();
        Ok(Spawned {
            stdin: Box::new(stdin),
            stdout: Box::new(stdout),
            stderr: Box::new(stderr),
            wait: Box::pin(async move {
                let r = child.wait().await;
                drop(permit);
                match r {
                    Ok(s) => Ok(s.code()),
                    // The mux protocol cannot tell a killed process from a lost
                    // connection; a dead master means the connection was lost.
                    Err(openssh::Error::RemoteProcessTerminated) => match session.check().await {
                        Ok(()) => Ok(None),
                        Err(e) => Err(ExecError::Network(format!("connection to {label} lost: {}", describe(&e)))),
                    },
                    Err(e) => Err(ExecError::Network(format!("connection to {label} lost: {}", describe(&e)))),
                }
            }),
            group: Group::Wrapper,
        })
    }
}

fn helper_command() -> String {
    format!("exec perl -e {} {}", super::shell_quote(HELPER), helper_args().join(" "))
}

fn wrapper_command() -> String {
    format!("bash -c {}", super::shell_quote(WRAPPER))
}

fn expand_home(p: &std::path::Path) -> PathBuf {
    match (p.strip_prefix("~"), std::env::var_os("HOME")) {
        (Ok(rest), Some(home)) => PathBuf::from(home).join(rest),
        _ => p.to_path_buf(),
    }
}

/// The error and its causes on one line.
fn describe(e: &openssh::Error) -> String {
    let mut s = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(c) = src {
        let t = c.to_string();
        if !t.is_empty() && !s.contains(&t) {
            s.push_str(": ");
            s.push_str(t.trim());
        }
        src = c.source();
    }
    s
}

impl Executor for SshExecutor {
    fn spawn<'a>(&'a self, script: &'a str, prompt: Option<&'a str>) -> BoxFuture<'a, Result<Spawned, ExecError>> {
        Box::pin(async move {
            if self.cfg.helper {
                if let Some(s) = self.helper.start(|| self.open_helper(), script, prompt).await? {
                    return Ok(s);
                }
            }
            self.spawn_wrapper().await
        })
    }

    fn run_plain<'a>(&'a self, script: &'a str) -> BoxFuture<'a, Result<Option<i32>, ExecError>> {
        Box::pin(async move {
            let (child, permit) = self.spawn_retrying(&format!("sh -c {}", super::shell_quote(script)), false).await?;
            let r = child.wait().await;
            drop(permit);
            match r {
                Ok(s) => Ok(s.code()),
                Err(e) => Err(ExecError::Network(format!("{}: {}", self.label, describe(&e)))),
            }
        })
    }

    fn host(&self) -> &str {
        &self.label
    }

    fn agent_port<'a>(&'a self, instance: &'a str) -> BoxFuture<'a, Result<Option<u16>, ExecError>> {
        Box::pin(async move {
            if !self.tunnels.iter().any(|(i, _)| i == instance) {
                return Ok(None);
            }
            Ok(self.tunnels().await?.get(instance).copied())
        })
    }

    fn close(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            self.helper.close().await;
            let masters: Vec<Arc<Master>> = std::mem::take(&mut *self.masters.lock().expect("masters lock"));
            for m in masters {
                if let Ok(m) = Arc::try_unwrap(m) {
                    if let Ok(s) = Arc::try_unwrap(m.session) {
                        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), s.close()).await;
                    }
                }
            }
        })
    }
}
