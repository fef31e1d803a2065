//! Following a run: live progress from the run's event stream and counters, warnings when
//! no live worker serves a needed instance, then the reports. Also keeps the run's outbox
//! flushed, so a run whose jobs were released but not yet enqueued always moves on.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use deadpool_redis::Pool;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use redis::streams::{StreamReadOptions, StreamReadReply};
use zo_common::catalog::Catalog;
use zo_common::keys::Keys;
use zo_common::model::{now_ms, JobSpec};
use zo_common::queue::{self, QueueError, RunMeta};
use zo_common::report;

use crate::cli::OutputOpts;
use crate::{exit, fail_queue, finish};

/// How long Redis may stay unreachable before the watcher gives up (the run goes on).
const GIVE_UP_AFTER: Duration = Duration::from_secs(120);
/// Least time between two refreshes of a followed run.
const STEP_EVERY: Duration = Duration::from_millis(50);
/// Least time between two rounds of a run's upkeep (due retries, outbox) by its watcher.
const UPKEEP_EVERY: Duration = Duration::from_millis(250);

struct View {
    names: Vec<String>,
    instances: Vec<String>,
    states: Vec<String>,
}

impl View {
    /// The run's names, instances and states; the names and instances from `local` when the
    /// caller holds the run's specs (a submit that goes on to follow its run), else from Redis.
    async fn load(
        conn: &mut impl redis::aio::ConnectionLike,
        keys: &Keys,
        run_id: &str,
        local: Option<&[JobSpec]>,
    ) -> Result<View, QueueError> {
        let mut v = match local {
            Some(specs) => View {
                names: specs.iter().map(|s| s.name.clone()).collect(),
                instances: specs.iter().map(|s| s.instance.clone()).collect(),
                states: vec!["waiting".into(); specs.len()],
            },
            None => {
                let spec: HashMap<u32, Vec<u8>> = redis::cmd("HGETALL").arg(keys.run(run_id, "spec")).query_async(conn).await?;
                let n = spec.len();
                let mut v = View { names: vec![String::new(); n], instances: vec![String::new(); n], states: vec!["waiting".into(); n] };
                for (i, blob) in spec {
                    let s = JobSpec::decode(&blob).map_err(|e| QueueError::Corrupt(format!("spec of task {i}: {e}")))?;
                    if let Some(slot) = v.names.get_mut(i as usize) {
                        *slot = s.name;
                        v.instances[i as usize] = s.instance;
                    }
                }
                v
            }
        };
        let state: HashMap<u32, String> = redis::cmd("HGETALL").arg(keys.run(run_id, "state")).query_async(conn).await?;
        for (i, st) in state {
            if let Some(slot) = v.states.get_mut(i as usize) {
                *slot = st;
            }
        }
        Ok(v)
    }

    fn per_instance(&self) -> String {
        let mut m: std::collections::BTreeMap<&str, (usize, usize)> = Default::default();
        for (i, inst) in self.instances.iter().enumerate() {
            let e = m.entry(inst).or_default();
            e.1 += 1;
            if is_final(&self.states[i]) {
                e.0 += 1;
            }
        }
        m.iter().map(|(k, (d, t))| format!("{k} {d}/{t}")).collect::<Vec<_>>().join(" · ")
    }

    fn waiting_instances(&self) -> HashMap<&str, usize> {
        let mut m = HashMap::new();
        for (i, st) in self.states.iter().enumerate() {
            if st == "queued" {
                *m.entry(self.instances[i].as_str()).or_default() += 1;
            }
        }
        m
    }
}

fn is_final(s: &str) -> bool {
    matches!(s, "success" | "failed" | "timeout" | "skipped" | "cancelled")
}

fn progress_line(m: &RunMeta, v: &View) -> String {
    let mut s = format!("running {} · ok {} · failed {}", m.running, m.success, m.failed);
    if m.timeout > 0 {
        s.push_str(&format!(" · timeout {}", m.timeout));
    }
    if m.skipped > 0 {
        s.push_str(&format!(" · skipped {}", m.skipped));
    }
    format!("{s} | {}", v.per_instance())
}

/// Instances served by a worker that sent a heartbeat in the last 15 s.
async fn live_instances(conn: &mut impl redis::aio::ConnectionLike, keys: &Keys) -> Result<HashSet<String>, QueueError> {
    let ids: Vec<String> =
        redis::cmd("ZRANGEBYSCORE").arg(keys.workers()).arg(now_ms().saturating_sub(15_000)).arg("+inf").query_async(conn).await?;
    let mut out = HashSet::new();
    if ids.is_empty() {
        return Ok(out);
    }
    let infos: Vec<Option<String>> =
        redis::cmd("MGET").arg(ids.iter().map(|i| keys.worker(i)).collect::<Vec<_>>()).query_async(conn).await?;
    for info in infos.into_iter().flatten() {
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(&info) {
            for i in v.get("instances").and_then(|x| x.as_array()).into_iter().flatten() {
                if let Some(s) = i.as_str() {
                    out.insert(s.to_string());
                }
            }
        }
    }
    Ok(out)
}

/// After Ctrl-C: on a terminal, ask whether to cancel the run or detach from it. Anything but
/// `c` (or no terminal, or a second Ctrl-C) detaches.
async fn ask_cancel(run_id: &str) -> bool {
    use std::io::IsTerminal;
    if !std::io::stdin().is_terminal() || !std::io::stderr().is_terminal() {
        return false;
    }
    eprint!("\n[d]etach (run {run_id} continues) or [c]ancel the run? [d/c] ");
    let answer = tokio::task::spawn_blocking(|| {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line).map(|_| line)
    });
    tokio::select! {
        a = answer => matches!(a, Ok(Ok(l)) if l.trim().eq_ignore_ascii_case("c")),
        _ = tokio::signal::ctrl_c() => false,
    }
}

/// Follows the run to its end, then writes the reports. Returns the exit code.
/// Follows a run to its end and writes its reports. `local`: the run's specs, when this
/// process just submitted it (saves reading them back).
pub async fn follow_and_report(
    pool: &Pool,
    keys: &Keys,
    run_id: &str,
    catalog: &Catalog,
    out: &OutputOpts,
    local: Option<&[JobSpec]>,
) -> u8 {
    let show = !out.quiet;
    let mut conn = match queue::conn(pool).await {
        Ok(c) => c,
        Err(e) => return fail_queue(&e),
    };
    let mut meta = match queue::run_meta(&mut *conn, keys, run_id).await {
        Ok(m) => m,
        Err(e) => return fail_queue(&e),
    };
    let mut view = match View::load(&mut *conn, keys, run_id, local).await {
        Ok(v) => v,
        Err(e) => return fail_queue(&e),
    };
    drop(conn);
    let bar = if show && !meta.finished {
        let b = ProgressBar::with_draw_target(Some(meta.total), ProgressDrawTarget::stderr());
        b.set_style(
            ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} {msg}")
                .expect("valid template")
                .progress_chars("█▉▊▋▌▍▎▏ "),
        );
        b.enable_steady_tick(Duration::from_millis(200));
        Some(b)
    } else {
        None
    };
    let say = |line: String| match &bar {
        Some(b) if !b.is_hidden() => b.println(line),
        _ => {
            if show {
                eprintln!("{line}")
            }
        }
    };
    let mut last_id = "0".to_string();
    let mut warned: HashSet<String> = HashSet::new();
    let mut last_worker_check = Instant::now() - Duration::from_secs(60);
    let mut failing_since: Option<Instant> = None;
    let interrupted = tokio::signal::ctrl_c();
    tokio::pin!(interrupted);
    let mut cancelled = false;
    // Paced: a watcher refreshes at most every STEP_EVERY and does the run's upkeep (due
    // retries, outbox) at most every UPKEEP_EVERY, so following a fast run costs Redis little
    // (workers do the same upkeep; the watcher covers runs that no worker looks after yet).
    let mut next_step = tokio::time::Instant::now();
    let mut next_upkeep = next_step;
    while !meta.finished {
        let step = async {
            tokio::time::sleep_until(next_step).await;
            next_step = tokio::time::Instant::now() + STEP_EVERY;
            let mut conn = queue::conn(pool).await?;
            if tokio::time::Instant::now() >= next_upkeep {
                next_upkeep = tokio::time::Instant::now() + UPKEEP_EVERY;
                queue::promote_due(&mut *conn, keys, run_id).await?;
                queue::flush_outbox(&mut *conn, keys, run_id).await?;
            }
            let opts = StreamReadOptions::default().count(2000).block(500);
            let reply: Option<StreamReadReply> =
                redis::cmd("XREAD").arg(&opts).arg("STREAMS").arg(keys.run(run_id, "events")).arg(&last_id).query_async(&mut *conn).await?;
            let meta = queue::run_meta(&mut *conn, keys, run_id).await?;
            let live =
                if last_worker_check.elapsed() > Duration::from_secs(5) { Some(live_instances(&mut *conn, keys).await?) } else { None };
            Ok::<_, QueueError>((reply, meta, live))
        };
        let r = tokio::select! {
            r = step => r,
            _ = &mut interrupted => {
                if let Some(b) = &bar { b.suspend(|| {}); }
                if !cancelled && ask_cancel(run_id).await {
                    cancelled = true;
                    match async { let mut c = queue::conn(pool).await?; queue::cancel(&mut *c, keys, run_id, None).await }.await {
                        Ok(c) => say(format!("⊘ cancelling run {run_id}: {} not started, {} running being stopped", c.cancelled, c.flagged)),
                        Err(e) => return fail_queue(&e),
                    }
                    interrupted.set(tokio::signal::ctrl_c());
                    continue;
                }
                if let Some(b) = &bar { b.abandon(); }
                eprintln!("\ndetached; run {run_id} continues. Re-attach with: zo-submit watch {run_id}");
                return exit::INTERRUPTED;
            }
        };
        match r {
            Ok((reply, m, live)) => {
                failing_since = None;
                meta = m;
                for key in reply.map(|r| r.keys).unwrap_or_default() {
                    for e in key.ids {
                        last_id = e.id.clone();
                        let Some(st) = e.get::<String>("state") else { continue };
                        // One task (`idx`) or a batch of them (`idxs`, comma-separated).
                        let one: Option<u32> = e.get("idx");
                        let many: Option<String> = e.get("idxs");
                        let idxs = one.into_iter().chain(many.iter().flat_map(|l| l.split(',').filter_map(|i| i.parse().ok())));
                        let n = view.states.len();
                        for i in idxs.map(|i: u32| i as usize).filter(|&i| i < n) {
                            if is_final(&st) && !is_final(&view.states[i]) {
                                say(format!("{} {} [{}] {st}", report::status_mark(&st), view.names[i], view.instances[i]));
                            }
                            view.states[i] = st.clone();
                        }
                    }
                }
                if let Some(live) = live {
                    last_worker_check = Instant::now();
                    for (inst, n) in view.waiting_instances() {
                        if !live.contains(inst) && warned.insert(inst.to_string()) {
                            say(format!(
                                "⚠ no live worker serves instance `{inst}` ({n} task{} waiting); start one whose config lists it",
                                if n == 1 { "" } else { "s" }
                            ));
                        } else if live.contains(inst) {
                            warned.remove(inst);
                        }
                    }
                }
                if let Some(b) = &bar {
                    b.set_position(meta.done);
                    b.set_message(progress_line(&meta, &view));
                }
            }
            Err(e) => {
                let since = *failing_since.get_or_insert_with(Instant::now);
                if since.elapsed() > GIVE_UP_AFTER {
                    if let Some(b) = &bar {
                        b.abandon();
                    }
                    eprintln!("zo-submit: lost Redis for {}s ({e}); the run continues without this watcher. Re-attach with: zo-submit watch {run_id}", GIVE_UP_AFTER.as_secs());
                    return if matches!(e, QueueError::NoSuchRun(_)) { exit::INVALID } else { exit::INFRA };
                }
                if let Some(b) = &bar {
                    b.set_message(format!("Redis unreachable ({e}); retrying…"));
                }
                tokio::time::sleep(Duration::from_millis(1000)).await;
            }
        }
    }
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    let snap = async {
        let mut conn = queue::conn(pool).await?;
        queue::snapshot(&mut *conn, keys, run_id).await
    }
    .await;
    match snap {
        Ok(s) => finish(&report::build(&s, catalog), out),
        Err(e) => fail_queue(&e),
    }
}
