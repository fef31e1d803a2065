//! The worker's YAML config: which executor runs tasks, the agent command, and the instances
//! this worker serves. Every key is documented in `configs/README.md`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use zo_common::catalog::Catalog;
use zo_common::yaml::{self, YamlError};

/// Default agent command on the execution host; the prompt is appended as the last argument.
pub const DEFAULT_AGENT: &str = "claude -p --output-format json";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkerConfig {
    /// Redis URL; `--redis`/`ZO_REDIS_URL` win over it.
    #[serde(default)]
    pub redis: Option<String>,
    /// Key namespace; `--namespace`/`ZO_NAMESPACE` win over it.
    #[serde(default)]
    pub namespace: Option<String>,
    /// Instance catalog file (default: the built-in five instances).
    #[serde(default)]
    pub catalog: Option<PathBuf>,
    /// Where to serve Prometheus metrics (`/metrics`); `--metrics-addr` wins over it.
    #[serde(default)]
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// Keep the results document of each run this worker finishes as `DIR/RUN.json`
    /// (relative to this file); once per run over every process (claimed in Redis).
    #[serde(default)]
    pub archive: Option<PathBuf>,
    pub executor: ExecutorConfig,
    #[serde(default)]
    pub agent: AgentConfig,
    pub instances: Vec<InstanceConfig>,
    /// Directory tasks run in on the execution host (default: the login/current directory).
    #[serde(default)]
    pub workdir: Option<String>,
    /// Most bytes of command stdout/stderr and agent output kept per task.
    #[serde(default = "default_max_output")]
    pub max_output_bytes: usize,
    /// How long running tasks may finish after SIGTERM/SIGINT before they are handed back.
    #[serde(default = "default_drain", with = "humantime_serde")]
    pub drain_timeout: Duration,
    /// How long a job stays ours without renewal; a dead worker's jobs are reclaimed after it.
    #[serde(default = "default_lease", with = "humantime_serde")]
    pub lease: Duration,
    /// Deliveries of one attempt without a result before the job counts as poison.
    #[serde(default = "default_max_deliveries")]
    pub max_deliveries: u32,
    /// Run and supervise one Claude Code Router per served instance (absent: CCR is run some
    /// other way, or the agent needs none).
    #[serde(default)]
    pub ccr: Option<CcrConfig>,
    /// Directory of the config file; relative paths in it are resolved against it.
    #[serde(skip)]
    pub base_dir: PathBuf,
    /// The config file itself (checked unreadable to `executor.run_as`).
    #[serde(skip)]
    pub source: PathBuf,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CcrConfig {
    /// How to start one CCR in the foreground (its `HOME` and `TMPDIR` are set per instance).
    #[serde(default = "default_ccr_command")]
    pub command: String,
    /// Where each instance's home (config, pid, logs) lives; default `~/.local/state/zo-worker`.
    #[serde(default)]
    pub state_dir: Option<PathBuf>,
    /// Directory of the CCR configs, `<instance>.json` each (relative to this file).
    #[serde(default = "default_ccr_configs")]
    pub configs_dir: PathBuf,
    /// The `.env` file secrets may come from (relative to the current directory).
    #[serde(default = "default_env_file")]
    pub env_file: PathBuf,
    /// The Bitwarden Secrets Manager CLI, used when `BWS_ACCESS_TOKEN` is set.
    #[serde(default = "default_bws")]
    pub bws: String,
    /// SIGTERM, then this long, then SIGKILL.
    #[serde(default = "default_grace", with = "humantime_serde")]
    pub grace: Duration,
    /// How long an instance may take to answer `/health` after starting.
    #[serde(default = "default_ready_timeout", with = "humantime_serde")]
    pub ready_timeout: Duration,
    /// CCR's own request log (it writes whole prompts to disk): off unless you need it.
    #[serde(default)]
    pub log: bool,
    /// How the agent on the execution host reaches CCR: `tunnel` (default with the ssh
    /// executor: a reverse tunnel on the SSH master; CCR stays on this machine's loopback) or
    /// `callback` (CCR listens on `callback_host`, which the execution host can reach).
    #[serde(default)]
    pub reach: Reach,
    /// This machine's address as the execution host sees it (`reach: callback`).
    #[serde(default)]
    pub callback_host: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Reach {
    #[default]
    Tunnel,
    Callback,
}

fn default_ccr_command() -> String {
    "ccr start".into()
}
fn default_ccr_configs() -> PathBuf {
    "ccr".into()
}
fn default_env_file() -> PathBuf {
    ".env".into()
}
fn default_bws() -> String {
    "bws".into()
}
fn default_grace() -> Duration {
    Duration::from_secs(5)
}
fn default_ready_timeout() -> Duration {
    Duration::from_secs(30)
}

fn default_lease() -> Duration {
    Duration::from_secs(30)
}

fn default_max_deliveries() -> u32 {
    5
}

fn default_max_output() -> usize {
    8 * 1024 * 1024
}

fn default_drain() -> Duration {
    Duration::from_secs(60)
}

#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum ExecutorConfig {
    /// Run on a remote host over SSH (one multiplexed master per host, reused).
    Ssh(SshConfig),
    /// Run on this machine, in a clean environment.
    Local(LocalConfig),
    /// Run nothing: commands and agent are simulated (benchmarks, demos).
    Simulate {},
}

/// What a task's environment holds besides the basics (see [`TaskEnv`]).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalConfig {
    /// Variables every task gets (`${VAR}` reads the worker's environment).
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Names of the worker's own variables that tasks get as they are.
    #[serde(default)]
    pub pass_env: Vec<String>,
    /// Start tasks through the helper (Perl), which ends each task's whole process tree and
    /// every task when the worker dies; `false` (or no Perl) starts them directly.
    #[serde(default = "yes")]
    pub helper: bool,
    /// Run every task as this account (its groups and `HOME`) instead of the worker's user,
    /// so tasks cannot read the worker's secrets; needs root or CAP_SETUID, CAP_SETGID, CAP_KILL.
    #[serde(default)]
    pub run_as: Option<String>,
}

impl ExecutorConfig {
    /// The `env` and `pass_env` of the executor (none for `simulate`).
    pub fn task_env(&self) -> (&BTreeMap<String, String>, &[String]) {
        static NONE: BTreeMap<String, String> = BTreeMap::new();
        match self {
            ExecutorConfig::Ssh(s) => (&s.env, &s.pass_env),
            ExecutorConfig::Local(l) => (&l.env, &l.pass_env),
            ExecutorConfig::Simulate {} => (&NONE, &[]),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SshConfig {
    /// Host name or `~/.ssh/config` alias.
    #[serde(default = "default_host")]
    pub host: String,
    #[serde(default)]
    pub port: Option<u16>,
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub identity_file: Option<PathBuf>,
    /// `strict` (default): the host key must be known; `accept-new`: learn unknown hosts;
    /// `off`: accept any key (never on untrusted networks).
    #[serde(default)]
    pub known_hosts: KnownHostsPolicy,
    #[serde(default)]
    pub known_hosts_file: Option<PathBuf>,
    /// An ssh_config file to use instead of `~/.ssh/config`.
    #[serde(default)]
    pub ssh_config: Option<PathBuf>,
    /// Channels in flight per master; keep below sshd's MaxSessions (default 10).
    #[serde(default = "default_channels")]
    pub max_channels: usize,
    /// Most masters (TCP connections) opened to the host.
    #[serde(default = "default_masters")]
    pub max_masters: usize,
    #[serde(default = "default_connect_timeout", with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Where control sockets live (default: the system temp dir).
    #[serde(default)]
    pub control_dir: Option<PathBuf>,
    /// Start tasks through one long-lived helper process on the host (Perl) instead of one
    /// SSH session each; without Perl there, the worker falls back by itself.
    #[serde(default = "yes")]
    pub helper: bool,
    /// Variables every task gets on the host (`${VAR}` reads the worker's environment).
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Names of the worker's own variables that tasks get on the host as they are.
    #[serde(default)]
    pub pass_env: Vec<String>,
}

fn default_host() -> String {
    "zo".into()
}
fn yes() -> bool {
    true
}
fn default_channels() -> usize {
    8
}
fn default_masters() -> usize {
    4
}
fn default_connect_timeout() -> Duration {
    Duration::from_secs(10)
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum KnownHostsPolicy {
    #[default]
    Strict,
    AcceptNew,
    Off,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    /// `command` runs the agent command; `simulate` answers with a labelled synthetic response.
    #[serde(default)]
    pub mode: AgentMode,
    /// The agent command on the execution host; the prompt is appended as its last argument.
    #[serde(default = "default_agent")]
    pub command: String,
    /// URL the agent uses to reach the task's CCR instance; `{port}` and `{instance}` are
    /// filled in from the catalog.
    #[serde(default = "default_base_url")]
    pub base_url: String,
    /// Value of `ANTHROPIC_API_KEY` for the agent (the CCR APIKEY); `${VAR}` reads the
    /// worker's environment.
    #[serde(default)]
    pub api_key: Option<String>,
    /// Extra environment for the agent.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
}

impl Default for AgentConfig {
    fn default() -> Self {
        AgentConfig {
            mode: AgentMode::Command,
            command: default_agent(),
            base_url: default_base_url(),
            api_key: None,
            env: BTreeMap::new(),
        }
    }
}

fn default_agent() -> String {
    DEFAULT_AGENT.into()
}
fn default_base_url() -> String {
    "http://127.0.0.1:{port}".into()
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AgentMode {
    #[default]
    Command,
    Simulate,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstanceConfig {
    pub name: String,
    /// Tasks of this instance run at once on this worker.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// This instance's CCR config (default `<ccr.configs_dir>/<name>.json`).
    #[serde(default)]
    pub ccr_config: Option<PathBuf>,
}

fn default_concurrency() -> usize {
    2
}

/// Every problem of a worker config, one per line.
#[derive(Debug)]
pub struct ConfigErrors(pub Vec<YamlError>);

impl From<YamlError> for ConfigErrors {
    fn from(e: YamlError) -> Self {
        ConfigErrors(vec![e])
    }
}

impl std::fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl WorkerConfig {
    /// Reads and checks a worker config against the catalog.
    pub fn load(path: &Path) -> Result<(WorkerConfig, Catalog), ConfigErrors> {
        let file = path.display().to_string();
        let text = yaml::read_file(path, yaml::DEFAULT_MAX_FILE_BYTES)?;
        let mut cfg: WorkerConfig = yaml::from_str(&text, &file)?;
        cfg.base_dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new(".")).to_path_buf();
        cfg.source = path.to_path_buf();
        let catalog_path =
            cfg.catalog.as_ref().map(|p| if p.is_relative() { path.parent().unwrap_or(Path::new(".")).join(p) } else { p.clone() });
        let catalog = Catalog::load(catalog_path.as_deref())?;
        cfg.archive = cfg.archive.take().map(|a| if a.is_relative() { cfg.base_dir.join(a) } else { a });
        cfg.check(&file, &catalog)?;
        Ok((cfg, catalog))
    }

    fn check(&self, file: &str, catalog: &Catalog) -> Result<(), ConfigErrors> {
        let mut errs = Vec::new();
        if self.instances.is_empty() {
            errs.push(YamlError::plain(file, "`instances` is empty; list the instances this worker serves"));
        }
        let mut seen = std::collections::HashSet::new();
        for i in &self.instances {
            if catalog.get(&i.name).is_none() {
                let hint = match yaml::closest(&i.name, catalog.names()) {
                    Some(s) => format!("did you mean `{s}`?"),
                    None => format!("use one of: {}", catalog.names().collect::<Vec<_>>().join(", ")),
                };
                errs.push(YamlError::plain(file, format!("instance `{}` is not in the catalog; {hint}", i.name)));
            }
            if !seen.insert(i.name.as_str()) {
                errs.push(YamlError::plain(file, format!("instance `{}` is listed twice; list each instance once", i.name)));
            }
            if i.concurrency == 0 || i.concurrency > 1000 {
                errs.push(YamlError::plain(
                    file,
                    format!("instance `{}`: concurrency {} is out of range; use 1 to 1000", i.name, i.concurrency),
                ));
            }
        }
        if let ExecutorConfig::Ssh(s) = &self.executor {
            if s.max_channels == 0 || s.max_masters == 0 {
                errs.push(YamlError::plain(file, "executor: `max_channels` and `max_masters` must be at least 1"));
            }
            if s.host.trim().is_empty() {
                errs.push(YamlError::plain(file, "executor: `host` is empty; name the SSH host or ~/.ssh/config alias"));
            }
        }
        if self.agent.mode == AgentMode::Command && self.agent.command.trim().is_empty() {
            errs.push(YamlError::plain(
                file,
                "agent: `command` is empty; give the agent command (default: claude -p --output-format json)",
            ));
        }
        let (env, pass) = self.executor.task_env();
        let names = self
            .agent
            .env
            .keys()
            .map(|k| ("agent.env", k))
            .chain(env.keys().map(|k| ("executor.env", k)))
            .chain(pass.iter().map(|k| ("executor.pass_env", k)));
        for (what, k) in names {
            if !valid_env_name(k) {
                errs.push(YamlError::plain(
                    file,
                    format!("{what}: `{k}` is not a valid environment variable name; use letters, digits and _"),
                ));
            }
        }
        if self.lease < Duration::from_millis(500) || self.lease > Duration::from_secs(3600) {
            errs.push(YamlError::plain(file, "`lease` is out of range; use 500ms to 1h"));
        }
        if self.max_deliveries == 0 {
            errs.push(YamlError::plain(file, "`max_deliveries` must be at least 1"));
        }
        if let Some(c) = &self.ccr {
            if c.reach == Reach::Callback && c.callback_host.as_deref().is_none_or(|h| h.trim().is_empty()) {
                errs.push(YamlError::plain(
                    file,
                    "ccr: `reach: callback` needs `callback_host` (this machine's address as the execution host sees it)",
                ));
            }
        }
        if self.max_output_bytes < 1024 {
            errs.push(YamlError::plain(file, "`max_output_bytes` is below 1024; raise it"));
        }
        if errs.is_empty() {
            Ok(())
        } else {
            Err(ConfigErrors(errs))
        }
    }

    /// The command line's overrides: `--ssh-host` replaces the SSH executor's host (refused
    /// for any other executor), `--ccr-callback-host` makes CCR listen on that address for the
    /// execution host to call (`ccr.reach: callback`; refused without a `ccr:` section).
    pub fn override_with(&mut self, ssh_host: Option<&str>, callback_host: Option<&str>) -> Result<(), String> {
        let file = self.source.display().to_string();
        if let Some(h) = ssh_host {
            match &mut self.executor {
                ExecutorConfig::Ssh(s) if !h.trim().is_empty() => s.host = h.trim().to_string(),
                ExecutorConfig::Ssh(_) => return Err("--ssh-host is empty; name the SSH host or ~/.ssh/config alias".into()),
                _ => {
                    return Err(format!(
                        "--ssh-host applies to an `executor: {{ kind: ssh }}` config; {file} runs tasks {}",
                        if matches!(self.executor, ExecutorConfig::Local(_)) {
                            "on this machine (kind: local)"
                        } else {
                            "simulated (kind: simulate)"
                        }
                    ))
                }
            }
        }
        if let Some(h) = callback_host {
            let Some(c) = &mut self.ccr else {
                return Err(format!("--ccr-callback-host applies to a config with a `ccr:` section; {file} has none"));
            };
            if h.trim().is_empty() {
                return Err("--ccr-callback-host is empty; give this machine's address as the execution host sees it".into());
            }
            c.reach = Reach::Callback;
            c.callback_host = Some(h.trim().to_string());
        }
        Ok(())
    }

    /// A path from this config, resolved against its directory.
    pub fn resolve(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base_dir.join(p)
        }
    }

    /// The agent's API key with `${VAR}` taken from the environment.
    /// What `executor.env` and `executor.pass_env` add to every task's environment, resolved
    /// from the worker's environment now (an unset `${VAR}` or `pass_env` name is an error).
    pub fn task_env(&self) -> Result<Vec<(String, String)>, String> {
        let (env, pass) = self.executor.task_env();
        let mut out = Vec::new();
        for name in pass {
            let v = std::env::var(name).map_err(|_| format!("executor.pass_env: `{name}` is not set in the worker's environment"))?;
            out.push((name.clone(), v));
        }
        for (k, v) in env {
            out.push((k.clone(), expand_env(v).map_err(|e| format!("executor.env.{k}: {e}"))?));
        }
        Ok(out)
    }

    pub fn agent_api_key(&self) -> Result<Option<String>, String> {
        match &self.agent.api_key {
            None => Ok(None),
            Some(v) => expand_env(v).map(Some),
        }
    }
}

/// `NAME` for an environment variable: letters, digits and `_`, not starting with a digit.
pub fn valid_env_name(k: &str) -> bool {
    !k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') && !k.starts_with(|c: char| c.is_ascii_digit())
}

/// Replaces `${VAR}` and `$VAR` with the environment's value; an unset variable is an error.
pub fn expand_env(s: &str) -> Result<String, String> {
    expand_with(s, |name| std::env::var(name).ok())
}

/// [`expand_env`] with the values from `lookup`.
fn expand_with(s: &str, lookup: impl Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.char_indices().peekable();
    while let Some((_, c)) = chars.next() {
        if c != '$' {
            out.push(c);
            continue;
        }
        let braced = chars.peek().map(|&(_, n)| n == '{').unwrap_or(false);
        if braced {
            chars.next();
        }
        let mut name = String::new();
        while let Some(&(_, n)) = chars.peek() {
            if n.is_ascii_alphanumeric() || n == '_' {
                name.push(n);
                chars.next();
            } else {
                break;
            }
        }
        if braced {
            match chars.next() {
                Some((_, '}')) => {}
                _ => return Err(format!("unterminated `${{{name}` in `{s}`")),
            }
        }
        if name.is_empty() {
            out.push('$');
            continue;
        }
        match lookup(&name) {
            Some(v) => out.push_str(&v),
            None => return Err(format!("environment variable `{name}` is not set")),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
