//! Secrets on the worker's machine: with `executor.run_as`, a local task runs as another
//! account and reads none of the worker's secrets (environments, CCR configs, `.env`, the
//! worker config); a task as the worker's own user cannot read the worker's environment.

use std::time::Duration;

use zo_e2e::ccr_setup::{health, setup, status};
use zo_e2e::*;

const LIMIT: Duration = Duration::from_secs(120);

/// `executor.run_as`: the worker refuses to start while the task account could read its
/// config or `.env`; then a task runs as that account and reads neither, nor the worker's
/// or its CCR's environment or the CCR's config (whose environment holds no key at all); its
/// timeout still kills it. And a task running as the worker's own user cannot read the
/// worker's environment (the worker is non-dumpable).
#[test]
fn a_run_as_task_reads_none_of_the_workers_secrets() {
    use std::os::unix::fs::PermissionsExt as _;
    use std::os::unix::process::CommandExt as _;
    ensure_user();
    let s = setup(&["fast"], "${ZO_T_RUNAS_KEY}");
    let redis = Redis::start();
    let ns = namespace("runas");
    let work = tempfile::Builder::new().prefix("zo-runas").tempdir().unwrap();
    std::fs::set_permissions(work.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let env_file = s.dir.path().join(".env");
    std::fs::write(&env_file, "ZO_T_DOTENV=dotenv-secret-7\n").unwrap();
    let cfg_text = std::fs::read_to_string(&s.config).unwrap().replace(
        "executor: { kind: local }",
        &format!("executor: {{ kind: local, run_as: {SSH_USER} }}\nworkdir: {}", work.path().display()),
    );
    let envs = [("ZO_T_RUNAS_KEY", "sk-runas-secret-9"), ("BWS_ACCESS_TOKEN", "bws-token-3")];
    let mut refused = Worker::start_with_env(s.dir.path(), "w", &cfg_text, &redis.url(), &ns, &envs);
    wait_until("the worker to refuse", Duration::from_secs(20), || !refused.is_running());
    let log = refused.log_text();
    assert!(log.contains(&format!("executor.run_as `{SSH_USER}` could read")) && log.contains("chmod 600"), "{log}");
    for f in [s.dir.path().join("w.yaml"), env_file.clone()] {
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let w = Worker::start_with_env(s.dir.path(), "w", &cfg_text, &redis.url(), &ns, &envs);
    let port = s.ports["fast"];
    wait_until("CCR to become healthy", Duration::from_secs(30), || health(port));
    let ccr_pid = status(&s, &[])[0]["pid"].as_u64().unwrap();
    let ccr_env = std::fs::read(format!("/proc/{ccr_pid}/environ")).unwrap();
    let ccr_env = String::from_utf8_lossy(&ccr_env);
    for secret in ["sk-runas-secret-9", "bws-token-3", "ZO_T_RUNAS_KEY", "BWS_ACCESS_TOKEN", "ZO_REDIS_URL"] {
        assert!(!ccr_env.contains(secret), "the CCR's environment holds {secret}: {ccr_env}");
    }
    let secrets = [
        format!("/proc/{}/environ", w.pid().unwrap()),
        format!("/proc/{ccr_pid}/environ"),
        s.dir.path().join("state/fast/.claude-code-router/config.json").display().to_string(),
        env_file.display().to_string(),
        s.dir.path().join("w.yaml").display().to_string(),
    ];
    let marker = format!("zo-runas-sleep-{}", rand_suffix());
    let tasks = format!(
        "tasks:\n  - name: reads\n    ccr_instance: fast\n    command: |\n      id -un\n      for f in {}; do if cat \"$f\" >/dev/null 2>&1; then echo \"read $f\"; fi; done\n  - name: sleeps\n    ccr_instance: fast\n    timeout: 2s\n    command: \"sleep 60 # {marker}\"\n",
        secrets.join(" ")
    );
    write(s.dir.path(), "t.yaml", &tasks);
    let out = submit(s.dir.path(), &redis.url(), &ns, &["t.yaml", "--json", "--no-save", "--no-report"], LIMIT);
    let doc = json_doc(&out);
    let t = tasks_by_name(&doc);
    assert_eq!(t["reads"]["status"], "success", "{}", t["reads"]);
    let seen = t["reads"]["command"]["stdout"].as_str().unwrap();
    assert_eq!(seen.trim(), SSH_USER, "the task ran as {SSH_USER} and read nothing: {seen}");
    assert_eq!(t["sleeps"]["status"], "timeout", "{}", t["sleeps"]);
    wait_until("the timed-out task's processes to go", Duration::from_secs(10), || !process_alive(&marker));
    drop(w);

    // Without the helper: a script past the spill size travels in a file the account can read
    // (and remove), and the timeout still kills the task.
    let direct = format!(
        "executor: {{ kind: local, run_as: {SSH_USER}, helper: false }}\nagent: {{ mode: simulate }}\nworkdir: {}\ninstances: [ {{ name: fast }} ]\n",
        work.path().display()
    );
    std::fs::write(s.dir.path().join("d.yaml"), "").unwrap();
    std::fs::set_permissions(s.dir.path().join("d.yaml"), std::fs::Permissions::from_mode(0o600)).unwrap();
    let d = Worker::start_with_env(s.dir.path(), "d", &direct, &redis.url(), &format!("{ns}-d"), &envs);
    let long = format!("id -un # {}", "x".repeat(70 * 1024));
    write(
        s.dir.path(),
        "d-tasks.yaml",
        &format!("tasks:\n  - {{ name: long, ccr_instance: fast, command: \"{long}\" }}\n  - {{ name: sleeps, ccr_instance: fast, timeout: 2s, command: \"sleep 60 # {marker}-d\" }}\n"),
    );
    let out = submit(s.dir.path(), &redis.url(), &format!("{ns}-d"), &["d-tasks.yaml", "--json", "--no-save", "--no-report"], LIMIT);
    let t = tasks_by_name(&json_doc(&out));
    assert_eq!(t["long"]["command"]["stdout"].as_str(), Some(format!("{SSH_USER}\n").as_str()), "{}", t["long"]);
    assert_eq!(t["sleeps"]["status"], "timeout", "{}", t["sleeps"]);
    wait_until("the timed-out task's processes to go", Duration::from_secs(10), || !process_alive(&format!("{marker}-d")));
    drop(d);

    // The worker as an ordinary user, its task as the same user: its environment is closed.
    let own = tempfile::Builder::new().prefix("zo-own").tempdir().unwrap();
    std::fs::set_permissions(own.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let cfg = write(
        own.path(),
        "w.yaml",
        &format!(
            "executor: {{ kind: local }}\nagent: {{ mode: simulate }}\nworkdir: {}\ninstances: [ {{ name: fast }} ]\n",
            own.path().display()
        ),
    );
    std::fs::set_permissions(&cfg, std::fs::Permissions::from_mode(0o644)).unwrap();
    let uid = nix_uid(SSH_USER);
    let mut child = std::process::Command::new(bin("zo-worker"))
        .arg("--config")
        .arg(&cfg)
        .env("ZO_REDIS_URL", redis.url())
        .env("ZO_NAMESPACE", format!("{ns}-own"))
        .env("ZO_T_RUNAS_KEY", "sk-runas-secret-9")
        .current_dir(own.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .uid(uid)
        .gid(uid)
        .spawn()
        .unwrap();
    let wpid = child.id();
    write(
        own.path(),
        "o.yaml",
        &format!("tasks:\n  - {{ name: peek, ccr_instance: fast, command: \"id -un; cat /proc/{wpid}/environ || echo closed\" }}\n"),
    );
    let out = submit(own.path(), &redis.url(), &format!("{ns}-own"), &["o.yaml", "--json", "--no-save", "--no-report"], LIMIT);
    let _ = child.kill();
    let _ = child.wait();
    let t = tasks_by_name(&json_doc(&out));
    let seen = t["peek"]["command"]["stdout"].as_str().unwrap();
    assert_eq!(seen, format!("{SSH_USER}\nclosed\n"), "a same-user task read the worker's environment");
}

/// The uid of `user` (its primary group has the same number for accounts `useradd` made).
fn nix_uid(user: &str) -> u32 {
    let out = std::process::Command::new("id").args(["-u", user]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}
