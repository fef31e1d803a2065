//! Claude Code Router supervision with the real CCR (npm `@musistudio/claude-code-router` 2.x,
//! installed by the test command), on free ports with a private state directory each.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;
use zo_e2e::ccr_setup::{health, setup, status, Setup};
use zo_e2e::*;

fn pid_alive(pid: u64) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default().contains(") Z ")
}

#[test]
fn ccr_start_status_stop_agree_with_reality() {
    let s = setup(&["fast", "general"], "${ZO_TEST_PROVIDER_KEY}");
    let env = [("ZO_TEST_PROVIDER_KEY", "sk-from-env")];
    let cfg = s.config.to_str().unwrap();
    let out = worker_cmd(&["ccr", "start", "--config", cfg], &env);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("fast: started (pid"), "{}", out.stdout);
    for p in s.ports.iter().filter(|(k, _)| *k == "fast" || *k == "general").map(|(_, p)| *p) {
        assert!(health(p), "CCR answers /health on {p}");
    }
    let rows = status(&s, &[]);
    assert_eq!(rows.len(), 2);
    for r in &rows {
        assert_eq!(r["healthy"], true, "{r}");
        assert!(pid_alive(r["pid"].as_u64().unwrap()), "{r}");
        assert_eq!(r["owner"], "cli");
        assert_eq!(r["port"].as_u64().unwrap() as u16, s.ports[r["instance"].as_str().unwrap()]);
    }
    // The written config: secrets substituted, logging off, loopback only, a key required.
    let written: Value =
        serde_json::from_str(&std::fs::read_to_string(s.dir.path().join("state/fast/.claude-code-router/config.json")).unwrap()).unwrap();
    assert_eq!(written["Providers"][0]["api_key"], "sk-from-env");
    assert_eq!(written["LOG"], false);
    assert_eq!(written["HOST"], "127.0.0.1");
    assert!(written["APIKEY"].as_str().unwrap().starts_with("zo-"));
    let again = worker_cmd(&["ccr", "start", "--instance", "fast", "--config", cfg], &env);
    assert!(again.stdout.contains("fast: already running"), "{}", again.stdout);
    let pids: Vec<u64> = rows.iter().map(|r| r["pid"].as_u64().unwrap()).collect();
    let out = worker_cmd(&["ccr", "stop", "--config", cfg], &[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.contains("fast: stopped (pid"), "{}", out.stdout);
    for pid in pids {
        assert!(!pid_alive(pid), "pid {pid} survived `ccr stop`");
    }
    for r in status(&s, &[]) {
        assert_eq!(r["healthy"], false);
        assert_eq!(r["pid"], Value::Null);
    }
}

#[test]
fn an_unset_secret_is_a_clear_error_naming_variable_and_instance() {
    let s = setup(&["smart"], "${ZO_TEST_SURELY_UNSET_KEY}");
    let cfg = s.config.to_str().unwrap();
    let out = worker_cmd(&["ccr", "start", "--config", cfg], &[]);
    assert_eq!(out.code, 2);
    let want = format!(
        "zo-worker: instance `smart`: {} needs `ZO_TEST_SURELY_UNSET_KEY`, which is not set in Bitwarden, the environment or {}; set it\n",
        s.dir.path().join("ccr/smart.json").display(),
        s.dir.path().join(".env").display()
    );
    assert_eq!(out.stderr, want);
    let redis = Redis::start();
    let out = worker_cmd(&["--config", cfg, "--redis", &redis.url()], &[]);
    assert_eq!(out.code, 2, "the worker refuses to start: {}", out.stderr);
    assert!(out.stderr.contains("needs `ZO_TEST_SURELY_UNSET_KEY`"), "{}", out.stderr);
    assert!(!s.dir.path().join("state/smart/.claude-code-router/config.json").exists(), "no config with a literal ${{VAR}} is written");
    let check = worker_cmd(&["secrets", "check", "--config", cfg], &[]);
    assert_eq!(check.code, 1);
    assert!(check.stdout.contains("smart: ZO_TEST_SURELY_UNSET_KEY MISSING"), "{}", check.stdout);
}

#[test]
fn keys_come_from_bitwarden_then_environment_then_dotenv() {
    let s = setup(&["fast", "general", "reasoning"], "PLACEHOLDER");
    // Each instance's config names its own key.
    for (i, var) in [("fast", "ZO_T_BWS_KEY"), ("general", "ZO_T_ENV_KEY"), ("reasoning", "ZO_T_DOTENV_KEY")] {
        let p = s.dir.path().join("ccr").join(format!("{i}.json"));
        let t = std::fs::read_to_string(&p).unwrap().replace("PLACEHOLDER", &format!("${{{var}}}"));
        std::fs::write(p, t).unwrap();
    }
    std::fs::write(s.dir.path().join(".env"), "ZO_T_DOTENV_KEY=from-dotenv\nZO_T_ENV_KEY=shadowed-by-env\n").unwrap();
    let bws = r#"[{"key":"ZO_T_BWS_KEY","value":"from-bws"}]"#;
    let env = [("BWS_ACCESS_TOKEN", "t0ken"), ("FAKE_BWS_SECRETS", bws), ("ZO_T_ENV_KEY", "from-env")];
    let cfg = s.config.to_str().unwrap();
    let check = worker_cmd(&["secrets", "check", "--config", cfg], &env);
    assert_eq!(check.code, 0, "{}{}", check.stdout, check.stderr);
    assert!(check.stdout.contains("fast: ZO_T_BWS_KEY found in the Bitwarden Secrets Manager"), "{}", check.stdout);
    assert!(check.stdout.contains("general: ZO_T_ENV_KEY found in the environment"), "{}", check.stdout);
    assert!(check.stdout.contains("reasoning: ZO_T_DOTENV_KEY found in the .env file"), "{}", check.stdout);
    for v in ["from-bws", "from-env", "from-dotenv", "t0ken"] {
        assert!(!check.stdout.contains(v) && !check.stderr.contains(v), "`secrets check` printed a value");
    }
    let out = worker_cmd(&["ccr", "start", "--config", cfg], &env);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let key_of = |i: &str| -> String {
        let v: Value = serde_json::from_str(
            &std::fs::read_to_string(s.dir.path().join(format!("state/{i}/.claude-code-router/config.json"))).unwrap(),
        )
        .unwrap();
        v["Providers"][0]["api_key"].as_str().unwrap().to_string()
    };
    assert_eq!((key_of("fast"), key_of("general"), key_of("reasoning")), ("from-bws".into(), "from-env".into(), "from-dotenv".into()));
    worker_cmd(&["ccr", "stop", "--config", cfg], &[]);
}

#[test]
fn the_worker_restarts_a_killed_ccr_and_stops_it_on_exit() {
    let s = setup(&["fast"], "${ZO_TEST_PROVIDER_KEY}");
    let redis = Redis::start();
    let ns = namespace("ccrsup");
    let cfg_text = std::fs::read_to_string(&s.config).unwrap();
    let mut w = Worker::start_with_env(s.dir.path(), "w", &cfg_text, &redis.url(), &ns, &[("ZO_TEST_PROVIDER_KEY", "sk-x")]);
    let port = s.ports["fast"];
    wait_until("CCR to become healthy", Duration::from_secs(30), || health(port));
    let first = status(&s, &[])[0].clone();
    assert!(first["owner"].as_str().unwrap().starts_with("worker "), "{first}");
    let pid = first["pid"].as_u64().unwrap();
    std::process::Command::new("kill").args(["-KILL", &pid.to_string()]).status().unwrap();
    wait_until("a restarted CCR", Duration::from_secs(30), || {
        let r = &status(&s, &[])[0];
        r["healthy"] == true && r["pid"].as_u64().is_some_and(|p| p != pid) && r["restarts"] == 1
    });
    assert!(w.log_text().contains("CCR exited"), "the crash is logged:\n{}", w.log_text());
    // Jobs still run through the worker (simulated agent) while CCR is up.
    write(s.dir.path(), "t.yaml", "tasks:\n  - { name: A, ccr_instance: fast, prompt: p }\n");
    let out = submit(s.dir.path(), &redis.url(), &ns, &["t.yaml", "--quiet", "--no-save", "--no-report"], Duration::from_secs(60));
    assert_eq!(out.code, 0, "{}", out.stderr);
    let new_pid = status(&s, &[])[0]["pid"].as_u64().unwrap();
    assert_eq!(w.stop().and_then(|s| s.code()), Some(0));
    assert!(!pid_alive(new_pid), "CCR survived the worker's exit");
    assert!(!health(port));
}

#[test]
fn two_workers_reach_their_own_ccr_through_reverse_tunnels_on_one_ssh_host() {
    let redis = Redis::start();
    let sshd = Sshd::start();
    let ns = namespace("tunnels");
    let mut workers = Vec::new();
    let mut setups = Vec::new();
    for w in 0..2 {
        let s = setup(&["fast"], "sk-stub");
        let cfg = std::fs::read_to_string(&s.config).unwrap();
        let cfg = cfg.replace(
            "executor: { kind: local }\nagent: { mode: simulate }\n",
            &format!("{}{}    FAKE_AGENT_PROBE: \"1\"\n", sshd.executor_yaml(), sshd.agent_yaml()),
        );
        // One task at a time each: while one worker runs a task, the other, blocked on the
        // stream, is served the next entry (Redis serves blocked readers in turn), so both
        // run tasks without either being assumed to be fast enough.
        let cfg = cfg.replace("  - { name: fast }\n", "  - { name: fast, concurrency: 1 }\n");
        assert!(cfg.contains("concurrency: 1"), "{cfg}");
        workers.push(Worker::start(s.dir.path(), &format!("w{w}"), &cfg, &redis.url(), &ns));
        setups.push(s);
    }
    for s in &setups {
        let port = s.ports["fast"];
        wait_until("both CCRs", Duration::from_secs(30), || health(port));
    }
    let mut yaml = String::from("tasks:\n");
    for i in 0..8 {
        yaml.push_str(&format!("  - {{ name: t{i}, ccr_instance: fast, command: \"sleep 0.4; echo {i}\", prompt: \"q{i}\" }}\n"));
    }
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "t.yaml", &yaml);
    let out = submit(dir.path(), &redis.url(), &ns, &["t.yaml", "--json", "--no-save", "--no-report"], Duration::from_secs(120));
    assert_eq!(out.code, 0, "{}", out.stderr);
    let doc: Value = serde_json::from_str(&out.stdout).unwrap();
    let mut port_by_worker: std::collections::HashMap<String, std::collections::HashSet<String>> = Default::default();
    for t in doc["tasks"].as_array().unwrap() {
        let name = t["task_name"].as_str().unwrap();
        let (_, _, env) = sshd.recorded(name);
        let url = env.lines().find_map(|l| l.strip_prefix("ANTHROPIC_BASE_URL=")).unwrap().to_string();
        let key = env.lines().find_map(|l| l.strip_prefix("ANTHROPIC_API_KEY=")).unwrap().to_string();
        let probe = std::fs::read_to_string(sshd.path("rec").join(name).join("probe")).unwrap_or_default();
        assert!(probe.contains("\"status\":\"ok\""), "{name}: the agent on the SSH host reached CCR through {url}: {probe:?}");
        // The key the agent got is the APIKEY of the CCR of the worker that ran the task.
        let keys: Vec<String> = setups
            .iter()
            .map(|s| {
                let v: Value = serde_json::from_str(
                    &std::fs::read_to_string(s.dir.path().join("state/fast/.claude-code-router/config.json")).unwrap(),
                )
                .unwrap();
                v["APIKEY"].as_str().unwrap().to_string()
            })
            .collect();
        assert!(keys.contains(&key), "{name}: agent key is one of the workers' CCR keys");
        port_by_worker.entry(t["worker"].as_str().unwrap().to_string()).or_default().insert(url);
    }
    assert_eq!(port_by_worker.len(), 2, "both workers ran tasks: {port_by_worker:?}");
    let urls: Vec<&std::collections::HashSet<String>> = port_by_worker.values().collect();
    assert_eq!(urls[0].len(), 1, "one tunnel per worker");
    assert_eq!(urls[1].len(), 1);
    assert!(urls[0].is_disjoint(urls[1]), "the two workers' tunnel ports must differ: {port_by_worker:?}");
    for s in &setups {
        let v: Value =
            serde_json::from_str(&std::fs::read_to_string(s.dir.path().join("state/fast/.claude-code-router/config.json")).unwrap())
                .unwrap();
        assert_eq!(v["HOST"], "127.0.0.1", "CCR never listens beyond loopback in tunnel mode");
    }
    drop(workers);
}

/// Everything stored in this (private) Redis, as bytes, for the secret scan.
fn redis_bytes(redis: &Redis) -> Vec<u8> {
    let mut c = redis.client();
    let keys: Vec<String> = redis::cmd("KEYS").arg("*").query(&mut c).unwrap();
    let mut all = Vec::new();
    for k in keys {
        all.extend_from_slice(k.as_bytes());
        let t: String = redis::cmd("TYPE").arg(&k).query(&mut c).unwrap();
        let v: redis::Value = match t.as_str() {
            "string" => redis::cmd("GET").arg(&k).query(&mut c).unwrap(),
            "hash" => redis::cmd("HGETALL").arg(&k).query(&mut c).unwrap(),
            "list" => redis::cmd("LRANGE").arg(&k).arg(0).arg(-1).query(&mut c).unwrap(),
            "set" => redis::cmd("SMEMBERS").arg(&k).query(&mut c).unwrap(),
            "zset" => redis::cmd("ZRANGE").arg(&k).arg(0).arg(-1).query(&mut c).unwrap(),
            "stream" => redis::cmd("XRANGE").arg(&k).arg("-").arg("+").query(&mut c).unwrap(),
            _ => redis::Value::Nil,
        };
        all.extend_from_slice(format!("{v:?}").as_bytes());
    }
    all
}

fn files_under(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            files_under(&p, out);
        } else {
            out.push(p);
        }
    }
}

/// A worker running the real chain: SSH to the private sshd, the real Claude Code CLI there,
/// reverse tunnels to two supervised real CCRs, which route to the stub provider.
struct Chain {
    redis: Redis,
    _sshd: Sshd,
    stub: zo_e2e::stub_provider::StubProvider,
    s: Setup,
    ns: String,
    keys: [String; 2],
    worker: Worker,
}

fn chain(name: &str, concurrency: usize, provider_delay: Duration) -> Chain {
    chain_with(name, concurrency, zo_e2e::stub_provider::StubProvider::start_with_delay(provider_delay), "")
}

/// [`chain`] with a given provider, and more lines for the worker's `agent:` section.
fn chain_with(name: &str, concurrency: usize, stub: zo_e2e::stub_provider::StubProvider, agent_extra: &str) -> Chain {
    let redis = Redis::start();
    let sshd = Sshd::start();
    let ns = namespace(name);
    let s = setup(&["fast", "general"], "unused");
    let keys = [format!("sk-fast-{:x}", rand_u64()), format!("sk-general-{:x}", rand_u64())];
    for (inst, var) in [("fast", "ZO_CHAIN_FAST_KEY"), ("general", "ZO_CHAIN_GENERAL_KEY")] {
        std::fs::write(
            s.dir.path().join("ccr").join(format!("{inst}.json")),
            ccr_config(&stub.base_url(), &format!("${{{var}}}"), &format!("model-{inst}")),
        )
        .unwrap();
    }
    std::fs::write(s.dir.path().join(".env"), format!("ZO_CHAIN_FAST_KEY={}\nZO_CHAIN_GENERAL_KEY={}\n", keys[0], keys[1])).unwrap();
    let cfg = std::fs::read_to_string(&s.config).unwrap().replace(
        "executor: { kind: local }\nagent: { mode: simulate }\n",
        &format!("{}agent:\n  command: \"{} -p --output-format json\"\n{agent_extra}", sshd.executor_yaml(), claude_bin().display()),
    );
    let cfg = cfg.replace("  - { name: fast }\n", &format!("  - {{ name: fast, concurrency: {concurrency} }}\n"));
    let worker = Worker::start(s.dir.path(), "w", &cfg, &redis.url(), &ns);
    for inst in ["fast", "general"] {
        let port = s.ports[inst];
        wait_until("CCR", Duration::from_secs(30), || health(port));
    }
    Chain { redis, _sshd: sshd, stub, s, ns, keys, worker }
}

fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(7);
    h.finish()
}

#[test]
fn the_real_chain_routes_each_task_to_its_instance_and_keeps_keys_secret() {
    let c = chain("chain", 2, Duration::ZERO);
    let dir = c.s.dir.path();
    write(
        dir,
        "t.yaml",
        "tasks:\n  - { name: f1, ccr_instance: fast, command: \"echo input-f1\", prompt: \"summarize f1\", timeout: 2m }\n  - { name: f2, ccr_instance: fast, prompt: \"think about f2\", timeout: 2m }\n  - { name: g1, ccr_instance: general, command: \"echo input-g1\", prompt: \"summarize g1\", timeout: 2m }\n  - { name: g2, ccr_instance: general, prompt: \"think about g2\", timeout: 2m }\n",
    );
    let t0 = Instant::now();
    let out = submit(dir, &c.redis.url(), &c.ns, &["t.yaml", "--json", "--results-dir", "res"], Duration::from_secs(240));
    let took = t0.elapsed();
    assert_eq!(out.code, 0, "{}\n{}\nworker log:\n{}", out.stdout, out.stderr, c.worker.log_text());
    let doc: Value = serde_json::from_str(&out.stdout).unwrap();
    let t = tasks_by_name(&doc);
    for (name, model) in [("f1", "model-fast"), ("f2", "model-fast"), ("g1", "model-general"), ("g2", "model-general")] {
        assert_eq!(t[name]["status"], "success", "{}", t[name]);
        assert_eq!(t[name]["output"], format!("stub answer from {model}"), "{name} was routed to its instance's model");
        assert_eq!(t[name]["input_tokens"], 11, "{}", t[name]);
        assert_eq!(t[name]["output_tokens"], 7);
    }
    assert_eq!(doc["results_by_instance"]["fast"]["input_tokens"], 22);
    assert_eq!(doc["results_by_instance"]["general"]["output_tokens"], 14);
    let agent_ms: Vec<f64> = doc["tasks"].as_array().unwrap().iter().map(|t| t["agent"]["duration"].as_f64().unwrap() * 1000.0).collect();
    println!("real chain: 4 tasks in {:.1}s; agent + CCR per task (ms): {agent_ms:?}", took.as_secs_f64());
    // The provider saw each instance's key with that instance's model, never another's.
    let seen = c.stub.seen();
    assert!(seen.iter().filter(|r| r.model == "model-fast").count() >= 2, "{seen:?}");
    assert!(seen.iter().filter(|r| r.model == "model-general").count() >= 2);
    for r in &seen {
        let want = if r.model == "model-fast" { &c.keys[0] } else { &c.keys[1] };
        assert_eq!(r.authorization, format!("Bearer {want}"), "request for {} carried the wrong key", r.model);
    }
    assert!(
        seen.iter().any(|r| r.model == "model-fast" && r.body.contains("input-f1") && r.body.contains("summarize f1")),
        "the command's output and the prompt reach the model"
    );
    // No key anywhere it must not be: Redis, reports, the worker's log, CCR's logs.
    let ccr_keys: Vec<String> = ["fast", "general"]
        .iter()
        .map(|i| {
            let v: Value =
                serde_json::from_str(&std::fs::read_to_string(dir.join(format!("state/{i}/.claude-code-router/config.json"))).unwrap())
                    .unwrap();
            v["APIKEY"].as_str().unwrap().to_string()
        })
        .collect();
    let secrets: Vec<&str> = c.keys.iter().chain(&ccr_keys).map(String::as_str).collect();
    let mut places: Vec<(String, Vec<u8>)> =
        vec![("redis".into(), redis_bytes(&c.redis)), ("worker log".into(), c.worker.log_text().into_bytes())];
    let mut files = Vec::new();
    files_under(&dir.join("res"), &mut files);
    files_under(&dir.join("state"), &mut files);
    for f in files.into_iter().filter(|f| !f.ends_with("config.json")) {
        places.push((f.display().to_string(), std::fs::read(&f).unwrap()));
    }
    places.push(("zo-submit stdout".into(), out.stdout.clone().into_bytes()));
    for (what, bytes) in &places {
        for s in &secrets {
            assert!(!bytes.windows(s.len()).any(|w| w == s.as_bytes()), "a key leaked into {what}");
        }
    }
    assert!(places.len() >= 4, "{:?}", places.iter().map(|p| &p.0).collect::<Vec<_>>());
}

#[test]
fn a_ccr_killed_mid_run_is_restarted_and_the_run_completes() {
    // The provider answers slowly, so the kill lands while a task waits for its answer.
    let c = chain("chainkill", 1, Duration::from_millis(1500));
    let dir = c.s.dir.path();
    // The default retry classes (network, rate_limit): a task caught by the crash is retried.
    let mut yaml = String::from("defaults:\n  retry_policy: { max_retries: 4, base_delay: 500ms }\ntasks:\n");
    for i in 0..5 {
        yaml.push_str(&format!("  - {{ name: k{i}, ccr_instance: fast, prompt: \"question {i}\", timeout: 2m }}\n"));
    }
    write(dir, "t.yaml", &yaml);
    let url = c.redis.url();
    let ns = c.ns.clone();
    let d = dir.to_path_buf();
    let submitter =
        std::thread::spawn(move || submit(&d, &url, &ns, &["t.yaml", "--json", "--no-save", "--no-report"], Duration::from_secs(300)));
    // Kill the fast CCR while the second task's request is in flight.
    wait_until("a second request", Duration::from_secs(120), || c.stub.seen().iter().filter(|r| r.model == "model-fast").count() >= 2);
    // Tasks run one at a time: the request in flight is the second task's.
    let in_flight = |seen: &[zo_e2e::stub_provider::Seen]| seen.iter().filter(|r| r.body.contains("question 1")).count();
    let before = in_flight(&c.stub.seen());
    assert!(before >= 1, "the second task's request is in flight");
    let pid = status(&c.s, &[])[0]["pid"].as_u64().unwrap();
    std::process::Command::new("kill").args(["-KILL", &pid.to_string()]).status().unwrap();
    let out = submitter.join().unwrap();
    assert_eq!(out.code, 0, "{}\nworker log:\n{}", out.stdout, c.worker.log_text());
    let doc: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(doc["summary"]["successful"], 5);
    let failed_attempts: Vec<&Value> = doc["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|t| t["attempt_history"].as_array().unwrap())
        .filter(|a| a["status"] != "success")
        .collect();
    // The request in flight at the kill is answered again one way or the other: Claude Code
    // retries a failed connection by itself, and when CCR is back by then the provider sees
    // that request twice; otherwise the attempt fails as `network` and the queue retries it.
    let after = in_flight(&c.stub.seen());
    println!(
        "CCR kill: {} attempt(s) caught by the crash, retried by the queue; the cut request was sent {before} time(s) before the kill, {after} in all",
        failed_attempts.len()
    );
    assert!(after > before, "the request cut by the kill was sent again");
    // One of the two ways happened, and says so: the queue retried the caught task (a failed
    // attempt of class network, then success), or Claude Code did (no failed attempt, and the
    // caught task succeeded on its first attempt).
    let caught = &tasks_by_name(&doc)["k1"];
    if failed_attempts.is_empty() {
        assert_eq!(caught["attempts"], 1, "no failed attempt recorded, yet k1 ran again: {caught}");
    } else {
        assert!(caught["attempts"].as_u64().unwrap() >= 2, "k1 was caught and retried: {caught}");
        for a in failed_attempts {
            assert_eq!(a["error_class"], "network", "a task caught by a CCR crash is the router's fault, retried: {a}");
        }
    }
    let rows = status(&c.s, &[]);
    let fast = rows.iter().find(|r| r["instance"] == "fast").unwrap();
    assert!(fast["restarts"].as_u64().unwrap() >= 1, "{fast}");
    assert!(c.worker.log_text().contains("CCR exited"));
}

#[test]
fn callback_mode_binds_ccr_to_the_callback_host_and_points_the_agent_there() {
    let redis = Redis::start();
    let sshd = Sshd::start();
    let ns = namespace("callback");
    let s = setup(&["fast"], "sk-stub");
    let cfg = std::fs::read_to_string(&s.config)
        .unwrap()
        .replace("executor: { kind: local }\nagent: { mode: simulate }\n", &format!("{}{}", sshd.executor_yaml(), sshd.agent_yaml()));
    let missing = write(s.dir.path(), "bad.yaml", &cfg.replace("ccr:\n", "ccr:\n  reach: callback\n"));
    let out = worker_cmd(&["--config", missing.to_str().unwrap()], &[]);
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("`reach: callback` needs `callback_host`"), "{}", out.stderr);
    let good = cfg.replace("ccr:\n", "ccr:\n  reach: callback\n  callback_host: 127.0.0.1\n");
    let _w = Worker::start(s.dir.path(), "w", &good, &redis.url(), &ns);
    let port = s.ports["fast"];
    wait_until("CCR", Duration::from_secs(30), || health(port));
    write(s.dir.path(), "t.yaml", "tasks:\n  - { name: cb, ccr_instance: fast, prompt: p }\n");
    let out = submit(s.dir.path(), &redis.url(), &ns, &["t.yaml", "--quiet", "--no-save", "--no-report"], Duration::from_secs(60));
    assert_eq!(out.code, 0, "{}", out.stderr);
    let (_, _, env) = sshd.recorded("cb");
    assert!(env.lines().any(|l| l == format!("ANTHROPIC_BASE_URL=http://127.0.0.1:{port}")), "{env}");
    assert!(env.lines().any(|l| l == "API_TIMEOUT_MS=300000"), "{env}");
    let v: Value =
        serde_json::from_str(&std::fs::read_to_string(s.dir.path().join("state/fast/.claude-code-router/config.json")).unwrap()).unwrap();
    assert_eq!(v["HOST"], "127.0.0.1");
    let key = v["APIKEY"].as_str().unwrap();
    assert!(env.lines().any(|l| l == format!("ANTHROPIC_API_KEY={key}")), "the agent authenticates with the instance's CCR key");
}

/// `zo-submit --with-worker`: by default the worker starts its CCRs for the run and stops
/// them after; `--no-start-ccr` uses those `zo-worker ccr start` left running (exit 3 naming
/// that command when there are none) and leaves them; `--stop-after` stops them too.
#[test]
fn with_worker_starts_its_ccrs_or_uses_the_running_ones() {
    let s = setup(&["fast"], "sk-stub");
    let redis = Redis::start();
    let ns = namespace("withccr");
    write(s.dir.path(), "t.yaml", "tasks:\n  - { name: A, ccr_instance: fast, prompt: p }\n");
    let cfg = s.config.to_str().unwrap();
    let port = s.ports["fast"];
    let run = |extra: &[&str]| {
        let mut args = vec!["t.yaml", "--with-worker", cfg, "--no-save", "--no-report"];
        args.extend_from_slice(extra);
        submit(s.dir.path(), &redis.url(), &ns, &args, Duration::from_secs(120))
    };
    let out = run(&[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(!health(port) && status(&s, &[])[0]["pid"].is_null(), "the run's CCR stopped with its worker");

    let out = run(&["--no-start-ccr"]);
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert!(out.stderr.contains(&format!("start them with `zo-worker --config {cfg} ccr start`")), "{}", out.stderr);

    assert_eq!(worker_cmd(&["ccr", "start", "--config", cfg], &[]).code, 0);
    let pid = status(&s, &[])[0]["pid"].as_u64().unwrap();
    let out = run(&["--no-start-ccr"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let row = status(&s, &[])[0].clone();
    assert!(row["pid"] == pid && row["healthy"] == true && row["owner"] == "cli", "used and left running: {row}");

    let out = run(&["--no-start-ccr", "--stop-after"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stderr.contains(&format!("ccr: fast: stopped (pid {pid})")), "{}", out.stderr);
    assert!(!pid_alive(pid) && !health(port), "--stop-after stops them");
}

/// `--ssh-host` replaces the config's SSH host; `--windows-host ADDR` makes CCR listen on
/// ADDR and the agent call it there (`reach: callback`).
#[test]
fn with_worker_takes_the_ssh_host_and_the_windows_host_from_the_command_line() {
    let redis = Redis::start();
    let sshd = Sshd::start();
    let ns = namespace("withhosts");
    let s = setup(&["fast"], "sk-stub");
    let executor = sshd.executor_yaml().replace("host: 127.0.0.1", "host: zo-nowhere.invalid");
    let cfg = std::fs::read_to_string(&s.config)
        .unwrap()
        .replace("executor: { kind: local }\nagent: { mode: simulate }\n", &format!("{executor}{}", sshd.agent_yaml()));
    let path = write(s.dir.path(), "hosts.yaml", &cfg);
    write(s.dir.path(), "t.yaml", "tasks:\n  - { name: cb, ccr_instance: fast, prompt: p }\n");
    let args = ["t.yaml", "--with-worker", path.to_str().unwrap(), "--ssh-host", "127.0.0.1", "--windows-host", "127.0.0.2"];
    let out = submit(s.dir.path(), &redis.url(), &ns, &[&args[..], &["--no-save", "--no-report"]].concat(), Duration::from_secs(120));
    assert_eq!(out.code, 0, "{}", out.stderr);
    let port = s.ports["fast"];
    let (_, _, env) = sshd.recorded("cb");
    assert!(env.lines().any(|l| l == format!("ANTHROPIC_BASE_URL=http://127.0.0.2:{port}")), "{env}");
    let v: Value =
        serde_json::from_str(&std::fs::read_to_string(s.dir.path().join("state/fast/.claude-code-router/config.json")).unwrap()).unwrap();
    assert_eq!(v["HOST"], "127.0.0.2", "CCR listened on the callback address");
}

/// A provider over its rate limit, through the real chain (CLI → CCR → provider): the answer
/// the CLI prints is recognised as a rate limit, the instance's shared backoff starts, and the
/// task, handed back at the same attempt, waits it out and succeeds. The CLI's own retries are off (`CLAUDE_CODE_MAX_RETRIES=0`), so the 429
/// reaches the worker.
#[test]
fn a_rate_limit_through_the_real_chain_waits_out_the_shared_backoff() {
    let stub = zo_e2e::stub_provider::StubProvider::start_rate_limited(1, 4);
    let c = chain_with("chain429", 1, stub, "  env:\n    CLAUDE_CODE_MAX_RETRIES: \"0\"\n");
    let dir = c.s.dir.path();
    write(
        dir,
        "t.yaml",
        "tasks:\n  - name: r1\n    ccr_instance: fast\n    prompt: p\n    timeout: 2m\n    retry_policy: { max_retries: 2, retry_on: [rate_limit], backoff: fixed, base_delay: 100ms }\n",
    );
    let out = submit(dir, &c.redis.url(), &c.ns, &["t.yaml", "--json", "--no-save", "--no-report"], Duration::from_secs(240));
    assert_eq!(out.code, 0, "{}\n{}\nworker log:\n{}", out.stdout, out.stderr, c.worker.log_text());
    let t = tasks_by_name(&serde_json::from_str::<Value>(&out.stdout).unwrap())["r1"].clone();
    // The answer the CLI printed was taken for a rate limit: the task was handed back at the
    // same attempt until the instance's backoff passed, then succeeded.
    let log = c.worker.log_text();
    let said = log.lines().find(|l| l.contains("the model answered with a rate limit")).unwrap_or_else(|| panic!("{log}"));
    println!("the CLI's answer to a 429: {said}");
    assert!(said.contains("429"), "{said}");
    assert!(log.contains("waiting for the rate limit: handed back until its turn"), "{log}");
    assert_eq!((t["status"].as_str(), t["attempts"].as_u64()), (Some("success"), Some(1)), "{t}");
    assert_eq!(t["output"], "stub answer from model-fast");
    assert!(t["rate_limit_wait"].as_f64().unwrap() >= 3.0, "waited out the backoff: {t}");
    assert_eq!(c.stub.seen().len(), 2, "one limited request, one answered: no hammering");
}
