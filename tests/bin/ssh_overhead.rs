//! Measures what the SSH path adds per task: N tasks whose command is `true` (no prompt) run
//! by one worker over the `ssh` executor against a private sshd (as the plain-profile user
//! zo-e2e), compared with the same tasks on the `local` executor, same Redis, same run.
//!
//!     cargo build --bins && cargo run -p zo-e2e --bin ssh-overhead -- [TASKS] [CONCURRENCY] [REPEATS]
//!
//! Prints a Markdown table of medians over the repeats: wall time per run, tasks/s, and the
//! median per-task command duration from the results document (session open + remote shell).

use std::time::{Duration, Instant};

use zo_e2e::*;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).expect("no NaN"));
    v[v.len() / 2]
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

fn main() {
    let args: Vec<usize> = std::env::args().skip(1).map(|a| a.parse().expect("numbers")).collect();
    let n = args.first().copied().unwrap_or(200);
    let conc = args.get(1).copied().unwrap_or(8);
    let repeats = args.get(2).copied().unwrap_or(5);
    let redis = Redis::start();
    let sshd = Sshd::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut yaml = String::from("tasks:\n");
    for i in 0..n {
        yaml.push_str(&format!("  - {{ name: t{i}, ccr_instance: fast, command: \"true\" }}\n"));
    }
    write(dir.path(), "t.yaml", &yaml);
    println!("| executor | tasks | in flight | wall s (median of {repeats}) | tasks/s | per-task command ms (median) |");
    println!("|---|---:|---:|---:|---:|---:|");
    for (label, exec) in [("local", "executor: { kind: local }\n".to_string()), ("ssh", sshd.executor_yaml())] {
        let ns = namespace(&format!("overhead-{label}"));
        let cfg = format!("{exec}max_output_bytes: 65536\ninstances: [ {{ name: fast, concurrency: {conc} }} ]\n");
        let _w = Worker::start(dir.path(), label, &cfg, &redis.url(), &ns);
        // Warm-up run: opens the SSH master(s).
        let warm = submit(dir.path(), &redis.url(), &ns, &["t.yaml", "--json", "--no-save", "--no-report"], Duration::from_secs(600));
        assert_eq!(warm.code, 0, "{}", failures(&warm));
        let (mut walls, mut per_task) = (Vec::new(), Vec::new());
        for _ in 0..repeats {
            let t = Instant::now();
            let out = submit(dir.path(), &redis.url(), &ns, &["t.yaml", "--json", "--no-save", "--no-report"], Duration::from_secs(600));
            walls.push(t.elapsed().as_secs_f64());
            assert_eq!(out.code, 0, "{}", failures(&out));
            let doc: serde_json::Value = serde_json::from_str(&out.stdout).expect("json");
            let durs: Vec<f64> = doc["tasks"]
                .as_array()
                .expect("tasks")
                .iter()
                .map(|t| t["command"]["duration"].as_f64().expect("duration") * 1000.0)
                .collect();
            per_task.push(median(durs));
        }
        let wall = median(walls);
        println!("| {label} | {n} | {conc} | {wall:.2} | {:.0} | {:.1} |", n as f64 / wall, median(per_task));
    }
}
