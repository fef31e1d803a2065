//! The worker config's parsing and checks.

use super::*;

fn parse(text: &str) -> Result<WorkerConfig, String> {
    let cfg: WorkerConfig = yaml::from_str(text, "w.yaml").map_err(|e| e.to_string())?;
    cfg.check("w.yaml", &Catalog::builtin()).map_err(|e| e.to_string())?;
    Ok(cfg)
}

#[test]
fn shipped_configs_are_valid() {
    for f in ["worker.yaml", "worker.local.yaml", "worker.simulate.yaml"] {
        let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs").join(f);
        WorkerConfig::load(&p).unwrap_or_else(|e| panic!("{e}"));
    }
}

#[test]
fn ssh_defaults() {
    let c = parse("executor: {kind: ssh}\ninstances: [{name: fast}]\n").unwrap();
    let ExecutorConfig::Ssh(s) = c.executor else { panic!() };
    assert_eq!((s.host.as_str(), s.max_channels, s.known_hosts), ("zo", 8, KnownHostsPolicy::Strict));
    assert_eq!(c.agent.command, DEFAULT_AGENT);
}

#[test]
fn bad_configs_say_what_to_change() {
    let cases = [
        ("executor: {kind: ssh}\ninstances: [{name: fats}]\n", "w.yaml: instance `fats` is not in the catalog; did you mean `fast`?"),
        ("executor: {kind: ssh}\ninstances: []\n", "w.yaml: `instances` is empty; list the instances this worker serves"),
        (
            "executor: {kind: ssh}\ninstances: [{name: fast, concurrency: 0}]\n",
            "w.yaml: instance `fast`: concurrency 0 is out of range; use 1 to 1000",
        ),
        ("executor: {kind: ssh, hots: x}\ninstances: [{name: fast}]\n", "w.yaml:1:23: unknown key `hots`; did you mean `host`?"),
        ("executor: {kind: tcp}\ninstances: [{name: fast}]\n", "w.yaml:1:12: unknown value `tcp`; use one of: ssh, local, simulate"),
        (
            "executor: {kind: local}\ninstances: [{name: fast}, {name: fast}]\n",
            "w.yaml: instance `fast` is listed twice; list each instance once",
        ),
    ];
    for (text, want) in cases {
        assert_eq!(parse(text).err().as_deref(), Some(want), "for {text}");
    }
}

#[test]
fn every_problem_of_a_config_at_once() {
    let e = parse("executor: {kind: ssh, host: ' '}\nlease: 1h1s\ninstances: [{name: fats}, {name: fast, concurrency: 0}]\n").unwrap_err();
    assert_eq!(
        e,
        "w.yaml: instance `fats` is not in the catalog; did you mean `fast`?\n\
         w.yaml: instance `fast`: concurrency 0 is out of range; use 1 to 1000\n\
         w.yaml: executor: `host` is empty; name the SSH host or ~/.ssh/config alias\n\
         w.yaml: `lease` is out of range; use 500ms to 1h"
    );
}

#[test]
fn command_line_overrides() {
    let mut c = parse("executor: {kind: ssh, host: zo}\ninstances: [{name: fast}]\nccr: {}\n").unwrap();
    c.override_with(Some("box-2"), Some("192.0.2.7")).unwrap();
    let ExecutorConfig::Ssh(s) = &c.executor else { panic!() };
    let ccr = c.ccr.as_ref().unwrap();
    assert_eq!((s.host.as_str(), ccr.reach, ccr.callback_host.as_deref()), ("box-2", Reach::Callback, Some("192.0.2.7")));
    let mut local = parse("executor: {kind: local}\ninstances: [{name: fast}]\n").unwrap();
    let e = local.override_with(Some("box-2"), None).unwrap_err();
    assert!(
        e.starts_with("--ssh-host applies to an `executor: { kind: ssh }` config;") && e.ends_with("on this machine (kind: local)"),
        "{e}"
    );
    let e = local.override_with(None, Some("192.0.2.7")).unwrap_err();
    assert!(e.starts_with("--ccr-callback-host applies to a config with a `ccr:` section"), "{e}");
}

#[test]
fn env_expansion() {
    // Values come from a lookup, not the process environment other tests share.
    let env = |n: &str| (n == "ZO_TEST_EXPAND").then(|| "v".to_string());
    assert_eq!(expand_with("a${ZO_TEST_EXPAND}b$ZO_TEST_EXPAND $", env).unwrap(), "avbv $");
    assert_eq!(expand_with("${ZO_TEST_UNSET_XYZ}", env).unwrap_err(), "environment variable `ZO_TEST_UNSET_XYZ` is not set");
    assert_eq!(expand_env("${ZO_TEST_SURELY_UNSET_XYZ}").unwrap_err(), "environment variable `ZO_TEST_SURELY_UNSET_XYZ` is not set");
}
