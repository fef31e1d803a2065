//! Reading what `zo-submit` printed: its JSON documents and their timestamps.

use std::path::Path;
use std::time::Duration;

use super::{submit, Outcome};

/// Runs `zo-submit ARGS` (the arguments include `--json` where wanted), which must exit 0:
/// its stdout as JSON.
pub fn submit_json(dir: &Path, redis_url: &str, ns: &str, args: &[&str], limit: Duration) -> serde_json::Value {
    let out = submit(dir, redis_url, ns, args, limit);
    assert_eq!(out.code, 0, "zo-submit {args:?} exited {}:\n{}", out.code, out.stderr);
    serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("zo-submit {args:?}: not JSON ({e}):\n{}", out.stdout))
}

/// The results document `zo-submit --json` printed.
pub fn json_doc(out: &Outcome) -> serde_json::Value {
    serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("stdout is not one JSON document ({e}):\n{}\nstderr:\n{}", out.stdout, out.stderr))
}

/// Task reports by name from a results document.
pub fn tasks_by_name(doc: &serde_json::Value) -> std::collections::HashMap<String, serde_json::Value> {
    doc["tasks"].as_array().expect("tasks").iter().map(|t| (t["task_name"].as_str().expect("name").to_string(), t.clone())).collect()
}

/// Unix milliseconds of an RFC 3339 UTC timestamp as the reports write them.
pub fn rfc3339_ms(ts: &str) -> u64 {
    let (date, time) = ts.trim_end_matches('Z').split_once('T').expect("T");
    let d: Vec<i64> = date.split('-').map(|p| p.parse().expect("date")).collect();
    let (y, m, day) = (d[0], d[1], d[2]);
    // Days from civil (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let mut parts = time.split(':');
    let h: f64 = parts.next().expect("h").parse().expect("h");
    let mi: f64 = parts.next().expect("m").parse().expect("m");
    let s: f64 = parts.next().expect("s").parse().expect("s");
    (days as f64 * 86_400_000.0 + ((h * 60.0 + mi) * 60.0 + s) * 1000.0).round() as u64
}
