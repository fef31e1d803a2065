//! Measures the SSH path (benchmark scenario 3): N tasks `echo i` (no prompt) run over SSH to
//! a private sshd with default MaxSessions, as the plain-profile user zo-e2e, 8 in flight —
//! ours (one worker, `ssh` executor) against GNU parallel `-S` (best of default and `-M`) and
//! the OpenSSH floor (`xargs -P 8` of `ssh -S <control socket>` over one ControlMaster). Also
//! ours on the `local` executor, to show what SSH itself adds.
//!
//!     cargo build --bins && cargo run -p zo-e2e --bin ssh-overhead -- [TASKS] [IN_FLIGHT] [REPEATS] [PARALLEL_TASKS] [--json]
//!
//! GNU parallel runs PARALLEL_TASKS tasks (default TASKS): at ~13 tasks/s, 1,000 take over a
//! minute per try, and its rate does not depend on the count.
//! Prints a Markdown table of medians (or, with --json, one JSON object per row).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use zo_e2e::*;

fn median(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(|a, b| a.partial_cmp(b).expect("no NaN"));
    (v[v.len() / 2], v[0], v[v.len() - 1])
}

/// The errors of the tasks that did not succeed, for the panic message.
fn failures(out: &Outcome) -> String {
    let Ok(doc) = serde_json::from_str::<serde_json::Value>(&out.stdout) else { return out.stderr.clone() };
    let errs: Vec<String> = doc["tasks"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|t| t["status"] != "success")
        .map(|t| format!("{}: {}", t["task_name"], t["error"]))
        .collect();
    errs.join("\n")
}

fn ssh_opts(sshd: &Sshd) -> Vec<String> {
    vec![
        "-p".into(),
        sshd.port.to_string(),
        "-i".into(),
        sshd.path("id").display().to_string(),
        "-o".into(),
        format!("UserKnownHostsFile={}", sshd.path("known_hosts").display()),
        "-o".into(),
        "StrictHostKeyChecking=yes".into(),
        "-o".into(),
        "BatchMode=yes".into(),
    ]
}

/// Runs a shell pipeline, returns seconds; panics unless it succeeds and printed `n` lines.
fn timed(script: &str, n: usize) -> f64 {
    let t = Instant::now();
    let out = Command::new("bash").arg("-c").arg(script).stdin(Stdio::null()).output().expect("bash");
    let secs = t.elapsed().as_secs_f64();
    let lines = String::from_utf8_lossy(&out.stdout).lines().count();
    assert!(out.status.success() && lines == n, "`{script}` failed ({} lines of {n}): {}", lines, String::from_utf8_lossy(&out.stderr));
    secs
}

fn main() {
    let json = std::env::args().any(|a| a == "--json");
    let args: Vec<usize> = std::env::args().skip(1).filter(|a| a != "--json").map(|a| a.parse().expect("numbers")).collect();
    let n = args.first().copied().unwrap_or(1000);
    let conc = args.get(1).copied().unwrap_or(8);
    let repeats = args.get(2).copied().unwrap_or(3);
    let par_n = args.get(3).copied().unwrap_or(n);
    let redis = Redis::start();
    let sshd = Sshd::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut yaml = String::from("tasks:\n");
    for i in 0..n {
        yaml.push_str(&format!("  - {{ name: t{i}, ccr_instance: fast, command: \"echo {i}\" }}\n"));
    }
    write(dir.path(), "t.yaml", &yaml);
    let mut rows: Vec<(String, Vec<f64>)> = Vec::new();
    for (label, exec) in [("zo (local executor)", "executor: { kind: local }\n".to_string()), ("zo (ssh executor)", sshd.executor_yaml())] {
        let ns = namespace("ssh-bench");
        let cfg =
            format!("{exec}agent: {{ mode: simulate }}\nmax_output_bytes: 65536\ninstances: [ {{ name: fast, concurrency: {conc} }} ]\n");
        let _w = Worker::start(dir.path(), "w", &cfg, &redis.url(), &ns);
        let mut rates = Vec::new();
        for _ in 0..repeats {
            let out = submit(dir.path(), &redis.url(), &ns, &["t.yaml", "--json", "--no-save", "--no-report"], Duration::from_secs(900));
            assert_eq!(out.code, 0, "{}", failures(&out));
            let doc: serde_json::Value = serde_json::from_str(&out.stdout).expect("json");
            assert_eq!(doc["summary"]["successful"], n, "every task recorded exactly once");
            rates.push(n as f64 / doc["summary"]["wall_time"].as_f64().expect("wall"));
        }
        rows.push((label.to_string(), rates));
    }
    let login = format!("{SSH_USER}@127.0.0.1");
    let opts = ssh_opts(&sshd).join(" ");
    let gnu = Command::new("parallel").arg("--version").stderr(Stdio::null()).output();
    if gnu.is_ok_and(|o| o.status.success() && String::from_utf8_lossy(&o.stdout).contains("GNU parallel")) {
        let mut best = Vec::new();
        for _ in 0..repeats {
            let plain = timed(&format!("seq {par_n} | parallel --will-cite -j {conc} -S {login} --ssh 'ssh {opts}' echo {{}}"), par_n);
            let master = timed(&format!("seq {par_n} | parallel --will-cite -M -j {conc} -S {login} --ssh 'ssh {opts}' echo {{}}"), par_n);
            best.push(par_n as f64 / plain.min(master));
        }
        rows.push(("GNU parallel -S (best of default and -M)".into(), best));
    } else {
        eprintln!(
            "GNU parallel is not installed (apt-get install parallel; moreutils' `parallel` is another program); its row is left out"
        );
    }
    let ctl = dir.path().join("ctl");
    let st = Command::new("ssh")
        .args(ssh_opts(&sshd))
        .args(["-M", "-S"])
        .arg(&ctl)
        .args(["-o", "ControlPersist=60", "-fN", &login])
        .status()
        .expect("ssh");
    assert!(st.success(), "could not open a ControlMaster");
    let mut floor = Vec::new();
    for _ in 0..repeats {
        let s = timed(&format!("seq {n} | xargs -P {conc} -I{{}} ssh {opts} -S {} {login} echo {{}}", ctl.display()), n);
        floor.push(n as f64 / s);
    }
    let _ = Command::new("ssh").args(ssh_opts(&sshd)).arg("-S").arg(&ctl).args(["-O", "exit", &login]).stderr(Stdio::null()).status();
    rows.push(("OpenSSH floor (xargs -P, ssh -S ControlMaster)".into(), floor));
    if json {
        for (label, v) in &rows {
            let (m, lo, hi) = median(v.clone());
            let tasks = if label.starts_with("GNU parallel") { par_n } else { n };
            println!("{}", serde_json::json!({ "tool": label, "tasks": tasks, "in_flight": conc, "median": m, "min": lo, "max": hi }));
        }
    } else {
        println!("| {n} × `echo i`, {conc} in flight | tasks/s (median of {repeats}) | min–max |\n|---|---:|---:|");
        for (label, v) in &rows {
            let (m, lo, hi) = median(v.clone());
            println!("| {label} | {m:.0} | {lo:.0}–{hi:.0} |");
        }
    }
}
