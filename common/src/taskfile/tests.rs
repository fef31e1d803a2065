//! Task-file validation as data: one case per kind of bad input, with the exact message.

use std::time::Duration;

use super::*;

/// Every `tests/data/taskfile/NAME.yaml` fails validation with exactly the message in
/// `NAME.err` beside it (positions name the file as `NAME.yaml`).
#[test]
fn bad_task_files_give_their_messages() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/data/taskfile");
    let mut cases: Vec<_> = std::fs::read_dir(&dir).expect("tests/data/taskfile").flatten().map(|e| e.path()).collect();
    cases.retain(|p| p.extension().is_some_and(|x| x == "yaml"));
    cases.sort();
    assert!(cases.len() >= 18, "only {} cases in {}", cases.len(), dir.display());
    let mut failed = Vec::new();
    for case in &cases {
        let name = case.file_name().unwrap().to_string_lossy().into_owned();
        let expected = std::fs::read_to_string(case.with_extension("err")).unwrap_or_else(|_| panic!("{name} has no .err beside it"));
        let yaml = std::fs::read_to_string(case).unwrap();
        match parse(&yaml, &name, &Catalog::builtin()) {
            Ok(f) => failed.push(format!("{name}: expected an error, parsed {} tasks", f.tasks.len())),
            Err(e) if e.to_string() != expected.trim_end() => {
                failed.push(format!("{name}:\n  expected: {}\n  got:      {e}", expected.trim_end()))
            }
            Err(_) => {}
        }
    }
    assert!(failed.is_empty(), "{}", failed.join("\n"));
}

fn ok(yaml: &str) -> TaskFile {
    parse(yaml, "t.yaml", &Catalog::builtin()).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn valid_file_parses_with_defaults() {
    let f = ok("tasks:\n  - name: A\n    ccr_instance: fast\n    command: ls\n  - name: B\n    ccr_instance: general\n    prompt: hi\n    timeout: 5m\n    dependencies: [A]\n    tags: [x]\n");
    assert_eq!(f.tasks.len(), 2);
    assert_eq!(f.tasks[0].timeout(), DEFAULT_TIMEOUT);
    assert_eq!(f.tasks[1].timeout(), Duration::from_secs(300));
    assert_eq!(f.tasks[1].deps, vec![0]);
    assert_eq!(f.lines[1], 5);
}

#[test]
fn timeouts_take_seconds_or_humantime() {
    let f = ok("tasks:\n  - {name: A, ccr_instance: fast, command: ls, timeout: 90}\n  - {name: B, ccr_instance: fast, command: ls, timeout: \"90s\"}\n  - {name: C, ccr_instance: fast, command: ls, timeout: 1.5}\n  - {name: D, ccr_instance: fast, command: ls, timeout: 1h 30m}\n");
    let t: Vec<u64> = f.tasks.iter().map(|t| t.timeout_ms).collect();
    assert_eq!(t, vec![90_000, 90_000, 1_500, 5_400_000]);
}

#[test]
fn prompts_survive_byte_exact() {
    let f = ok("tasks:\n  - name: A\n    ccr_instance: fast\n    prompt: \"it's \\\"$(rm -rf /)\\\" `x` \\u00e9\\n\\n\"\n");
    assert_eq!(f.tasks[0].prompt.as_deref(), Some("it's \"$(rm -rf /)\" `x` é\n\n"));
}

#[test]
fn syntax_error_has_position() {
    let e = parse("tasks:\n  - name: [A\n", "t.yaml", &Catalog::builtin()).unwrap_err().to_string();
    assert!(e.starts_with("t.yaml:"), "{e}");
    assert!(e.split(':').nth(1).unwrap().parse::<u32>().is_ok(), "{e}");
}

#[test]
fn wrong_type() {
    let e = parse("tasks:\n  - {name: A, ccr_instance: fast, command: ls, dependencies: A}\n", "t.yaml", &Catalog::builtin())
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("t.yaml:2:"), "{e}");
}

#[test]
fn several_errors_are_all_reported_in_file_order() {
    let e =
        parse("tasks:\n  - {name: A, ccr_instance: nope, command: ls}\n  - {name: B, ccr_instance: fast}\n", "t.yaml", &Catalog::builtin())
            .unwrap_err();
    assert_eq!(e.0.len(), 2);
    assert!(e.0[0].pos < e.0[1].pos);
}

#[test]
fn example_files_are_valid() {
    for f in ["../tasks/example.yaml", "../tasks/demo.yaml"] {
        let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(f);
        load(&p, &Catalog::builtin(), crate::yaml::DEFAULT_MAX_FILE_BYTES).unwrap_or_else(|e| panic!("{e}"));
    }
}

#[test]
fn large_task_files_are_not_refused_by_the_yaml_budget() {
    let mut text = String::from("tasks:\n");
    for i in 0..40_000 {
        text.push_str(&format!("  - {{ name: t{i}, ccr_instance: fast, prompt: p }}\n"));
    }
    assert_eq!(ok(&text).tasks.len(), 40_000);
}

/// A large file, parsed in parts on several threads, gives exactly what parsing it in one
/// piece gives: the same tasks and, for a file with mistakes, the same messages.
#[test]
fn a_file_parsed_in_parts_is_the_file_parsed_whole() {
    let catalog = Catalog::builtin();
    let mut good = String::from("name: big\ndefaults:\n  priority: low\ntasks:\n");
    for i in 0..6000 {
        match i % 3 {
            0 => good.push_str(&format!("  - {{ name: t{i}, ccr_instance: fast, prompt: p }}\n")),
            1 => good.push_str(&format!(
                "  # task {i}\n  - name: t{i}\n    ccr_instance: general\n    command: |\n      echo {i}\n      - still the command\n    dependencies: [t{}]\n    timeout: 90\n\n",
                i - 1
            )),
            _ => good.push_str(&format!("  - name: t{i}\n    ccr_instance: fast\n    prompt: \"p {i}\"\n    tags: [a, b]\n    retry_policy: {{ max_retries: 1 }}\n")),
        }
    }
    let split = split::split(&good, 4).expect("the file is split");
    assert_eq!(split.parts.len(), 4);
    let whole: RawFile = yaml::from_str(&good, "t.yaml").unwrap();
    let parts = parse_split(&split, "t.yaml").expect("every part parses");
    assert_eq!(parts.tasks.as_ref().unwrap().referenced, whole.tasks.as_ref().unwrap().referenced, "the sequence's position");
    let a = validate::validate(whole, &good, "t.yaml", &catalog).unwrap();
    let b = validate::validate(parts, &good, "t.yaml", &catalog).unwrap();
    assert_eq!(a, b);
    assert_eq!(b.tasks.len(), 6000);
    assert_eq!(b.lines[4000], ok(&good).lines[4000]);

    // Entries at column 0 split as well.
    let (head, tail) = good.split_once("tasks:\n").unwrap();
    let flat = format!("{head}tasks:\n{}", tail.lines().map(|l| format!("{}\n", l.strip_prefix("  ").unwrap_or(l))).collect::<String>());
    let split = split::split(&flat, 2).expect("the flat file is split");
    let whole = validate::validate(yaml::from_str(&flat, "t.yaml").unwrap(), &flat, "t.yaml", &catalog).unwrap();
    assert_eq!(validate::validate(parse_split(&split, "t.yaml").unwrap(), &flat, "t.yaml", &catalog).unwrap(), whole);
    assert_eq!(whole.tasks, a.tasks, "the same tasks as the indented file");

    // Mistakes in several parts: the same messages, in the same order, at the same places.
    let bad = good.replace("name: t100,", "name: t99,").replace("ccr_instance: fast, prompt: p }\n", "ccr_instance: fats, prompt: p }\n");
    let bad = bad.replacen("dependencies: [t4999]", "dependencies: [nope]", 1);
    let whole = validate::validate(yaml::from_str(&bad, "t.yaml").unwrap(), &bad, "t.yaml", &catalog).unwrap_err();
    let split = split::split(&bad, 4).unwrap();
    let parts = validate::validate(parse_split(&split, "t.yaml").unwrap(), &bad, "t.yaml", &catalog).unwrap_err();
    assert_eq!(parts, whole);
    assert!(parts.to_string().contains("unknown ccr_instance `fats`"));
    assert_eq!(parse(&bad, "t.yaml", &catalog).unwrap_err(), whole);

    // A syntax error in one part: the shortcut gives up and the whole file's message stands.
    let broken = good.replacen("prompt: \"p 5000\"", "prompt: \"p 5000", 1);
    assert!(parse_split(&split::split(&broken, 4).unwrap(), "t.yaml").is_none());
    let err = parse(&broken, "t.yaml", &catalog).unwrap_err();
    assert_eq!(err, TaskFileError(vec![yaml::from_str::<RawFile>(&broken, "t.yaml").err().unwrap()]));
}

/// The seed's `resource_limits` example, as written.
#[test]
fn the_seeds_resource_limits_block_is_accepted() {
    let f = ok(r#"
resource_limits:
  max_concurrent_tasks: 10
  max_tasks_per_instance: 3

  models:
    - name: "smart"
      max_rpm: 50        # Requests per minute
      max_tpm: 100000    # Tokens per minute
      cost_per_1k_tokens: 0.03

  budget:
    max_cost_per_workflow: 5.00  # USD
    alert_threshold: 0.80        # 80% of budget

  quotas:
    max_cpu_percent: 80
    max_memory_gb: 16
    max_disk_gb: 100
tasks:
  - { name: a, ccr_instance: smart, prompt: p }
"#);
    let l = &f.limits;
    assert_eq!((l.max_concurrent_tasks, l.max_tasks_per_instance), (Some(10), Some(3)));
    let smart = &l.models["smart"];
    assert_eq!((smart.max_rpm, smart.max_tpm, smart.price), (Some(50), Some(100_000), Some(crate::model::Price::flat(30_000_000))));
    let b = l.budget.unwrap();
    assert_eq!((b.max_cost, b.alert_at()), (5_000_000_000, 4_000_000_000));
    let q = l.quotas.clone().unwrap();
    assert_eq!((q.max_cpu_percent, q.max_memory_bytes, q.max_disk_bytes), (Some(80), Some(16 << 30), Some(100 << 30)));
    assert_eq!(q.wait(), crate::model::DEFAULT_QUOTA_WAIT);
    assert_eq!(f.tasks[0].quotas.as_ref(), Some(&q), "each task carries the run's quotas");
    // The task is priced from the block.
    assert_eq!(f.tasks[0].price, Some(crate::model::Price::flat(30_000_000)));
    // Without the block, a task takes its catalog price (none in the built-in catalog).
    assert_eq!(ok("tasks:\n  - { name: a, ccr_instance: smart, prompt: p }\n").tasks[0].price, None);
}
