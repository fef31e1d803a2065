//! A worker config that supervises real Claude Code Router instances on free ports, and
//! what `zo-worker ccr status` and CCR's `/health` say of them.

use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use super::{ccr_bin, ccr_config, free_port_catalog, worker_cmd, write};

pub struct Setup {
    pub dir: tempfile::TempDir,
    pub config: std::path::PathBuf,
    pub ports: std::collections::HashMap<String, u16>,
}

/// A worker config serving `instances` with CCR supervised, configs routing to a stub URL.
pub fn setup(instances: &[&str], key_ref: &str) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let (catalog, ports) = free_port_catalog(dir.path());
    std::fs::create_dir(dir.path().join("ccr")).unwrap();
    for i in instances {
        std::fs::write(dir.path().join("ccr").join(format!("{i}.json")), ccr_config("http://127.0.0.1:9", key_ref, &format!("model-{i}")))
            .unwrap();
    }
    let list: String = instances.iter().map(|i| format!("  - {{ name: {i} }}\n")).collect();
    let cfg = format!(
        "catalog: {}\nexecutor: {{ kind: local }}\nagent: {{ mode: simulate }}\nlease: 2s\nccr:\n  command: \"{} start\"\n  state_dir: {}\n  configs_dir: ccr\n  env_file: {}\n  bws: {}\n  grace: 2s\ninstances:\n{list}",
        catalog.display(),
        ccr_bin().display(),
        dir.path().join("state").display(),
        dir.path().join(".env").display(),
        Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/fake-bws").display(),
    );
    let config = write(dir.path(), "worker.yaml", &cfg);
    Setup { dir, config, ports }
}

pub fn status(s: &Setup, envs: &[(&str, &str)]) -> Vec<Value> {
    let out = worker_cmd(&["ccr", "status", "--json", "--config", s.config.to_str().unwrap()], envs);
    assert_eq!(out.code, 0, "{}", out.stderr);
    serde_json::from_str::<Value>(&out.stdout).unwrap().as_array().unwrap().clone()
}

pub fn health(port: u16) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else { return false };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(b"GET /health HTTP/1.0\r\n\r\n").is_err() {
        return false;
    }
    let mut buf = String::new();
    let _ = s.read_to_string(&mut buf);
    buf.contains("\"status\":\"ok\"")
}
