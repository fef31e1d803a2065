//! Following a run: live progress from the run's event stream and counters, warnings when
//! no live worker serves a needed instance, then the reports. Also keeps the run's outbox
//! flushed, so a run whose jobs were released but not yet enqueued always moves on.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use zo_common::catalog::Catalog;
use zo_common::model::{format_usd, RunMeta, StageState, StageStatus, TaskSpec, TaskState};
use zo_common::report;
use zo_common::store::{Conn, LiveWorker, Store, StoreError, PROTOCOL};

use crate::cli::OutputOpts;
use crate::{exit, fail_queue, finish};

/// How long Redis may stay unreachable before the watcher gives up (the run goes on).
const GIVE_UP_AFTER: Duration = Duration::from_secs(120);
/// Least time between two refreshes of a followed run.
const STEP_EVERY: Duration = Duration::from_millis(50);
/// Least time between two rounds of a run's upkeep (due retries, outbox) by its watcher.
const UPKEEP_EVERY: Duration = Duration::from_millis(250);
/// Longest wait for the run's next event in one refresh.
const EVENT_WAIT: Duration = Duration::from_millis(500);
/// A worker whose heartbeat is older than this counts as gone.
pub(crate) const LIVE_WITHIN: Duration = Duration::from_secs(15);

struct View {
    names: Vec<String>,
    instances: Vec<String>,
    states: Vec<TaskState>,
    /// Some stage waits for an approval: the watcher follows the run's stages too.
    gated: bool,
}

impl View {
    /// The run's names, instances and states; the names and instances from `local` when the
    /// caller holds the run's specs (a submit that goes on to follow its run), else from Redis.
    async fn load(store: &Store, conn: &mut Conn, run_id: &str, local: Option<&[TaskSpec]>) -> Result<View, StoreError> {
        let fetched;
        let specs = match local {
            Some(specs) => specs,
            None => {
                fetched = store.task_specs(conn, run_id).await?;
                &fetched
            }
        };
        let names = specs.iter().map(|s| s.name.clone()).collect::<Vec<_>>();
        let instances = specs.iter().map(|s| s.instance.clone()).collect();
        let gated = specs.iter().any(|s| s.needs_approval);
        let states = store.task_states(conn, run_id, names.len()).await?;
        Ok(View { names, instances, states, gated })
    }

    fn per_instance(&self) -> String {
        let mut m: std::collections::BTreeMap<&str, (usize, usize)> = Default::default();
        for (i, inst) in self.instances.iter().enumerate() {
            let e = m.entry(inst).or_default();
            e.1 += 1;
            if self.states[i].is_final() {
                e.0 += 1;
            }
        }
        m.iter().map(|(k, (d, t))| format!("{k} {d}/{t}")).collect::<Vec<_>>().join(" · ")
    }

    fn waiting_instances(&self) -> HashMap<&str, usize> {
        let mut m = HashMap::new();
        for (i, st) in self.states.iter().enumerate() {
            if *st == TaskState::Queued {
                *m.entry(self.instances[i].as_str()).or_default() += 1;
            }
        }
        m
    }
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

/// `s` as one shell word (for commands the watcher suggests).
fn shell_word(s: &str) -> String {
    if !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

fn stage_key(s: &StageStatus) -> &'static str {
    match s {
        StageStatus::Awaiting => "awaiting",
        StageStatus::Approved { .. } => "approved",
        StageStatus::Rejected { .. } => "rejected",
    }
}

/// What the watcher says about a stage that waits for (or got) a decision.
fn stage_line(run_id: &str, st: &StageState) -> String {
    let name = shell_word(&st.name);
    match &st.status {
        StageStatus::Awaiting => format!(
            "⏸ stage `{}` awaits approval: run `zo-submit approve {run_id} {name}` (or `zo-submit reject {run_id} {name} --reason …`); waiting",
            st.name
        ),
        StageStatus::Approved { by, .. } => format!("▶ stage `{}` approved by {by}", st.name),
        StageStatus::Rejected { by, reason, .. } => {
            format!("⏹ stage `{}` rejected by {by}{}", st.name, if reason.is_empty() { String::new() } else { format!(": {reason}") })
        }
    }
}

/// Instances served by a live worker that speaks our protocol, and the live workers that
/// speak another one (their streams and formats differ: they take none of our jobs).
pub(crate) fn served(live: &[LiveWorker]) -> (HashSet<String>, Vec<&LiveWorker>) {
    let mut served = HashSet::new();
    let mut foreign = Vec::new();
    for w in live {
        if w.compatible() {
            served.extend(w.info.instances.iter().cloned());
        } else {
            foreign.push(w);
        }
    }
    (served, foreign)
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

/// Follows a run to its end and writes its reports. `local`: the run's specs, when this
/// process just submitted it (saves reading them back).
pub async fn follow_and_report(store: &Store, run_id: &str, catalog: &Catalog, out: &OutputOpts, local: Option<&[TaskSpec]>) -> u8 {
    let show = !out.quiet;
    let mut conn = match store.conn().await {
        Ok(c) => c,
        Err(e) => return fail_queue(&e),
    };
    let mut meta = match store.run_meta(&mut conn, run_id).await {
        Ok(m) => m,
        Err(e) => return fail_queue(&e),
    };
    let mut view = match View::load(store, &mut conn, run_id, local).await {
        Ok(v) => v,
        Err(e) => return fail_queue(&e),
    };
    drop(conn);
    let bar = if show && !meta.finished {
        // Elapsed time counts from the run's creation, also when re-attaching.
        let since = Duration::from_millis(zo_common::model::now_ms().saturating_sub(meta.created_ms));
        let b = ProgressBar::with_draw_target(Some(meta.total), ProgressDrawTarget::stderr()).with_elapsed(since);
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
    // Names come from the run in Redis: one line, control characters escaped.
    let say = |line: String| match (&bar, zo_common::text::escape_line(&line).into_owned()) {
        (Some(b), line) if !b.is_hidden() => b.println(line),
        (_, line) => {
            if show {
                eprintln!("{line}")
            }
        }
    };
    let mut last_id = "0".to_string();
    let mut warned: HashSet<String> = HashSet::new();
    let mut said_stages: HashSet<(String, &'static str)> = HashSet::new();
    let mut warned_workers: HashSet<String> = HashSet::new();
    let mut last_worker_check = Instant::now() - Duration::from_secs(60);
    let mut failing_since: Option<Instant> = None;
    let interrupted = tokio::signal::ctrl_c();
    tokio::pin!(interrupted);
    let mut cancelled = false;
    let (mut said_alert, mut said_stop) = (false, false);
    // Paced: a watcher refreshes at most every STEP_EVERY and does the run's upkeep (due
    // retries, outbox) at most every UPKEEP_EVERY, so following a fast run costs Redis little
    // (workers do the same upkeep; the watcher covers runs that no worker looks after yet).
    let mut next_step = tokio::time::Instant::now();
    let mut next_upkeep = next_step;
    while !meta.finished {
        let step = async {
            tokio::time::sleep_until(next_step).await;
            next_step = tokio::time::Instant::now() + STEP_EVERY;
            let mut conn = store.conn().await?;
            if tokio::time::Instant::now() >= next_upkeep {
                next_upkeep = tokio::time::Instant::now() + UPKEEP_EVERY;
                store.keep_run_moving(&mut conn, run_id).await?;
            }
            let events = store.read_events(&mut conn, run_id, &last_id, EVENT_WAIT).await?;
            let meta = store.run_meta(&mut conn, run_id).await?;
            let live = if last_worker_check.elapsed() > Duration::from_secs(5) {
                Some(store.live_workers(&mut conn, LIVE_WITHIN).await?)
            } else {
                None
            };
            let stages = if view.gated { store.stages(&mut conn, run_id).await? } else { Vec::new() };
            Ok::<_, StoreError>((events, meta, live, stages))
        };
        let r = tokio::select! {
            r = step => r,
            _ = &mut interrupted => {
                if let Some(b) = &bar { b.suspend(|| {}); }
                if !cancelled && ask_cancel(run_id).await {
                    cancelled = true;
                    match async { let mut c = store.conn().await?; store.cancel(&mut c, run_id, None).await }.await {
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
            Ok((events, m, live, stages)) => {
                failing_since = None;
                for st in stages {
                    if said_stages.insert((st.name.clone(), stage_key(&st.status))) {
                        say(stage_line(run_id, &st));
                    }
                }
                meta = m;
                if let Some(b) = meta.budget {
                    if meta.budget_alerted_ms.is_some() && !said_alert {
                        said_alert = true;
                        say(format!(
                            "⚠ budget alert: {} of {} spent ({:.0}% of the budget)",
                            format_usd(meta.cost),
                            format_usd(b.max_cost),
                            meta.cost as f64 * 100.0 / b.max_cost as f64
                        ));
                    }
                    if meta.stopped.is_some() && !said_stop {
                        said_stop = true;
                        say(format!(
                            "⊘ budget reached: {} of {} spent; no new task starts, running ones finish",
                            format_usd(meta.cost),
                            format_usd(b.max_cost)
                        ));
                    }
                }
                last_id = events.last_id;
                for e in events.events {
                    let Some(st) = e.state else { continue };
                    let n = view.states.len();
                    if let Some((why, until)) = &e.waits {
                        let secs = until.saturating_sub(zo_common::model::now_ms()) as f64 / 1000.0;
                        for &i in e.tasks.iter().filter(|&&i| (i as usize) < n) {
                            let (name, inst) = (&view.names[i as usize], &view.instances[i as usize]);
                            say(match why.as_str() {
                                "max_concurrent" => format!("⏳ {name} [{inst}] waits for a free slot of `{inst}` (its max_concurrent)"),
                                "quota" => format!(
                                    "⏳ {name} [{inst}] waits for its host to come under quota ({}); at most {secs:.0}s more",
                                    e.detail.as_deref().unwrap_or("over quota")
                                ),
                                _ => format!("⏳ {name} [{inst}] waits {secs:.1}s for its rate limit"),
                            });
                        }
                    }
                    for i in e.tasks.into_iter().map(|i| i as usize).filter(|&i| i < n) {
                        if st.is_final() && !view.states[i].is_final() {
                            say(format!("{} {} [{}] {}", report::status_mark(st), view.names[i], view.instances[i], st.as_str()));
                        }
                        view.states[i] = st;
                    }
                }
                if let Some(live) = live {
                    last_worker_check = Instant::now();
                    let (live, foreign) = served(&live);
                    for w in foreign {
                        if warned_workers.insert(w.info.id.clone()) {
                            say(format!(
                                "⚠ worker {} speaks protocol {} but this zo-submit speaks {PROTOCOL}: it takes none of this run's jobs; run the same version of zo-worker and zo-submit",
                                w.info.id, w.info.protocol
                            ));
                        }
                    }
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
            Err(StoreError::NoSuchRun(_)) => {
                if let Some(b) = &bar {
                    b.abandon();
                }
                return state_lost(run_id);
            }
            Err(e) => {
                let since = *failing_since.get_or_insert_with(Instant::now);
                if since.elapsed() > GIVE_UP_AFTER {
                    if let Some(b) = &bar {
                        b.abandon();
                    }
                    eprintln!("zo-submit: lost Redis for {}s ({e}); the run continues without this watcher. Re-attach with: zo-submit watch {run_id}", GIVE_UP_AFTER.as_secs());
                    return exit::INFRA;
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
        let mut conn = store.conn().await?;
        store.snapshot(&mut conn, run_id).await
    }
    .await;
    match snap {
        Ok(s) => finish(&report::build(&s, catalog), out),
        Err(StoreError::NoSuchRun(_)) => state_lost(run_id),
        Err(e) => fail_queue(&e),
    }
}

/// The run existed when the watcher started and is gone now: Redis restarted without its data
/// (or evicted it). Nothing is reported as done, nothing is written, and nothing is recreated.
fn state_lost(run_id: &str) -> u8 {
    eprintln!(
        "zo-submit: the run's state was lost from Redis (was AOF off?): run {run_id} has no keys any more; no report was written. Submit the file again (and see README, Reliability, for AOF)"
    );
    exit::INFRA
}
