//! Following a run: live progress from the run's event stream and counters (shown by
//! [`live`]: finished tasks with their duration and reason, retries and waits as they happen,
//! the running tasks), warnings when no live worker serves a needed instance, then the
//! reports. Also keeps the run's outbox flushed, so a run whose jobs were released but not yet
//! enqueued always moves on.

pub mod live;
mod memory;

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use zo_common::catalog::Catalog;
use zo_common::model::{format_usd, now_ms, RunMeta, StageState, StageStatus, TaskResult, TaskSpec, TaskState};
use zo_common::report;
use zo_common::store::{Conn, Event, LiveWorker, RunningTask, Store, StoreError, PROTOCOL};
use zo_common::text::escape_line;

use crate::cli::OutputOpts;
use crate::{exit, fail_queue, finish};
use live::{Live, Paint, Running};

/// How long Redis may stay unreachable before the watcher gives up (the run goes on).
const GIVE_UP_AFTER: Duration = Duration::from_secs(120);
/// Least time between two refreshes of a followed run.
const STEP_EVERY: Duration = Duration::from_millis(50);
/// Least time between two rounds of a run's upkeep (due retries, outbox) by its watcher.
const UPKEEP_EVERY: Duration = Duration::from_millis(250);
/// Longest wait for the run's next event in one refresh.
const EVENT_WAIT: Duration = Duration::from_millis(500);
/// Least time between two reads of the running tasks (shown on a terminal only).
const RUNNING_EVERY: Duration = Duration::from_secs(1);

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

    /// The running tasks as the live view shows them (names escaped).
    fn running_rows(&self, leases: &[RunningTask]) -> Vec<Running> {
        let now = now_ms();
        leases
            .iter()
            .filter(|l| (l.idx as usize) < self.names.len())
            .map(|l| Running {
                idx: l.idx,
                name: escape_line(&self.names[l.idx as usize]).into_owned(),
                instance: escape_line(&self.instances[l.idx as usize]).into_owned(),
                worker: escape_line(&l.worker).into_owned(),
                attempt: l.attempt,
                for_ms: (l.started_ms > 0).then(|| now.saturating_sub(l.started_ms)),
            })
            .collect()
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

/// What one refresh read from Redis.
struct Step {
    events: zo_common::store::EventBatch,
    meta: RunMeta,
    live: Option<Vec<LiveWorker>>,
    stages: Vec<StageState>,
    running: Option<Vec<RunningTask>>,
}

/// The line of a task that just ended: mark, name, instance, state, duration and, when it
/// failed, why (the first line of its error).
fn finished_line(paint: Paint, name: &str, inst: &str, st: TaskState, result: Option<&TaskResult>) -> String {
    let mut line = format!("{} {} [{}] {}", paint.mark(st), escape_line(name), escape_line(inst), st.as_str());
    if let Some(r) = result {
        line.push_str(&format!(" {:.1}s", r.finished_ms.saturating_sub(r.started_ms) as f64 / 1000.0));
        if st != TaskState::Success {
            line.push_str(&reason(r));
        }
    }
    line
}

/// `: CLASS: first line of the error` (at most 160 characters, escaped).
fn reason(r: &TaskResult) -> String {
    let Some(e) = r.outcome.error.as_deref().filter(|e| !e.is_empty()) else { return String::new() };
    let first = escape_line(e.lines().next().unwrap_or("")).into_owned();
    let first = if first.chars().count() > 160 { format!("{}…", first.chars().take(159).collect::<String>()) } else { first };
    match r.outcome.error_class {
        Some(c) => format!(": {} — {first}", c.as_str()),
        None => format!(": {first}"),
    }
}

/// The live view's lines for one batch of events: finished tasks, retries, waits. Reads the
/// results of the tasks that ended and the attempts that were retried (one round trip each).
async fn describe(store: &Store, run_id: &str, view: &View, events: &[Event], paint: Paint) -> Result<Vec<String>, StoreError> {
    let n = view.states.len();
    // The tasks that ended, in the order they did, and the state each ended in (the last an
    // event gives it): one pass over the events, however many tasks one event names.
    let mut finals: Vec<u32> = Vec::new();
    let mut ended: HashMap<u32, TaskState> = HashMap::new();
    let mut retries: Vec<(u32, u32)> = Vec::new();
    for e in events {
        match (e.state, e.retry_of) {
            // Past retries of a task that ended since (a re-attach replays the events) stay quiet.
            (_, Some(att)) => {
                retries.extend(e.tasks.iter().filter(|&&i| (i as usize) < n && !view.states[i as usize].is_final()).map(|&i| (i, att)))
            }
            (Some(st), None) if st.is_final() => {
                for &i in e.tasks.iter().filter(|&&i| (i as usize) < n && !view.states[i as usize].is_final()) {
                    if ended.insert(i, st).is_none() {
                        finals.push(i);
                    }
                }
            }
            _ => {}
        }
    }
    let mut conn = store.conn().await?;
    // Skipped tasks have no result; the others' results say how long and why.
    let with_result: Vec<u32> = finals.iter().copied().filter(|i| ended[i] != TaskState::Skipped).collect();
    let results = store.task_results(&mut conn, run_id, &with_result).await?;
    let by_idx: HashMap<u32, Option<TaskResult>> = with_result.iter().copied().zip(results.into_iter().map(|(_, r)| r)).collect();
    let tried = store.attempt_results(&mut conn, run_id, &retries).await?;
    let mut lines = Vec::new();
    for ((i, att), r) in retries.iter().zip(&tried) {
        let (name, inst) = (&view.names[*i as usize], &view.instances[*i as usize]);
        let why = r.as_ref().map(reason).unwrap_or_default();
        lines.push(format!(
            "{} {} [{}] attempt {att} failed{why}; retrying as attempt {}",
            paint.yellow("↻"),
            escape_line(name),
            escape_line(inst),
            att + 1
        ));
    }
    for i in finals {
        let st = ended[&i];
        let (name, inst) = (&view.names[i as usize], &view.instances[i as usize]);
        lines.push(finished_line(paint, name, inst, st, by_idx.get(&i).and_then(Option::as_ref)));
    }
    Ok(lines)
}

/// Says what changed about Redis's memory; the exit code when the watcher gives up.
fn say_memory(m: memory::Memory, run_id: &str, live: &Live, paint: Paint) -> Option<u8> {
    match m {
        memory::Memory::Unchanged => None,
        memory::Memory::Full(why) => {
            live.say(&paint.red(&escape_line(&format!(
                "⚠ Redis is out of memory ({why}) and refuses writes: the run cannot move (workers keep their results and retry). Free memory in Redis or raise its maxmemory (keep noeviction); this watcher gives up after {}s, the run goes on once Redis has room",
                memory::GIVE_UP.as_secs()
            ))));
            None
        }
        memory::Memory::Freed => {
            live.say("Redis accepts writes again; the run goes on");
            None
        }
        memory::Memory::GiveUp(why) => {
            live.abandon();
            eprintln!(
                "zo-submit: Redis has refused writes for {}s ({}); the run is kept and goes on once Redis has room. Re-attach with: zo-submit watch {run_id}",
                memory::GIVE_UP.as_secs(),
                escape_line(&why)
            );
            Some(exit::INFRA)
        }
    }
}

/// After Ctrl-C: on a terminal, ask whether to cancel the run or detach from it (the bar is
/// off the screen meanwhile). Anything but `c` (or no terminal, or a second Ctrl-C) detaches.
async fn ask_cancel(run_id: &str, live: &mut Live, own_worker: bool) -> bool {
    use std::io::IsTerminal;
    if !std::io::stdin().is_terminal() || !std::io::stderr().is_terminal() {
        return false;
    }
    live.pause();
    let continues = if own_worker { "continues; the worker started here stops" } else { "continues" };
    eprint!("\n[d]etach (run {run_id} {continues}) or [c]ancel it? [d/c + Enter] ");
    let answer = tokio::task::spawn_blocking(|| {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line).map(|_| line)
    });
    let cancel = tokio::select! {
        a = answer => matches!(a, Ok(Ok(l)) if l.trim().eq_ignore_ascii_case("c")),
        _ = tokio::signal::ctrl_c() => false,
    };
    if cancel {
        live.resume();
    }
    cancel
}

/// Follows a run to its end and writes its reports. `local`: the run's specs, when this
/// process just submitted it (saves reading them back).
pub async fn follow_and_report(store: &Store, run_id: &str, catalog: &Catalog, out: &OutputOpts, local: Option<&[TaskSpec]>) -> u8 {
    let show = !out.quiet;
    let paint = Paint(crate::color_on(out.color));
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
    let mut live = Live::new(show, &meta, paint);
    let mut last_id = "0".to_string();
    let mut warned: HashSet<String> = HashSet::new();
    let mut said_stages: HashSet<(String, &'static str)> = HashSet::new();
    let mut warned_workers: HashSet<String> = HashSet::new();
    let mut last_worker_check = Instant::now() - Duration::from_secs(60);
    let mut last_running = Instant::now() - RUNNING_EVERY;
    let mut running: Vec<Running> = Vec::new();
    let mut failing_since: Option<Instant> = None;
    let mut memory = memory::MemoryWatch::new();
    let interrupted = tokio::signal::ctrl_c();
    tokio::pin!(interrupted);
    let mut cancelled = false;
    let (mut said_alert, mut said_stop) = (false, false);
    // Paced: a watcher refreshes at most every STEP_EVERY and does the run's upkeep (due
    // retries, outbox) at most every UPKEEP_EVERY, so following a fast run costs Redis little
    // (workers do the same upkeep; the watcher covers runs that no worker looks after yet).
    let mut pace = Pace { next_step: tokio::time::Instant::now(), next_upkeep: tokio::time::Instant::now() };
    while !meta.finished {
        let want_running = live.wants_running() && last_running.elapsed() >= RUNNING_EVERY;
        let want_workers = last_worker_check.elapsed() > Duration::from_secs(5);
        let step = fetch_step(store, run_id, &last_id, &mut pace, view.gated, want_workers, want_running);
        let r = tokio::select! {
            r = step => r,
            _ = &mut interrupted => {
                if !cancelled && ask_cancel(run_id, &mut live, out.own_worker.is_some()).await {
                    cancelled = true;
                    match async { let mut c = store.conn().await?; store.cancel(&mut c, run_id, None).await }.await {
                        Ok(c) => live.say(&format!("⊘ cancelling run {run_id}: {} not started, {} running being stopped", c.cancelled, c.flagged)),
                        Err(e) => return fail_queue(&e),
                    }
                    interrupted.set(tokio::signal::ctrl_c());
                    continue;
                }
                live.abandon();
                say_detached(run_id, out);
                return exit::INTERRUPTED;
            }
        };
        let step = match r {
            Ok(step) => step,
            Err(StoreError::NoSuchRun(_)) => {
                live.abandon();
                return state_lost(run_id);
            }
            Err(StoreError::OutOfMemory(why)) => {
                // Its own upkeep was refused: Redis reads still work, the run cannot move.
                let said = memory.refused(&why);
                if let Some(code) = say_memory(said, run_id, &live, paint) {
                    return code;
                }
                tokio::time::sleep(Duration::from_millis(1000)).await;
                continue;
            }
            Err(e) => {
                let since = *failing_since.get_or_insert_with(Instant::now);
                if since.elapsed() > GIVE_UP_AFTER {
                    live.abandon();
                    eprintln!("zo-submit: lost Redis for {}s ({e}); the run continues without this watcher. Re-attach with: zo-submit watch {run_id}", GIVE_UP_AFTER.as_secs());
                    return exit::INFRA;
                }
                live.status(&format!("Redis unreachable ({e}); retrying…"));
                tokio::time::sleep(Duration::from_millis(1000)).await;
                continue;
            }
        };
        failing_since = None;
        for st in &step.stages {
            if said_stages.insert((st.name.clone(), stage_key(&st.status))) {
                live.say(&escape_line(&stage_line(run_id, st)));
            }
        }
        meta = step.meta;
        say_budget(&meta, &live, paint, &mut said_alert, &mut said_stop);
        last_id = step.events.last_id;
        let events = step.events.events;
        let said = if events.is_empty() { memory.check(store).await } else { memory.progressed() };
        if let Some(code) = say_memory(said, run_id, &live, paint) {
            return code;
        }
        if show && !events.is_empty() {
            match describe(store, run_id, &view, &events, paint).await {
                Ok(lines) => lines.iter().for_each(|l| live.say(l)),
                // The lines are a courtesy: the states below still move on.
                Err(e) => live.say(&format!("(could not read the finished tasks' results: {e})")),
            }
        }
        apply_events(&mut view, events, &live);
        if let Some(live_workers) = step.live {
            last_worker_check = Instant::now();
            warn_about_workers(&live_workers, &view, &live, paint, &mut warned, &mut warned_workers);
        }
        if let Some(r) = step.running {
            last_running = Instant::now();
            running = view.running_rows(&r);
        }
        // A task whose end just scrolled by leaves the running list at once, not at the next
        // read of the leases.
        running.retain(|r| view.states.get(r.idx as usize).is_none_or(|st| !st.is_final()));
        live.update(&meta, &view.per_instance(), &running);
    }
    live.finish();
    report_finished(store, run_id, catalog, out).await
}

/// When the watcher next reads the run, and next does its upkeep.
struct Pace {
    next_step: tokio::time::Instant,
    next_upkeep: tokio::time::Instant,
}

/// One refresh, paced: the run's upkeep when due, its new events and counters, and what was
/// asked for (live workers, stages of a gated run, running tasks).
async fn fetch_step(
    store: &Store,
    run_id: &str,
    last_id: &str,
    pace: &mut Pace,
    gated: bool,
    want_workers: bool,
    want_running: bool,
) -> Result<Step, StoreError> {
    tokio::time::sleep_until(pace.next_step).await;
    pace.next_step = tokio::time::Instant::now() + STEP_EVERY;
    let mut conn = store.conn().await?;
    if tokio::time::Instant::now() >= pace.next_upkeep {
        pace.next_upkeep = tokio::time::Instant::now() + UPKEEP_EVERY;
        store.keep_run_moving(&mut conn, run_id).await?;
    }
    let events = store.read_events(&mut conn, run_id, last_id, EVENT_WAIT).await?;
    let meta = store.run_meta(&mut conn, run_id).await?;
    let live = if want_workers { Some(store.live_workers(&mut conn, zo_common::store::LIVE_WITHIN).await?) } else { None };
    let stages = if gated { store.stages(&mut conn, run_id).await? } else { Vec::new() };
    let running = if want_running { Some(store.running_tasks(&mut conn, run_id).await?) } else { None };
    Ok(Step { events, meta, live, stages, running })
}

/// The budget's alert and stop, each said once.
fn say_budget(meta: &RunMeta, live: &Live, paint: Paint, said_alert: &mut bool, said_stop: &mut bool) {
    if let Some(b) = meta.budget {
        if meta.budget_alerted_ms.is_some() && !*said_alert {
            *said_alert = true;
            live.say(&paint.yellow(&format!(
                "⚠ budget alert: {} of {} spent ({:.0}% of the budget)",
                format_usd(meta.cost),
                format_usd(b.max_cost),
                meta.cost as f64 * 100.0 / b.max_cost as f64
            )));
        }
        if meta.stopped.is_some() && !*said_stop {
            *said_stop = true;
            live.say(&paint.red(&format!(
                "⊘ budget reached: {} of {} spent; no new task starts, running ones finish",
                format_usd(meta.cost),
                format_usd(b.max_cost)
            )));
        }
    }
}

/// The task states and waits the run's events report, onto the view and the screen.
fn apply_events(view: &mut View, events: Vec<Event>, live: &Live) {
    for e in events {
        let n = view.states.len();
        if let Some((why, until)) = &e.waits {
            let secs = until.saturating_sub(now_ms()) as f64 / 1000.0;
            for &i in e.tasks.iter().filter(|&&i| (i as usize) < n) {
                let (name, inst) = (escape_line(&view.names[i as usize]), escape_line(&view.instances[i as usize]));
                live.say(&match why.as_str() {
                    "max_concurrent" => format!("⏳ {name} [{inst}] waits for a free slot of `{inst}` (its max_concurrent)"),
                    "quota" => format!(
                        "⏳ {name} [{inst}] waits for its host to come under quota ({}); at most {secs:.0}s more",
                        escape_line(e.detail.as_deref().unwrap_or("over quota"))
                    ),
                    _ => format!("⏳ {name} [{inst}] waits {secs:.1}s for its rate limit"),
                });
            }
        }
        let Some(st) = e.state else { continue };
        for i in e.tasks.into_iter().map(|i| i as usize).filter(|&i| i < n) {
            view.states[i] = st;
        }
    }
}

/// Workers that speak another protocol, and instances with waiting tasks no live worker
/// serves: each said once (again after it was served).
fn warn_about_workers(
    live_workers: &[LiveWorker],
    view: &View,
    live: &Live,
    paint: Paint,
    warned: &mut HashSet<String>,
    warned_workers: &mut HashSet<String>,
) {
    let (served, foreign) = served(live_workers);
    for w in foreign {
        if warned_workers.insert(w.info.id.clone()) {
            live.say(&escape_line(&format!(
                "⚠ worker {} speaks protocol {} but this zo-submit speaks {PROTOCOL}: it takes none of this run's jobs; run the same version of zo-worker and zo-submit",
                w.info.id, w.info.protocol
            )));
        }
    }
    for (inst, n) in view.waiting_instances() {
        if !served.contains(inst) && warned.insert(inst.to_string()) {
            live.say(&paint.yellow(&escape_line(&format!(
                "⚠ no live worker serves instance `{inst}` ({n} task{} waiting); start one whose config lists it",
                if n == 1 { "" } else { "s" }
            ))));
        } else if served.contains(inst) {
            warned.remove(inst);
        }
    }
}

/// After a detach: what goes on, and how to follow it again.
fn say_detached(run_id: &str, out: &OutputOpts) {
    eprintln!("\ndetached; run {run_id} continues. Re-attach with: zo-submit watch {run_id}");
    if let Some(config) = &out.own_worker {
        eprintln!("no worker stays: the one started here stops now; to go on, start one with: zo-worker --config {}", config.display());
    }
}

/// The finished run: its document built, archived when asked, written and shown.
async fn report_finished(store: &Store, run_id: &str, catalog: &Catalog, out: &OutputOpts) -> u8 {
    let snap = async {
        let mut conn = store.conn().await?;
        store.snapshot(&mut conn, run_id).await
    }
    .await;
    match snap {
        Ok(s) => {
            let doc = report::build(&s, catalog);
            let kept = match &out.archive.archive {
                Some(dir) => keep(store, dir, &doc, out.quiet).await,
                None => true,
            };
            let code = finish(&doc, out);
            if kept {
                code
            } else {
                code.max(exit::TASKS_FAILED)
            }
        }
        Err(StoreError::NoSuchRun(_)) => state_lost(run_id),
        Err(e) => fail_queue(&e),
    }
}

/// Archives the finished run's document unless another process did (or does); false when it
/// could not be written.
async fn keep(store: &Store, dir: &std::path::Path, doc: &report::ResultsDocument, quiet: bool) -> bool {
    let who = format!("zo-submit pid {}", std::process::id());
    match zo_common::archive::archive_doc(store, &who, dir, doc).await {
        Ok(Some(path)) => {
            if !quiet {
                eprintln!("archived {}", path.display());
            }
            true
        }
        Ok(None) => true,
        Err(e) => {
            eprintln!("zo-submit: could not archive run {}: {e}", doc.run_id);
            false
        }
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
