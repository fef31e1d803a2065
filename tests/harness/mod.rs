//! Test harness for the end-to-end tests: a private `redis-server` and a private `sshd`, each
//! on a free loopback port with throwaway keys, a dedicated login user with a plain profile,
//! and helpers to run the real `zo-submit` and `zo-worker` binaries.
//!
//! Nothing here touches the machine's shared Redis: every test starts its own server and
//! uses its own namespace.

mod docs;
mod runs;
mod specs;
mod submitting;
mod wait;
pub use docs::{json_doc, rfc3339_ms, submit_json, tasks_by_name};
pub use wait::{adopt_orphans, process_alive, wait_until};
pub mod ccr_setup;
pub mod stub_provider;

pub use runs::Recorded;
pub use specs::{script_result, simulated_tasks, true_task};
pub use submitting::spawn_submit;
use submitting::submit_command;

use std::fs;
use std::io::Write as _;
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The login user the tests' sshd lets in.
pub const SSH_USER: &str = "zo-e2e";

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

fn wait_for_port(port: u16, what: &str, child: &mut Child) {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(10) {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        if let Ok(Some(st)) = child.try_wait() {
            panic!("{what} exited early: {st}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("{what} did not listen on port {port} within 10s");
}

/// Kills a child on drop and reaps it.
pub struct Guard(pub Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A private redis-server.
pub struct Redis {
    pub port: u16,
    dir: tempfile::TempDir,
    aof: bool,
    child: Guard,
}

impl Redis {
    pub fn start() -> Redis {
        Self::start_with(false)
    }

    /// With AOF (`appendfsync everysec`), as production should run it.
    pub fn start_aof() -> Redis {
        Self::start_with(true)
    }

    fn spawn(port: u16, dir: &Path, aof: bool) -> Child {
        Self::try_spawn(port, dir, aof).unwrap_or_else(|| panic!("redis-server did not start on port {port}"))
    }

    /// Starts redis-server on `port`; `None` when what answers there is not this server
    /// (another test's server took the port first: free ports are only free when asked).
    fn try_spawn(port: u16, dir: &Path, aof: bool) -> Option<Child> {
        let mut child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", if aof { "yes" } else { "no" }])
            .args(["--appendfsync", "everysec", "--maxmemory-policy", "noeviction", "--dir"])
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is installed (run .ci/run, or apt-get install redis-server)");
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(10) {
            if let Ok(Some(_)) = child.try_wait() {
                return None;
            }
            let info = redis::Client::open(format!("redis://127.0.0.1:{port}"))
                .and_then(|c| c.get_connection_with_timeout(Duration::from_secs(1)))
                .and_then(|mut c| redis::cmd("INFO").arg("server").query::<String>(&mut c));
            if let Ok(info) = info {
                let pid = info.lines().find_map(|l| l.strip_prefix("process_id:")).map(|p| p.trim().to_string());
                if pid == Some(child.id().to_string()) {
                    return Some(child);
                }
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        None
    }

    fn start_with(aof: bool) -> Redis {
        let dir = tempfile::tempdir().expect("tempdir");
        for _ in 0..10 {
            let port = free_port();
            if let Some(child) = Self::try_spawn(port, dir.path(), aof) {
                return Redis { port, dir, aof, child: Guard(child) };
            }
        }
        panic!("redis-server did not start on any of 10 free ports");
    }

    /// SIGKILL the server (no shutdown save).
    pub fn kill(&mut self) {
        let _ = self.child.0.kill();
        let _ = self.child.0.wait();
    }

    /// Start it again on the same port and data directory.
    pub fn restart(&mut self) {
        self.kill();
        self.child = Guard(Self::spawn(self.port, self.dir.path(), self.aof));
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn client(&self) -> redis::Connection {
        redis::Client::open(self.url()).expect("client").get_connection().expect("connect")
    }

    /// A connection, or `None` while the server is down (restarting).
    pub fn client_checked(&self) -> Option<redis::Connection> {
        redis::Client::open(self.url()).ok()?.get_connection_with_timeout(Duration::from_secs(1)).ok()
    }
}

fn run_ok(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
}

/// Creates the login user once per test process.
pub fn ensure_user() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        let exists =
            Command::new("id").arg(SSH_USER).stdout(Stdio::null()).stderr(Stdio::null()).status().map(|s| s.success()).unwrap_or(false);
        if !exists {
            run_ok(Command::new("useradd").args(["--create-home", "--shell", "/bin/bash", SSH_USER]));
        }
        // sshd refuses accounts without a password entry set to something; `*` locks password login only.
        let _ = Command::new("usermod").args(["-p", "*", SSH_USER]).status();
        fs::create_dir_all("/run/sshd").expect("/run/sshd");
    });
}

/// A private sshd that admits [`SSH_USER`] with a throwaway key.
pub struct Sshd {
    pub port: u16,
    pub dir: tempfile::TempDir,
    child: Guard,
}

impl Sshd {
    pub fn start() -> Sshd {
        Self::start_with("")
    }

    /// Starts with `extra` appended to the generated `sshd_config`.
    pub fn start_with(extra: &str) -> Sshd {
        adopt_orphans();
        ensure_user();
        let dir = tempfile::Builder::new().prefix("zo-sshd").tempdir().expect("tempdir");
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).expect("chmod");
        let p = dir.path();
        for key in ["hostkey", "id"] {
            run_ok(Command::new("ssh-keygen").args(["-q", "-t", "ed25519", "-N", "", "-C", "zo-e2e", "-f"]).arg(p.join(key)));
        }
        fs::copy(p.join("id.pub"), p.join("authorized_keys")).expect("authorized_keys");
        fs::set_permissions(p.join("authorized_keys"), fs::Permissions::from_mode(0o644)).expect("chmod");
        let port = free_port();
        let config = format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {d}/hostkey\nPidFile {d}/sshd.pid\nAuthorizedKeysFile {d}/authorized_keys\n\
             PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\nPermitRootLogin no\n\
             AllowUsers {SSH_USER}\nLogLevel ERROR\nPrintMotd no\n{extra}",
            d = p.display()
        );
        fs::write(p.join("sshd_config"), config).expect("sshd_config");
        let host_pub = fs::read_to_string(p.join("hostkey.pub")).expect("host key");
        let mut parts = host_pub.split_whitespace();
        let (kt, kb) = (parts.next().expect("type"), parts.next().expect("key"));
        fs::write(p.join("known_hosts"), format!("[127.0.0.1]:{port} {kt} {kb}\n")).expect("known_hosts");
        let rec = p.join("rec");
        fs::create_dir(&rec).expect("rec");
        fs::set_permissions(&rec, fs::Permissions::from_mode(0o777)).expect("chmod");
        let agent = p.join("fake-agent.sh");
        fs::copy(Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/fake-agent.sh"), &agent).expect("fake agent");
        fs::set_permissions(&agent, fs::Permissions::from_mode(0o755)).expect("chmod");
        let child = Self::spawn(p, port);
        Sshd { port, dir, child: Guard(child) }
    }

    fn spawn(dir: &Path, port: u16) -> Child {
        let log = fs::OpenOptions::new().create(true).append(true).open(dir.join("sshd.log")).expect("log");
        let mut child = Command::new("/usr/sbin/sshd")
            .args(["-D", "-e", "-f"])
            .arg(dir.join("sshd_config"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("sshd is installed (run .ci/run, or apt-get install openssh-server)");
        wait_for_port(port, "sshd", &mut child);
        child
    }

    /// Kill this sshd and every connection it serves (its per-connection children).
    /// Pids of the processes named `comm` that run under this sshd (a task's, a helper's).
    pub fn pids_under(&self, comm: &str) -> Vec<String> {
        let mut found = Vec::new();
        let mut parents = vec![self.child.0.id().to_string()];
        while let Some(parent) = parents.pop() {
            let out = Command::new("pgrep").args(["-P", &parent]).output().expect("pgrep");
            for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                if fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == comm) {
                    found.push(pid.to_string());
                }
                parents.push(pid.to_string());
            }
        }
        found
    }

    /// SIGKILLs the processes named `comm` under this sshd; returns how many.
    pub fn kill_under(&self, comm: &str) -> usize {
        let pids = self.pids_under(comm);
        for pid in &pids {
            let _ = Command::new("kill").args(["-KILL", pid]).status();
        }
        pids.len()
    }

    pub fn kill(&mut self) {
        // Every sshd process under the listener: the per-connection monitors and the
        // unprivileged children that hold the TCP connections (killing only the monitors
        // leaves the connections up). What the users run there is left alone.
        let mut sshds = Vec::new();
        let mut parents = vec![self.child.0.id().to_string()];
        while let Some(parent) = parents.pop() {
            let out = Command::new("pgrep").args(["-P", &parent]).output().expect("pgrep");
            for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                if fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "sshd") {
                    sshds.push(pid.to_string());
                    parents.push(pid.to_string());
                }
            }
        }
        for pid in &sshds {
            let _ = Command::new("kill").args(["-KILL", pid]).status();
        }
        let _ = self.child.0.kill();
        let _ = self.child.0.wait();
    }

    /// Start it again on the same port with the same keys.
    pub fn restart(&mut self) {
        self.child = Guard(Self::spawn(self.dir.path(), self.port));
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The executor section of a worker config that reaches this sshd.
    pub fn executor_yaml(&self) -> String {
        format!(
            "executor:\n  kind: ssh\n  host: 127.0.0.1\n  port: {}\n  user: {SSH_USER}\n  identity_file: {}\n  known_hosts: strict\n  known_hosts_file: {}\n  connect_timeout: 5s\n",
            self.port,
            self.path("id").display(),
            self.path("known_hosts").display()
        )
    }

    /// The agent section: the recording fake agent.
    pub fn agent_yaml(&self) -> String {
        format!(
            "agent:\n  mode: command\n  command: \"{} -p --output-format json\"\n  env:\n    FAKE_AGENT_DIR: {}\n",
            self.path("fake-agent.sh").display(),
            self.path("rec").display()
        )
    }

    /// What the fake agent recorded for a task: (argv, stdin, env).
    pub fn recorded(&self, task: &str) -> (Vec<Vec<u8>>, Vec<u8>, String) {
        let d = self.path("rec").join(task);
        let argv = fs::read(d.join("argv")).unwrap_or_else(|e| panic!("no agent call recorded for {task}: {e}"));
        let mut args: Vec<Vec<u8>> = argv.split(|&b| b == 0).map(<[u8]>::to_vec).collect();
        args.pop(); // after the last NUL
        (args, fs::read(d.join("stdin")).expect("stdin"), fs::read_to_string(d.join("env")).expect("env"))
    }
}

/// Path of a workspace binary (built by `cargo build --bins`).
pub fn bin(name: &str) -> PathBuf {
    // Tests run from target/<profile>/deps/, tools from target/<profile>/.
    let exe = std::env::current_exe().expect("current exe");
    let mut dir = exe.parent().expect("exe dir").to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    let p = dir.join(name);
    assert!(p.exists(), "{} is missing: run `cargo build --bins` before the tests (the README's test command does)", p.display());
    p
}

/// A running `zo-worker`, stopped with SIGTERM on drop.
pub struct Worker {
    child: Option<Child>,
    pub log: PathBuf,
}

impl Worker {
    pub fn start(dir: &Path, name: &str, config_yaml: &str, redis_url: &str, ns: &str) -> Worker {
        Worker::start_with_env(dir, name, config_yaml, redis_url, ns, &[])
    }

    /// [`Worker::start`] with extra variables in the worker's environment.
    pub fn start_with_env(dir: &Path, name: &str, config_yaml: &str, redis_url: &str, ns: &str, envs: &[(&str, &str)]) -> Worker {
        Worker::start_with(dir, name, config_yaml, redis_url, ns, envs, &[])
    }

    /// [`Worker::start`] with extra variables in its environment and extra arguments.
    pub fn start_with(
        dir: &Path,
        name: &str,
        config_yaml: &str,
        redis_url: &str,
        ns: &str,
        envs: &[(&str, &str)],
        args: &[&str],
    ) -> Worker {
        let cfg = dir.join(format!("{name}.yaml"));
        fs::write(&cfg, config_yaml).expect("worker config");
        let log = dir.join(format!("{name}.log"));
        adopt_orphans();
        let child = Command::new(bin("zo-worker"))
            .arg("--config")
            .arg(&cfg)
            .args(args)
            .env("ZO_REDIS_URL", redis_url)
            .env("ZO_NAMESPACE", ns)
            .env("RUST_LOG", "info")
            .envs(envs.iter().copied())
            .stdout(Stdio::null())
            .stderr(fs::File::create(&log).expect("log"))
            .spawn()
            .expect("zo-worker");
        Worker { child: Some(child), log }
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGKILL: no drain, no hand-back.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, then wait (at most 20 s) and return the exit status.
    pub fn stop(&mut self) -> Option<ExitStatus> {
        let mut c = self.child.take()?;
        if let Ok(Some(st)) = c.try_wait() {
            return Some(st);
        }
        let _ = Command::new("kill").args(["-TERM", &c.id().to_string()]).status();
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(20) {
            if let Ok(Some(st)) = c.try_wait() {
                return Some(st);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = c.kill();
        c.wait().ok()
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Output of a finished `zo-submit`.
pub struct Outcome {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `zo-submit ARGS` in `dir` against `redis_url`/`ns`, at most `limit`.
pub fn submit(dir: &Path, redis_url: &str, ns: &str, args: &[&str], limit: Duration) -> Outcome {
    run_submit(dir, redis_url, ns, args, limit)
        .unwrap_or_else(|err| panic!("zo-submit {args:?} did not finish within {limit:?}; stderr:\n{err}\n{}", log_tails(dir)))
}

/// The last lines of every log in `dir` (the workers'), for a test that waited in vain: a
/// worker that exited says why there.
fn log_tails(dir: &Path) -> String {
    let mut logs: Vec<PathBuf> = fs::read_dir(dir)
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.extension().is_some_and(|x| x == "log")).collect())
        .unwrap_or_default();
    logs.sort();
    let mut out = String::new();
    for p in logs {
        let text = fs::read_to_string(&p).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        out += &format!("--- last lines of {}:\n{}\n", p.display(), lines[lines.len().saturating_sub(15)..].join("\n"));
    }
    out
}

/// Runs `zo-submit ARGS` for `time` and stops it, for one that waits (it must still be
/// running then): what it printed on stderr so far.
pub fn submit_for(dir: &Path, redis_url: &str, ns: &str, args: &[&str], time: Duration) -> String {
    match run_submit(dir, redis_url, ns, args, time) {
        Ok(out) => panic!("zo-submit {args:?} ended (code {}) instead of waiting; stderr:\n{}", out.code, out.stderr),
        Err(stderr) => stderr,
    }
}

/// `Err(stderr so far)` when it did not end within `limit` (it is killed then).
fn run_submit(dir: &Path, redis_url: &str, ns: &str, args: &[&str], limit: Duration) -> Result<Outcome, String> {
    let id = format!("{}-{}", std::process::id(), rand_suffix());
    let out_p = dir.join(format!("submit-{id}.out"));
    let err_p = dir.join(format!("submit-{id}.err"));
    let mut child = submit_command(dir, redis_url, ns, args)
        .stdout(fs::File::create(&out_p).expect("out"))
        .stderr(fs::File::create(&err_p).expect("err"))
        .spawn()
        .expect("zo-submit");
    let start = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().expect("wait") {
            break st;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            return Err(fs::read_to_string(&err_p).unwrap_or_default());
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Ok(Outcome {
        code: status.code().unwrap_or(-1),
        stdout: fs::read_to_string(&out_p).unwrap_or_default(),
        stderr: fs::read_to_string(&err_p).unwrap_or_default(),
    })
}

pub fn rand_suffix() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(Instant::now().elapsed().as_nanos());
    h.finish() % 1_000_000
}

/// Writes a file and returns its path.
pub fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    let mut f = fs::File::create(&p).expect("create");
    f.write_all(text.as_bytes()).expect("write");
    p
}

/// A unique namespace per test.
pub fn namespace(test: &str) -> String {
    format!("zo-test-{test}-{}", rand_suffix())
}

/// Unix milliseconds now.
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_millis() as u64
}

/// The Claude Code Router CLI installed by the test command (`tools/node_modules`).
pub fn ccr_bin() -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tools/node_modules/.bin/ccr");
    assert!(p.exists(), "{} is missing: the test command installs it (`cd tools && npm install --no-package-lock`)", p.display());
    p.canonicalize().expect("ccr path")
}

/// A catalog file with the five instance names on free ports, so tests can run CCR in parallel.
pub fn free_port_catalog(dir: &Path) -> (PathBuf, std::collections::HashMap<String, u16>) {
    let mut ports = std::collections::HashMap::new();
    let mut text = String::from("instances:\n");
    for name in ["general", "fast", "reasoning", "code-review", "smart"] {
        let port = free_port();
        ports.insert(name.to_string(), port);
        text.push_str(&format!("  - {{ name: {name}, port: {port}, model: \"stub model for {name}\" }}\n"));
    }
    (write(dir, "catalog.yaml", &text), ports)
}

/// A CCR config routing every slot to `model` at an OpenAI-compatible `base` with `key`.
pub fn ccr_config(base: &str, key: &str, model: &str) -> String {
    let route = format!("stub,{model}");
    serde_json::json!({
        "LOG": true,
        "Providers": [{ "name": "stub", "api_base_url": format!("{base}/v1/chat/completions"), "api_key": key, "models": [model] }],
        "Router": { "default": route, "background": route, "think": route, "longContext": route, "webSearch": route }
    })
    .to_string()
}

/// Runs `zo-worker ARGS` to completion (at most 60 s).
pub fn worker_cmd(args: &[&str], envs: &[(&str, &str)]) -> Outcome {
    let mut c = Command::new(bin("zo-worker"));
    c.args(args).stdin(Stdio::null());
    for (k, v) in envs {
        c.env(k, v);
    }
    let out = c.output().expect("zo-worker");
    Outcome {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// The Claude Code CLI installed by the test command, at a path the SSH login user can run
/// (copied to a shared directory when the checkout is not readable by that user).
pub fn claude_bin() -> PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tools/node_modules/.bin/claude");
        assert!(p.exists(), "{} is missing: the test command installs it (`cd tools && npm install --no-package-lock`)", p.display());
        let real = p.canonicalize().expect("claude path");
        ensure_user();
        let ok = Command::new("su")
            .args(["-s", "/bin/sh", SSH_USER, "-c"])
            .arg(format!("test -x '{}'", real.display()))
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if ok {
            return real;
        }
        let shared = std::env::temp_dir().join(format!("zo-e2e-claude-{}", std::process::id()));
        fs::create_dir_all(&shared).expect("dir");
        fs::set_permissions(&shared, fs::Permissions::from_mode(0o755)).expect("chmod");
        let dst = shared.join("claude");
        fs::copy(&real, &dst).expect("copy claude");
        fs::set_permissions(&dst, fs::Permissions::from_mode(0o755)).expect("chmod");
        dst
    })
    .clone()
}
