//! The remote helper: one long-lived process on the execution host that starts task scripts
//! for the SSH executor, so that a task costs one fork and exec there instead of an SSH
//! session, a login shell and the bash wrapper.
//!
//! The helper is a small Perl program ([`HELPER`]; `perl-base` is on every Debian/Ubuntu
//! host, Perl on nearly every other) started once over a session of an SSH master. It talks
//! frames over that session's stdin/stdout: `type (1 byte) | id (u32 BE) | length (u32 BE) |
//! payload`.
//!
//! | from | type | payload |
//! |---|---|---|
//! | worker | `S` start | script length (u32 BE), script, `1`/`0` (has prompt), prompt |
//! | worker | `I` / `E` | stdin bytes / end of stdin |
//! | worker | `K` kill | — (TERM to the task's process group, KILL after 1–2 s) |
//! | helper | `H` hello | `zo-helper 1` (sent once at start) |
//! | helper | `O` / `R` | stdout / stderr bytes |
//! | helper | `o` / `r` | end of stdout / stderr |
//! | helper | `X` exit | exit code, or minus the signal (i32 BE), after both ends |
//!
//! Each task runs its script in bash in its own session (`setsid`), so its process group id is
//! its pid and a timeout kills the whole tree. Every process a task starts inherits a token
//! (`ZO_TASK_TOKEN`): when the task's shell ends, its session is killed at once (background
//! children such as `sleep 1000 &`), and within a second a sweep of `/proc` kills whatever
//! carries the token but left the session (`setsid`, double forks); a timeout or cancel sweeps
//! before the task is reported ended. Only a process that clears its whole environment and
//! leaves its session escapes. User text travels inside frames and reaches bash
//! through its environment (`ZO_SCRIPT`, unset before the script runs), never through a command
//! line or shell quoting: other users on the host cannot read a task's script (which holds the
//! agent's key) with `ps`. When the helper's stdin closes (the worker
//! exited or the connection dropped) it kills every task's group and exits, so no orphan
//! outlives the worker.

use std::collections::HashMap;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::{BoxFuture, ExecError, Group, Spawned};

/// The helper program (`helper.pl`), run as `perl -e HELPER SPILL_OVER`: its one argument
/// is the size past which a script or prompt travels in a private file ([`super::SPILL_OVER`],
/// the one place that number is set).
pub const HELPER: &str = include_str!("helper.pl");

/// The helper's command-line arguments after `-e HELPER`.
pub fn helper_args() -> [String; 1] {
    [super::SPILL_OVER.to_string()]
}

#[cfg(test)]
#[path = "helper_tests.rs"]
mod tests;

/// How the helper's stderr for a task starts when bash could not be run.
pub const NO_BASH: &str = "zo helper: cannot run bash";

/// A helper started on first use and replaced when it dies; once the host turned out unable to
/// run one (no Perl), tasks take the executor's fallback instead. Shared by the SSH and the
/// local executor.
pub struct HelperSlot {
    current: Mutex<Option<Arc<Helper>>>,
    /// Serializes starting (and replacing) the helper.
    gate: tokio::sync::Semaphore,
    unavailable: std::sync::atomic::AtomicBool,
    label: String,
    /// For the log: what the helper is ("remote helper"), and what tasks do without it.
    kind: &'static str,
    fallback: &'static str,
}

impl HelperSlot {
    pub fn new(label: String, kind: &'static str, fallback: &'static str) -> Self {
        HelperSlot {
            current: Mutex::new(None),
            gate: tokio::sync::Semaphore::new(1),
            unavailable: Default::default(),
            label,
            kind,
            fallback,
        }
    }

    fn live(&self) -> Option<Arc<Helper>> {
        self.current.lock().expect("helper lock").as_ref().filter(|h| h.alive()).cloned()
    }

    /// The running helper, started with `open` when there is none; `None` when the host
    /// cannot run one.
    async fn get<F, Fut>(&self, open: &F) -> Result<Option<Arc<Helper>>, ExecError>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<Helper, OpenError>>,
    {
        for _ in 0..2 {
            if let Some(h) = self.live() {
                return Ok(Some(h));
            }
            if self.unavailable.load(Ordering::Relaxed) {
                return Ok(None);
            }
            let Ok(_gate) = self.gate.try_acquire() else {
                // Someone else is starting it: wait for them, then look again.
                let _wait = self.gate.acquire().await.expect("gate never closes");
                continue;
            };
            let dead = self.current.lock().expect("helper lock").take();
            if let Some(old) = dead {
                old.close().await;
            }
            return match open().await {
                Ok(h) => {
                    let h = Arc::new(h);
                    *self.current.lock().expect("helper lock") = Some(h.clone());
                    tracing::info!(host = %self.label, "{} started: tasks end with their whole process tree, and with the worker", self.kind);
                    Ok(Some(h))
                }
                Err(OpenError::Network(why)) => Err(ExecError::Network(format!("{}: {why}", self.label))),
                Err(OpenError::Exec(e)) => Err(e),
                Err(OpenError::Unavailable(why)) => {
                    tracing::warn!(host = %self.label, "cannot start the {} ({why}); {}", self.kind, self.fallback);
                    self.unavailable.store(true, Ordering::Relaxed);
                    Ok(None)
                }
            };
        }
        Ok(self.live())
    }

    /// Starts a task through the helper (a helper that died is replaced once); `None` when
    /// the host cannot run one.
    pub async fn start<F, Fut>(&self, open: F, script: &str, prompt: Option<&str>) -> Result<Option<Spawned>, ExecError>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<Helper, OpenError>>,
    {
        let mut tries = 0;
        loop {
            let Some(h) = self.get(&open).await? else { return Ok(None) };
            match h.start(script, prompt) {
                Ok(s) => return Ok(Some(s)),
                Err(e) if tries > 0 => return Err(e),
                Err(_) => tries += 1,
            }
        }
    }

    /// Ends the helper (it kills what still runs).
    pub async fn close(&self) {
        let h = self.current.lock().expect("helper lock").take();
        if let Some(h) = h {
            h.close().await;
        }
    }
}

/// Why a helper could not be started.
#[derive(Debug)]
pub enum OpenError {
    /// The host cannot run it (no Perl, …): use one SSH session per task instead.
    Unavailable(String),
    /// The connection failed while starting it.
    Network(String),
    /// Starting it failed before it could run, for a reason already said in full.
    Exec(ExecError),
}

enum Msg {
    Frame(Vec<u8>),
    Close,
}

/// What the reader routes a task's frames to.
struct Proc {
    out: Option<mpsc::UnboundedSender<Vec<u8>>>,
    err: Option<mpsc::UnboundedSender<Vec<u8>>>,
    exit: Option<oneshot::Sender<Option<i32>>>,
}

#[derive(Default)]
struct Procs {
    /// Set when the helper is gone: why.
    dead: Option<String>,
    map: HashMap<u32, Proc>,
}

/// A running helper on the execution host.
pub struct Helper {
    frames: mpsc::UnboundedSender<Msg>,
    procs: Arc<Mutex<Procs>>,
    next: AtomicU32,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    label: String,
}

fn frame(kind: u8, id: u32, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(9 + payload.len());
    f.push(kind);
    f.extend_from_slice(&id.to_be_bytes());
    f.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// Reads one frame; `None` at a clean end of stream.
async fn read_frame(r: &mut (impl AsyncRead + Unpin)) -> io::Result<Option<(u8, u32, Vec<u8>)>> {
    let mut head = [0u8; 9];
    match r.read_exact(&mut head).await {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let id = u32::from_be_bytes(head[1..5].try_into().expect("4 bytes"));
    let len = u32::from_be_bytes(head[5..9].try_into().expect("4 bytes")) as usize;
    let mut payload = vec![0u8; len];
    r.read_exact(&mut payload).await?;
    Ok(Some((head[0], id, payload)))
}

impl Helper {
    /// Takes over a freshly started `perl -e HELPER` process (its stdio piped) and waits for
    /// its hello. `exited` resolves to its exit code once it has exited (and releases the
    /// session it runs on).
    pub async fn open<I, O, E>(
        stdin: I,
        stdout: O,
        mut stderr: E,
        exited: BoxFuture<'static, Option<i32>>,
        label: String,
        timeout: Duration,
    ) -> Result<Helper, OpenError>
    where
        I: AsyncWrite + Send + Unpin + 'static,
        O: AsyncRead + Send + Unpin + 'static,
        E: AsyncRead + Send + Unpin + 'static,
    {
        let mut stdout = tokio::io::BufReader::with_capacity(256 * 1024, stdout);
        let hello = tokio::time::timeout(timeout, read_frame(&mut stdout)).await;
        match hello {
            Ok(Ok(Some((b'H', 0, p)))) if p == b"zo-helper 1" => {}
            other => {
                let mut why = Vec::new();
                let _ = tokio::time::timeout(Duration::from_secs(2), (&mut stderr).take(4096).read_to_end(&mut why)).await;
                drop((stdin, stdout, stderr));
                let code = tokio::time::timeout(Duration::from_secs(5), exited).await.ok().flatten();
                let why = String::from_utf8_lossy(&why).trim().to_string();
                // The shell could not find or run perl: the host cannot have a helper. (The
                // exit code does not always make it through the mux, so the message counts.)
                let no_perl = matches!(code, Some(126 | 127))
                    || (why.contains("perl") && ["not found", "No such file", "Permission denied"].iter().any(|m| why.contains(m)));
                return Err(match other {
                    Err(_) => OpenError::Unavailable(format!("the helper did not start within {timeout:?} {why}")),
                    Ok(Err(e)) => OpenError::Network(format!("starting the helper: {e}")),
                    _ if no_perl => OpenError::Unavailable(if why.is_empty() { "perl cannot be run".into() } else { why }),
                    // Killed or failed while starting: try again with the next task.
                    _ => OpenError::Network(format!(
                        "the helper stopped while starting: {}",
                        if why.is_empty() { "no message" } else { &why }
                    )),
                });
            }
        }
        let procs = Arc::new(Mutex::new(Procs::default()));
        let (tx, rx) = mpsc::unbounded_channel();
        let writer = tokio::spawn(write_frames(stdin, rx));
        let reader = tokio::spawn(read_frames(stdout, stderr, procs.clone(), exited, label.clone()));
        Ok(Helper { frames: tx, procs, next: AtomicU32::new(1), tasks: Mutex::new(vec![writer, reader]), label })
    }

    /// Whether the helper is still running.
    pub fn alive(&self) -> bool {
        self.procs.lock().expect("procs lock").dead.is_none()
    }

    /// Starts `bash -c script` on the host, with `ZO_PROMPT` set when a prompt is given.
    pub fn start(&self, script: &str, prompt: Option<&str>) -> Result<Spawned, ExecError> {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let (out_tx, out_rx) = mpsc::unbounded_channel();
        let (err_tx, err_rx) = mpsc::unbounded_channel();
        let (exit_tx, exit_rx) = oneshot::channel();
        {
            let mut p = self.procs.lock().expect("procs lock");
            if let Some(why) = &p.dead {
                return Err(ExecError::Network(why.clone()));
            }
            p.map.insert(id, Proc { out: Some(out_tx), err: Some(err_tx), exit: Some(exit_tx) });
        }
        let mut payload = Vec::with_capacity(5 + script.len() + prompt.map_or(0, str::len));
        payload.extend_from_slice(&(script.len() as u32).to_be_bytes());
        payload.extend_from_slice(script.as_bytes());
        payload.push(if prompt.is_some() { b'1' } else { b'0' });
        payload.extend_from_slice(prompt.unwrap_or("").as_bytes());
        if self.frames.send(Msg::Frame(frame(b'S', id, &payload))).is_err() {
            self.procs.lock().expect("procs lock").map.remove(&id);
            return Err(ExecError::Network(format!("the helper on {} is gone", self.label)));
        }
        let procs = self.procs.clone();
        let killer = self.frames.clone();
        Ok(Spawned {
            stdin: Box::new(FrameWriter { id, frames: self.frames.clone(), closed: false }),
            stdout: Box::new(ChannelReader { rx: out_rx, pending: Vec::new(), pos: 0 }),
            stderr: Box::new(ChannelReader { rx: err_rx, pending: Vec::new(), pos: 0 }),
            wait: Box::pin(async move {
                match exit_rx.await {
                    Ok(code) => Ok(code),
                    Err(_) => {
                        let why = procs.lock().expect("procs lock").dead.clone().unwrap_or_else(|| "the helper is gone".into());
                        Err(ExecError::Network(why))
                    }
                }
            }),
            group: Group::Helper {
                kill: Box::new(move || {
                    let _ = killer.send(Msg::Frame(frame(b'K', id, b"")));
                }),
            },
        })
    }

    /// Ends the helper (it kills what still runs) and waits for its tasks.
    pub async fn close(&self) {
        let _ = self.frames.send(Msg::Close);
        let tasks: Vec<JoinHandle<()>> = std::mem::take(&mut *self.tasks.lock().expect("tasks lock"));
        for mut t in tasks {
            if tokio::time::timeout(Duration::from_secs(5), &mut t).await.is_err() {
                t.abort();
                let _ = t.await;
            }
        }
    }
}

impl Drop for Helper {
    fn drop(&mut self) {
        for t in self.tasks.lock().expect("tasks lock").drain(..) {
            t.abort();
        }
    }
}

async fn write_frames(mut stdin: impl AsyncWrite + Unpin, mut rx: mpsc::UnboundedReceiver<Msg>) {
    let mut buf = Vec::with_capacity(64 * 1024);
    while let Some(msg) = rx.recv().await {
        let mut close = false;
        let mut next = Some(msg);
        // Gather what is already queued into one write.
        while let Some(m) = next {
            match m {
                Msg::Frame(f) => buf.extend_from_slice(&f),
                Msg::Close => close = true,
            }
            next = if close || buf.len() >= 1 << 20 { None } else { rx.try_recv().ok() };
        }
        if !buf.is_empty() && stdin.write_all(&buf).await.is_err() {
            break;
        }
        buf.clear();
        if close {
            break;
        }
    }
    let _ = stdin.shutdown().await;
}

async fn read_frames(
    mut stdout: impl AsyncRead + Unpin,
    stderr: impl AsyncRead + Unpin,
    procs: Arc<Mutex<Procs>>,
    exited: BoxFuture<'static, Option<i32>>,
    label: String,
) {
    let route = async {
        loop {
            let (kind, id, payload) = match read_frame(&mut stdout).await {
                Ok(Some(f)) => f,
                Ok(None) => return format!("the helper on {label} exited"),
                Err(e) => return format!("connection to {label} lost: {e}"),
            };
            let mut p = procs.lock().expect("procs lock");
            let Some(proc) = p.map.get_mut(&id) else { continue };
            match kind {
                b'O' => {
                    if let Some(tx) = &proc.out {
                        let _ = tx.send(payload);
                    }
                }
                b'R' => {
                    if let Some(tx) = &proc.err {
                        let _ = tx.send(payload);
                    }
                }
                b'o' => proc.out = None,
                b'r' => proc.err = None,
                b'X' if payload.len() == 4 => {
                    let code = i32::from_be_bytes(payload[..4].try_into().expect("4 bytes"));
                    if let Some(proc) = p.map.remove(&id) {
                        if let Some(exit) = proc.exit {
                            let _ = exit.send((code >= 0).then_some(code));
                        }
                    }
                }
                _ => {}
            }
        }
    };
    // The helper writes nothing on stderr unless Perl itself complains; keep it drained.
    let drain = async {
        let mut lines = tokio::io::BufReader::new(stderr);
        let mut line = String::new();
        while matches!(tokio::io::AsyncBufReadExt::read_line(&mut lines, &mut line).await, Ok(n) if n > 0) {
            tracing::warn!(host = %label, "remote helper: {}", line.trim_end());
            line.clear();
        }
    };
    let (why, ()) = tokio::join!(route, drain);
    let orphans = {
        let mut p = procs.lock().expect("procs lock");
        p.dead = Some(why);
        std::mem::take(&mut p.map)
    };
    drop(orphans); // Their readers see EOF and their waits a lost connection.
    let _ = exited.await;
}

/// A task's stdin: each write becomes an `I` frame, shutdown an `E` frame.
struct FrameWriter {
    id: u32,
    frames: mpsc::UnboundedSender<Msg>,
    closed: bool,
}

impl AsyncWrite for FrameWriter {
    fn poll_write(self: Pin<&mut Self>, _: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let n = buf.len().min(256 * 1024);
        match self.frames.send(Msg::Frame(frame(b'I', self.id, &buf[..n]))) {
            Ok(()) => Poll::Ready(Ok(n)),
            Err(_) => Poll::Ready(Err(io::ErrorKind::BrokenPipe.into())),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        if !self.closed {
            self.closed = true;
            let _ = self.frames.send(Msg::Frame(frame(b'E', self.id, b"")));
        }
        Poll::Ready(Ok(()))
    }
}

impl Drop for FrameWriter {
    fn drop(&mut self) {
        if !self.closed {
            let _ = self.frames.send(Msg::Frame(frame(b'E', self.id, b"")));
        }
    }
}

/// A task's stdout or stderr: the chunks the reader routes to it, then EOF.
struct ChannelReader {
    rx: mpsc::UnboundedReceiver<Vec<u8>>,
    pending: Vec<u8>,
    pos: usize,
}

impl AsyncRead for ChannelReader {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        if self.pos >= self.pending.len() {
            match self.rx.poll_recv(cx) {
                Poll::Ready(Some(chunk)) => {
                    self.pending = chunk;
                    self.pos = 0;
                }
                Poll::Ready(None) => return Poll::Ready(Ok(())),
                Poll::Pending => return Poll::Pending,
            }
        }
        let n = (self.pending.len() - self.pos).min(buf.remaining());
        let start = self.pos;
        buf.put_slice(&self.pending[start..start + n]);
        self.pos += n;
        Poll::Ready(Ok(()))
    }
}
