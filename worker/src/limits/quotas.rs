//! Host quotas before a task starts (`resource_limits.quotas`): the execution host's CPU,
//! memory and disk use, read on that host by a short script through the task's own executor
//! (the remote helper over SSH, or locally), against the run's ceilings. Over quota the task
//! waits — its followers are told why — re-reading every few seconds, up to `quota_wait`;
//! then it fails with class `quota`.

use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};
use zo_common::model::{now_ms, ErrorClass, HostUsage, Outcome, Quotas};
use zo_common::store::{Job, Store};

use crate::exec::run::{run_script, Discard};
use crate::task::{cd_prefix, TaskContext};

/// How often an over-quota host is read again.
const RECHECK: Duration = Duration::from_secs(3);

/// The probe: CPU busy over 200 ms from /proc/stat, memory in use (MemTotal − MemAvailable),
/// disk in use on the work directory's filesystem; one `key value` line each.
const PROBE: &str = r#"read -r _ a b c d e f g h _ < /proc/stat; t1=$((a+b+c+d+e+f+g+h)); i1=$((d+e))
sleep 0.2
read -r _ a b c d e f g h _ < /proc/stat; t2=$((a+b+c+d+e+f+g+h)); i2=$((d+e))
dt=$((t2-t1)); [ "$dt" -gt 0 ] || dt=1
echo "cpu $(( 100 * (dt - (i2-i1)) / dt ))"
awk '/^MemTotal:/{t=$2} /^MemAvailable:/{a=$2} END{printf "mem %d\n", (t-a)*1024}' /proc/meminfo
df -Pk . | awk 'NR==2{printf "disk %d\n", $3*1024}'
"#;

/// Parses the probe's output.
pub(crate) fn parse_usage(out: &str) -> Option<HostUsage> {
    let mut u = HostUsage { cpu_percent: 0, memory_bytes: 0, disk_bytes: 0 };
    let mut seen = 0;
    for line in out.lines() {
        let (k, v) = line.split_once(' ')?;
        let v = v.trim();
        match k {
            "cpu" => u.cpu_percent = v.parse().ok()?,
            "mem" => u.memory_bytes = v.parse().ok()?,
            "disk" => u.disk_bytes = v.parse().ok()?,
            _ => continue,
        }
        seen += 1;
    }
    (seen == 3).then_some(u)
}

/// Reads the execution host's use now.
async fn probe(ctx: &TaskContext, stop: &CancellationToken) -> Result<HostUsage, String> {
    let Some(ex) = ctx.host().map(|e| e.as_ref()) else { return Err("the simulate executor has no host to read".into()) };
    let script = format!("{}{PROBE}", cd_prefix(ctx.workdir.as_deref()));
    let out = run_script(ex, &script, None, &[], Instant::now() + Duration::from_secs(15), stop, 64 << 10, &Discard)
        .await
        .map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&out.stdout);
    parse_usage(&text)
        .ok_or_else(|| format!("could not read the host's use (exit {:?}): {}", out.exit_code, String::from_utf8_lossy(&out.stderr).trim()))
}

/// Waits until the task's host (reached through `ctx`'s executor) is under `q`; the first
/// wait is noted on the task in `store`. `Ok(waited)`, or the failed outcome after
/// `quota_wait` (class `quota`), or a cancelled one when told to stop.
pub(crate) async fn wait_under(
    ctx: &TaskContext,
    store: &Store,
    job: &Job,
    q: &Quotas,
    stop: &CancellationToken,
) -> Result<Duration, Outcome> {
    let started = Instant::now();
    if ctx.host().is_none() {
        // The simulate executor has no host to be over quota.
        return Ok(Duration::ZERO);
    }
    let deadline = started + q.wait();
    let mut told = false;
    loop {
        let over = match probe(ctx, stop).await {
            Ok(u) => q.exceeded(&u),
            Err(e) => {
                // A host whose use cannot be read does not hold tasks back.
                warn!("quotas not checked: {e}");
                return Ok(started.elapsed());
            }
        };
        if over.is_empty() {
            return Ok(started.elapsed());
        }
        let detail = over.join(", ");
        if Instant::now() >= deadline {
            return Err(Outcome::fail(
                ErrorClass::Quota,
                format!("its host stayed over the run's quotas for {}: {detail}", humantime::format_duration(q.wait())),
            ));
        }
        if !told {
            told = true;
            info!("host over quota ({detail}); waiting up to {}", humantime::format_duration(q.wait()));
            let until = now_ms() + deadline.saturating_duration_since(Instant::now()).as_millis() as u64;
            if let Ok(mut c) = store.conn().await {
                let _ = store.note_waiting(&mut c, &job.run_id, job.idx, "quota", until, &detail).await;
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(RECHECK.min(deadline.saturating_duration_since(Instant::now()))) => {}
            _ = stop.cancelled() => return Err(Outcome::fail(ErrorClass::Cancelled, "cancelled while it waited for its host to come under quota".into())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_is_read_from_the_probe() {
        let u = parse_usage("cpu 37\nmem 1073741824\ndisk 42\n").unwrap();
        assert_eq!(u, HostUsage { cpu_percent: 37, memory_bytes: 1 << 30, disk_bytes: 42 });
        assert_eq!(parse_usage("cpu 37\nmem x\ndisk 1\n"), None);
        assert_eq!(parse_usage("cpu 37\n"), None);
        let q = Quotas { max_cpu_percent: Some(30), max_memory_bytes: Some(2 << 30), max_disk_bytes: Some(1), wait_ms: 1000 };
        assert_eq!(q.exceeded(&u), vec!["CPU 37% busy > 30%".to_string(), "disk 0.00 GB in use > 0.00 GB".to_string()]);
    }
}
