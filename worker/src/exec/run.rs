//! One script run to its end on any executor: the script and prompt handed over, stdin fed,
//! stdout and stderr collected up to a limit, the deadline and a cancel answered by killing
//! the script's process group; bash missing on the host told apart from a failing script.

use std::time::Duration;

use base64::Engine as _;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::helper::NO_BASH;
use super::{ExecError, Executor, Group, Spawned, WRAPPER_PROTOCOL_EXIT};

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

/// Which stream a chunk of output came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// Where a running script's output goes as it arrives, besides the result (which keeps it up
/// to the output limit): every chunk, in order per stream, none past the end of the script.
/// Live output streams through one; a run nobody watches passes [`Discard`].
pub trait OutputSink: Send + Sync {
    fn chunk(&self, stream: Stream, bytes: &[u8]);
}

/// The sink of a run nobody watches.
pub struct Discard;

impl OutputSink for Discard {
    fn chunk(&self, _: Stream, _: &[u8]) {}
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

/// Reads everything, keeping at most `limit` bytes; every chunk also goes to `sink`.
async fn read_capped(mut r: impl AsyncRead + Unpin, limit: usize, sink: &dyn OutputSink, stream: Stream) -> (Vec<u8>, bool) {
    let mut kept = Vec::new();
    let mut truncated = false;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                sink.chunk(stream, &buf[..n]);
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

/// Reads stderr, reporting the `ZO-PGID` line as soon as it arrives and removing it. The
/// sink gets what came before that line once it is found, then every chunk.
async fn read_stderr(
    mut r: impl AsyncRead + Unpin,
    limit: usize,
    pgid_tx: tokio::sync::watch::Sender<Option<i32>>,
    sink: &dyn OutputSink,
) -> (Vec<u8>, bool) {
    let mut kept = Vec::new();
    let mut truncated = false;
    let mut found = false;
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match r.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if found {
            sink.chunk(Stream::Stderr, &buf[..n]);
        }
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
                    sink.chunk(Stream::Stderr, &kept);
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
/// script's whole process group is killed on the execution host (TERM, then KILL). Output
/// goes to `sink` as it arrives and is kept for the result up to `limit` bytes per stream.
#[allow(clippy::too_many_arguments)]
pub async fn run_script(
    ex: &dyn Executor,
    script: &str,
    prompt: Option<&str>,
    input: &[u8],
    deadline: Instant,
    cancel: &CancellationToken,
    limit: usize,
    sink: &dyn OutputSink,
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
            read_stderr(stderr, limit, pgid_tx, sink).await
        } else {
            read_capped(stderr, limit, sink, Stream::Stderr).await
        }
    };
    let work = async {
        // Wait only after stdout and stderr reached EOF: with OpenSSH multiplexing, a finished
        // wait closes the mux connection and the master stops forwarding output that is still
        // in flight (openssh-rust/openssh#103).
        let (_, (out, out_trunc), (err, err_trunc)) = tokio::join!(feed, read_capped(stdout, limit, sink, Stream::Stdout), read_err);
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
                exit_code == Some(127) && stderr.starts_with(NO_BASH.as_bytes())
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

    #[tokio::test]
    async fn stderr_pgid_line_is_extracted() {
        let (tx, rx) = tokio::sync::watch::channel(None);
        let (err, _) = read_stderr(&b"ZO-PGID 4242\nwarning: x\n"[..], 1024, tx, &Discard).await;
        assert_eq!(*rx.borrow(), Some(4242));
        assert_eq!(err, b"warning: x\n");
    }

    /// Collects what a sink is given, per stream.
    #[derive(Default)]
    struct Record(std::sync::Mutex<(Vec<u8>, Vec<u8>)>);

    impl OutputSink for Record {
        fn chunk(&self, stream: Stream, bytes: &[u8]) {
            let mut got = self.0.lock().unwrap();
            match stream {
                Stream::Stdout => got.0.extend_from_slice(bytes),
                Stream::Stderr => got.1.extend_from_slice(bytes),
            }
        }
    }

    /// The wrapper's stderr: the sink gets what the result keeps, without the `ZO-PGID` line,
    /// over several reads.
    #[tokio::test]
    async fn the_sink_gets_stderr_without_the_group_line() {
        let text = format!("early\nZO-PGID 42\n{}\nlate\n", "x".repeat(40 << 10));
        let (tx, rx) = tokio::sync::watch::channel(None);
        let rec = Record::default();
        let (err, truncated) = read_stderr(text.as_bytes(), 1 << 20, tx, &rec).await;
        assert_eq!(*rx.borrow(), Some(42));
        assert!(!truncated);
        assert_eq!(rec.0.into_inner().unwrap().1, err);
        assert!(err.starts_with(b"early\nxxx") && err.ends_with(b"x\nlate\n"), "{}", String::from_utf8_lossy(&err[..20]));
    }

    /// Through a local executor, with and without the helper: the sink sees both streams as
    /// the result keeps them, and sees output past the limit the result keeps.
    #[tokio::test]
    async fn the_sink_sees_both_streams_of_a_script() {
        for helper in [true, false] {
            let ex = crate::exec::local::LocalExecutor::new(helper, None);
            let rec = Record::default();
            let script = "for i in 1 2 3; do echo out$i; echo err$i >&2; done; head -c 5000 /dev/zero";
            let deadline = Instant::now() + Duration::from_secs(30);
            let out = run_script(&ex, script, None, &[], deadline, &CancellationToken::new(), 1000, &rec).await.unwrap();
            let (o, e) = rec.0.into_inner().unwrap();
            assert_eq!(e, b"err1\nerr2\nerr3\n", "helper {helper}");
            assert_eq!(e, out.stderr, "helper {helper}");
            assert_eq!(o.len(), 15 + 5000, "helper {helper}: the sink sees everything");
            assert!(out.truncated && out.stdout.len() == 1000 && o.starts_with(&out.stdout), "helper {helper}");
            ex.close().await;
        }
    }
}
