//! Property test of the scheduling state machine against a real Redis and the real Lua
//! scripts: random DAGs, random outcomes (failures, retries, cancels), results arriving in
//! random order and in batches (the same job twice in a batch, too), redelivered jobs, every
//! trigger rule and `on_success`/`on_failure` conditions. Whatever happens, every task ends in
//! exactly one final state, counters agree with the states, a capped run (`resource_limits`)
//! never runs more tasks at once than its cap and never stalls on its parked tasks, a task ran only if its rule and
//! conditions held over how its parents ended (`zo_common::rules`), and a skipped task is one
//! whose rule or condition could no longer hold.

use std::collections::HashMap;
use std::time::Duration;

use proptest::prelude::*;
use zo_common::model::{Condition, ErrorClass, ParentOutcome, RunLimits, Status, TaskSpec, TaskState, TriggerRule, When};
use zo_common::rules::{evaluate_task, Verdict};
use zo_common::store::{Claim, LocalSpecs, MarkRunning, NewRun, Recorded, Store, ToMark, ToRecord};
use zo_e2e::{script_result, true_task, Redis};

#[derive(Debug, Clone)]
struct Plan {
    deps: Vec<Vec<usize>>,
    /// Per task: its trigger rule (index into `TriggerRule::ALL`, all_success half the time)
    /// and maybe a condition on an earlier task (index, must fail).
    rules: Vec<(usize, Option<(usize, bool)>)>,
    /// Per task: failures before the final outcome, whether failures are retried, final outcome.
    outcomes: Vec<(u8, bool, u8)>,
    /// Drives every random choice of the driver.
    choices: Vec<u16>,
    /// Cancel task `.0 % n` at step `.1`, if any.
    cancel: Option<(usize, usize)>,
    /// `max_concurrent_tasks` (or, when `.1`, `max_tasks_per_instance`), if any.
    cap: Option<(u32, bool)>,
}

fn plan() -> impl Strategy<Value = Plan> {
    (1usize..9).prop_flat_map(|n| {
        let deps = (0..n).map(|i| proptest::sample::subsequence((0..i).collect::<Vec<_>>(), 0..=i.min(3))).collect::<Vec<_>>();
        let rules = proptest::collection::vec((0usize..20, proptest::option::weighted(0.3, (0usize..64, any::<bool>()))), n);
        (
            deps,
            rules,
            proptest::collection::vec((0u8..3, any::<bool>(), 0u8..4), n),
            proptest::collection::vec(any::<u16>(), 400),
            proptest::option::of((0usize..16, 0usize..40)),
            proptest::option::weighted(0.4, (1u32..4, any::<bool>())),
        )
            .prop_map(|(deps, rules, outcomes, choices, cancel, cap)| Plan { deps, rules, outcomes, choices, cancel, cap })
    })
}

/// Task `i` (`t{i}`), depending on `deps`.
fn job(i: u32, deps: Vec<u32>) -> TaskSpec {
    true_task(format!("t{i}"), deps)
}

async fn drive(url: &str, ns: &str, plan: &Plan) -> Result<(), TestCaseError> {
    let store = Store::connect(url, ns, 2).await.unwrap();
    let keys = store.keys().clone();
    let mut c = store.conn().await.unwrap();
    let n = plan.deps.len();
    let run = "R";
    let specs: Vec<TaskSpec> = (0..n)
        .map(|i| {
            let mut s = job(i as u32, plan.deps[i].iter().map(|&d| d as u32).collect());
            let (rule, cond) = plan.rules[i];
            s.trigger_rule = TriggerRule::ALL.get(rule).copied().unwrap_or_default();
            if let Some((on, fail)) = cond.filter(|_| i > 0) {
                s.conditions = vec![Condition { on: (on % i) as u32, when: if fail { When::Failed } else { When::Succeeded } }];
            }
            s
        })
        .collect();
    store.ensure_group(&mut c, "fast").await.unwrap();
    let limits = match plan.cap {
        Some((n, false)) => RunLimits { max_concurrent_tasks: Some(n), ..RunLimits::default() },
        Some((n, true)) => RunLimits { max_tasks_per_instance: Some(n), ..RunLimits::default() },
        None => RunLimits::default(),
    };
    store
        .create_run(
            &mut c,
            &NewRun { run_id: run, file: "p.yaml", name: None, specs: &specs, retention: Duration::from_secs(60), limits: &limits },
        )
        .await
        .unwrap();
    // Half the cases skip dependents one per script call, so cascades stay half done while
    // results, cancels and redeliveries go on around them.
    if plan.choices[0].is_multiple_of(2) {
        let _: () = redis::cmd("HSET").arg(keys.run(run, "meta")).arg("cascade_budget").arg(1).query_async(&mut c).await.unwrap();
    }
    let mut failures_left: Vec<u8> = plan.outcomes.iter().map(|o| o.0).collect();
    let mut processed: Vec<(u32, u32)> = Vec::new();
    let claim = Claim { worker: "prop", lease: Duration::from_secs(60), max_deliveries: 100 };
    let mut k = 0usize;
    let mut pick = |m: usize| {
        k += 1;
        plan.choices[k % plan.choices.len()] as usize % m.max(1)
    };
    for step in 0..400 {
        if let Some((t, at)) = plan.cancel {
            if at == step {
                store.cancel(&mut c, run, Some((t % n) as u32)).await.unwrap();
            }
        }
        // What upkeep does: one chunk of any pending cascade, due retries, the outbox.
        store.continue_cascade(&mut c, run).await.unwrap();
        store.promote_due(&mut c, run).await.unwrap();
        store.flush_outbox(&mut c, run).await.unwrap();
        let entries: redis::streams::StreamRangeReply =
            redis::cmd("XRANGE").arg(keys.jobs("fast")).arg("-").arg("+").query_async(&mut c).await.unwrap();
        let meta = store.run_meta(&mut c, run).await.unwrap();
        if meta.finished {
            break;
        }
        // A worker handles jobs in batches: 1–4 at once, sometimes the same job twice, and
        // sometimes a job that was already handled (a redelivery after a crash before the ack).
        let cascading: u64 = redis::cmd("LLEN").arg(keys.run(run, "cascade")).query_async(&mut c).await.unwrap();
        if entries.ids.is_empty() && processed.is_empty() && cascading > 0 {
            // Only the cascade is left: upkeep goes on with it next step.
            continue;
        }
        let size = 1 + pick(4);
        let mut batch: Vec<(u32, u32, Option<String>)> = Vec::new();
        for _ in 0..size {
            if entries.ids.is_empty() && processed.is_empty() {
                prop_assert!(false, "run stalled at step {step}: nothing queued but not finished: {meta:?}");
            }
            if !processed.is_empty() && (entries.ids.is_empty() || pick(5) == 0) {
                let (i, a) = processed[pick(processed.len())];
                batch.push((i, a, None));
            } else if !batch.is_empty() && pick(6) == 0 {
                let again = batch[pick(batch.len())].clone();
                batch.push(again);
            } else {
                let e = &entries.ids[pick(entries.ids.len())];
                batch.push((e.get("idx").unwrap(), e.get("attempt").unwrap(), Some(e.id.clone())));
            }
        }
        let items: Vec<ToMark> =
            batch.iter().map(|&(idx, attempt, _)| ToMark { idx, attempt, takeover: false, instance: "fast".into() }).collect();
        let tags = store.mark_running(&mut c, run, &claim, &items).await.unwrap();
        if let Some((cap, _)) = plan.cap {
            // Every task here runs on `fast`: both caps bound the tasks running at once.
            let running = store.run_meta(&mut c, run).await.unwrap().running;
            prop_assert!(running <= cap as u64, "{running} tasks running under a cap of {cap}");
        }
        let mut to_record: Vec<ToRecord> = Vec::new();
        for (pos, ((idx, attempt, _), tag)) in batch.iter().zip(&tags).enumerate() {
            let twice = batch[..pos].iter().any(|b| (b.0, b.1) == (*idx, *attempt));
            prop_assert!(!(twice && *tag == MarkRunning::Ok), "t{idx} attempt {attempt} marked running twice in one batch");
            if *tag != MarkRunning::Ok {
                continue;
            }
            let i = *idx as usize;
            let (_, retried, fin) = plan.outcomes[i];
            let (status, retry) = if failures_left[i] > 0 {
                failures_left[i] -= 1;
                (Status::Failed, retried)
            } else {
                (
                    match fin {
                        0 | 1 => Status::Success,
                        2 => Status::Failed,
                        _ => Status::Timeout,
                    },
                    false,
                )
            };
            let cancelled: bool = redis::cmd("HEXISTS").arg(keys.run(run, "cancel")).arg(idx).query_async(&mut c).await.unwrap();
            let status = if cancelled { Status::Cancelled } else { status };
            let r = script_result(*attempt, status);
            to_record.push(ToRecord {
                idx: *idx,
                attempt: *attempt,
                status,
                blob: r.encode(),
                retry_in: retry.then_some(Duration::ZERO),
                cost: 0,
                instance: "fast".into(),
            });
        }
        // Sometimes the same result arrives twice in one batch: the second is a duplicate.
        if !to_record.is_empty() && pick(5) == 0 {
            to_record.push(to_record[pick(to_record.len())].clone());
        }
        if !to_record.is_empty() {
            let out = store.record_results(&mut c, run, &to_record).await.unwrap().outcomes;
            for (pos, (r, o)) in to_record.iter().zip(&out).enumerate() {
                if to_record[..pos].iter().any(|x| (x.idx, x.attempt) == (r.idx, r.attempt)) {
                    prop_assert!(matches!(o, Recorded::Duplicate | Recorded::Stale), "t{} stored twice: {o:?}", r.idx);
                }
            }
        }
        for (idx, attempt, entry) in batch {
            processed.push((idx, attempt));
            if let Some(id) = entry {
                let _: () = redis::cmd("XDEL").arg(keys.jobs("fast")).arg(&id).query_async(&mut c).await.unwrap();
            }
        }
    }
    let snap = store.snapshot(&mut c, run).await.unwrap();
    prop_assert!(snap.meta.finished, "run did not finish: {:?} states {:?}", snap.meta, snap.states);
    prop_assert_eq!(snap.meta.done, n as u64);
    let mut counts: HashMap<&str, u64> = HashMap::new();
    for s in &snap.states {
        *counts.entry(s.as_str()).or_default() += 1;
        prop_assert!(s.is_final(), "non-final state {s:?}");
    }
    for (name, v) in [
        ("success", snap.meta.success),
        ("failed", snap.meta.failed),
        ("timeout", snap.meta.timeout),
        ("skipped", snap.meta.skipped),
        ("cancelled", snap.meta.cancelled),
    ] {
        prop_assert_eq!(counts.get(name).copied().unwrap_or(0), v, "counter {}", name);
    }
    // How each task looks to its dependents, from its final state and skip class.
    let seen = |i: u32| -> Option<ParentOutcome> {
        Some(match snap.states[i as usize] {
            TaskState::Success => ParentOutcome::Succeeded,
            TaskState::Skipped if snap.skips[i as usize].is_some_and(|s| s.class != ErrorClass::Dependency) => ParentOutcome::Skipped,
            _ => ParentOutcome::Failed,
        })
    };
    for (i, s) in specs.iter().enumerate() {
        let verdict = evaluate_task(s.trigger_rule, &s.deps, &s.conditions, seen);
        match snap.states[i] {
            TaskState::Skipped => {
                prop_assert!(
                    matches!(verdict, Verdict::Skip(_)),
                    "t{i} skipped though its rule holds: {verdict:?} ({})",
                    s.trigger_rule.as_str()
                );
                let skip = snap.skips[i].expect("a skipped task has a reason");
                // Which class depends on what ended first: it must be one that some order of
                // its parents' endings gives.
                let classes = possible_skip_classes(s, &seen);
                prop_assert!(classes.contains(&skip.class), "t{} skipped as {:?}; possible: {:?}", i, skip.class, classes);
            }
            // A cancelled task may have been cancelled at any point; any other final state ran.
            TaskState::Cancelled => {}
            st => {
                prop_assert_eq!(verdict, Verdict::Start, "t{} ended {:?} though its rule did not hold ({})", i, st, s.trigger_rule.as_str())
            }
        }
        if let Some(r) = &snap.results[i] {
            prop_assert_eq!(r.status().state(), snap.states[i]);
            prop_assert_eq!(r.attempt as usize, snap.history[i].len(), "one stored result per attempt");
        }
    }
    let _: () = redis::cmd("DEL").arg(keys.run_keys(run)).query_async(&mut c).await.unwrap();
    Ok(())
}

/// The skip classes a task can get when its parents end (as `seen` says) in any order: the
/// first prefix of endings that decides its rule decides the class.
fn possible_skip_classes(s: &TaskSpec, seen: &dyn Fn(u32) -> Option<ParentOutcome>) -> Vec<ErrorClass> {
    fn permutations(items: &[u32]) -> Vec<Vec<u32>> {
        if items.len() <= 1 {
            return vec![items.to_vec()];
        }
        let mut out = Vec::new();
        for (k, &x) in items.iter().enumerate() {
            let rest: Vec<u32> = items.iter().enumerate().filter(|&(j, _)| j != k).map(|(_, &y)| y).collect();
            for mut p in permutations(&rest) {
                p.insert(0, x);
                out.push(p);
            }
        }
        out
    }
    let parents: Vec<u32> = s.parents().collect();
    let mut classes = Vec::new();
    for order in permutations(&parents) {
        for k in 1..=order.len() {
            let ended = &order[..k];
            let v = evaluate_task(s.trigger_rule, &s.deps, &s.conditions, |p| if ended.contains(&p) { seen(p) } else { None });
            if let Verdict::Skip(c) = v {
                if !classes.contains(&c) {
                    classes.push(c);
                }
            }
            if v != Verdict::Wait {
                break;
            }
        }
    }
    classes
}

#[test]
fn every_task_ends_in_exactly_one_final_state() {
    let redis = Redis::start();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let case = std::sync::atomic::AtomicU32::new(0);
    proptest!(ProptestConfig { cases: 64, failure_persistence: None, ..ProptestConfig::default() }, |(p in plan())| {
        let ns = format!("zo-prop-{}", case.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
        rt.block_on(drive(&redis.url(), &ns, &p))?;
    });
}

/// A run larger than one creation pipeline arrives whole: every key complete, roots in the
/// outbox, nothing left under a staging name or with an expiry; creating it again changes
/// nothing; and a commit that finds a staging key gone creates nothing.
#[test]
fn a_large_run_is_created_whole() {
    let redis = Redis::start();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let store = Store::connect(&redis.url(), "zo-large", 2).await.unwrap();
        let keys = store.keys().clone();
        let mut c = store.conn().await.unwrap();
        let n = 4500u32;
        // Every third task depends on the one before it.
        let specs: Vec<TaskSpec> = (0..n).map(|i| job(i, if i % 3 == 2 { vec![i - 1] } else { vec![] })).collect();
        let new_run = NewRun {
            run_id: "L",
            file: "l.yaml",
            name: None,
            specs: &specs,
            retention: Duration::from_secs(60),
            limits: &Default::default(),
        };
        let blobs = store.create_run(&mut c, &new_run).await.unwrap();
        assert_eq!(blobs.len() as u32, n - n / 3, "one blob per root");
        assert!(blobs.windows(2).all(|w| w[0].0 < w[1].0), "blobs sorted by index");
        assert!(blobs.iter().all(|(i, b)| TaskSpec::decode(b).unwrap() == specs[*i as usize]));
        let hlen = |k: &str| redis::cmd("HLEN").arg(keys.run("L", k)).clone();
        let mut c2 = c.fork();
        let spec: u32 = hlen("spec").query_async(&mut c2).await.unwrap();
        let state: u32 = hlen("state").query_async(&mut c2).await.unwrap();
        let pending: u32 = hlen("pending").query_async(&mut c2).await.unwrap();
        let children: u32 = hlen("children").query_async(&mut c2).await.unwrap();
        let outbox: u32 = redis::cmd("LLEN").arg(keys.run("L", "outbox")).query_async(&mut c2).await.unwrap();
        let total: u32 = redis::cmd("HGET").arg(keys.run("L", "meta")).arg("total").query_async(&mut c2).await.unwrap();
        assert_eq!((spec, state, total), (n, n, n));
        assert_eq!(pending, n / 3);
        assert_eq!(children, n / 3);
        assert_eq!(outbox, n - n / 3, "every root, and only roots, in the outbox");
        let listed: bool = redis::cmd("ZSCORE").arg(keys.runs()).arg("L").query_async::<Option<u64>>(&mut c2).await.unwrap().is_some();
        assert!(listed, "the run is in the index");
        let snap = store.snapshot(&mut c2, "L").await.unwrap();
        assert_eq!(snap.specs.len(), n as usize);
        assert_eq!(snap.specs[4499].deps, vec![4498]);
        let staged = |c: &mut zo_common::store::Conn| {
            let mut c = c.fork();
            async move { redis::cmd("KEYS").arg("zo-large:*:new:*").query_async::<Vec<String>>(&mut c).await.unwrap() }
        };
        assert_eq!(staged(&mut c2).await, Vec::<String>::new(), "no staging key left");
        for k in ["meta", "spec", "state", "attempt", "pending", "children", "outbox"] {
            let ttl: i64 = redis::cmd("TTL").arg(keys.run("L", k)).query_async(&mut c2).await.unwrap();
            assert_eq!(ttl, -1, "{k} exists without an expiry");
        }

        // The same run id again: refused, the run as it was, no staging keys left behind.
        let mut other = specs.clone();
        other.truncate(10);
        let again = NewRun {
            run_id: "L",
            file: "other.yaml",
            name: None,
            specs: &other,
            retention: Duration::from_secs(60),
            limits: &Default::default(),
        };
        let err = store.create_run(&mut c, &again).await.unwrap_err();
        assert!(err.to_string().contains("already exists"), "{err}");
        let spec_after: u32 = hlen("spec").query_async(&mut c2).await.unwrap();
        let file: String = redis::cmd("HGET").arg(keys.run("L", "meta")).arg("file").query_async(&mut c2).await.unwrap();
        assert_eq!((spec_after, file.as_str()), (n, "l.yaml"));
        assert_eq!(staged(&mut c2).await, Vec::<String>::new(), "a refused run leaves no staging key");

        // A commit whose staging key is gone (expired) creates nothing at all.
        let _: () = redis::cmd("HSET").arg(keys.run("M", "new:spec")).arg(0).arg("x").query_async(&mut c2).await.unwrap();
        let mut commit = zo_common::store::COMMIT_RUN.prepare_invoke();
        commit
            .key(keys.run("M", "meta"))
            .key(keys.run("M", "new:spec"))
            .key(keys.run("M", "new:state"))
            .key(keys.run("M", "spec"))
            .key(keys.run("M", "state"))
            .arg("total")
            .arg(1);
        let gone = commit.invoke_async::<i64>(&mut c2).await.unwrap_err();
        assert!(gone.to_string().contains("is gone"), "{gone}");
        let exists: u32 = redis::cmd("EXISTS").arg(keys.run("M", "meta")).arg(keys.run("M", "spec")).query_async(&mut c2).await.unwrap();
        assert_eq!(exists, 0, "nothing of the run was created");
        let _: () = redis::cmd("DEL").arg(keys.run("M", "new:spec")).query_async(&mut c2).await.unwrap();
        let _: () = redis::cmd("DEL").arg(keys.run_keys("L")).query_async(&mut c2).await.unwrap();
    });
}

/// The first flush of a run just created takes its roots from the creator's memory when the
/// outbox still begins with them, and reads the outbox back otherwise: either way every
/// queued job reaches the stream exactly once and the outbox ends empty — also when another
/// flusher moved the first root already, and for entries appended after the roots.
#[test]
fn the_first_flush_moves_every_root_once() {
    let redis = Redis::start();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let n = 12_000u32;
        // Every fourth task waits for the one before it.
        let specs = || -> Vec<TaskSpec> { (0..n).map(|i| job(i, if i % 4 == 3 { vec![i - 1] } else { vec![] })).collect() };
        let roots: Vec<u32> = (0..n).filter(|i| i % 4 != 3).collect();
        // (name, what happens between creating and flushing)
        for case in ["untouched", "head moved by another flusher", "entry appended", "outbox shorter"] {
            let store = Store::connect(&redis.url(), &format!("zo-flush-{}", case.replace(' ', "-")), 2).await.unwrap();
            let keys = store.keys().clone();
            let mut c = store.conn().await.unwrap();
            let run = "F";
            let specs = specs();
            store.ensure_group(&mut c, "fast").await.unwrap();
            let new_run = NewRun {
                run_id: run,
                file: "f.yaml",
                name: None,
                specs: &specs,
                retention: Duration::from_secs(60),
                limits: &Default::default(),
            };
            let blobs = store.create_run(&mut c, &new_run).await.unwrap();
            let outbox = keys.run(run, "outbox");
            let stream = keys.jobs("fast");
            let mut expected: Vec<(u32, u32)> = roots.iter().map(|&i| (i, 1)).collect();
            match case {
                "head moved by another flusher" => {
                    let _: String = redis::cmd("LPOP").arg(&outbox).query_async(&mut c).await.unwrap();
                    expected.remove(0);
                }
                "entry appended" => {
                    let _: () = redis::cmd("RPUSH").arg(&outbox).arg("3:1").query_async(&mut c).await.unwrap();
                    expected.push((3, 1));
                }
                "outbox shorter" => {
                    let _: () = redis::cmd("RPOP").arg(&outbox).arg(2).query_async(&mut c).await.unwrap();
                    expected.truncate(expected.len() - 2);
                }
                _ => {}
            }
            let local = LocalSpecs { specs: &specs, blobs: &blobs };
            let _: () = redis::cmd("CONFIG").arg("RESETSTAT").query_async(&mut c).await.unwrap();
            let moved = store.flush_outbox_with(&mut c, run, Some(local)).await.unwrap();
            let stats: String = redis::cmd("INFO").arg("commandstats").query_async(&mut c).await.unwrap();
            let lranges: u32 = stats
                .lines()
                .find_map(|l| l.strip_prefix("cmdstat_lrange:calls="))
                .map_or(0, |r| r.split(',').next().unwrap().parse().unwrap());
            // From memory, only what follows the roots is read back (then the empty outbox);
            // otherwise all of it, in chunks of 5,000.
            let want_lranges = match case {
                "untouched" => 1,
                "entry appended" => 2,
                _ => 3,
            };
            assert_eq!(lranges, want_lranges, "{case}: LRANGE calls");
            assert_eq!(moved, expected.len(), "{case}");
            let left: usize = redis::cmd("LLEN").arg(&outbox).query_async(&mut c).await.unwrap();
            assert_eq!(left, 0, "{case}: the outbox ends empty");
            let entries: Vec<(String, HashMap<String, Vec<u8>>)> =
                redis::cmd("XRANGE").arg(&stream).arg("-").arg("+").query_async(&mut c).await.unwrap();
            let num = |b: &[u8]| -> u32 { std::str::from_utf8(b).unwrap().parse().unwrap() };
            let mut got: Vec<(u32, u32)> = entries.iter().map(|(_, f)| (num(&f["idx"]), num(&f["attempt"]))).collect();
            got.sort_unstable();
            let mut want = expected.clone();
            want.sort_unstable();
            assert_eq!(got, want, "{case}: every queued job once");
            for (_, f) in entries.iter().take(3) {
                let spec = TaskSpec::decode(&f["payload"]).unwrap();
                assert_eq!(spec, specs[num(&f["idx"]) as usize], "{case}: the payload is the task's spec");
            }
        }
    });
}

/// A failure with 100,000 dependents: skipping them never blocks Redis for long (chunks of
/// 2,000, each its own script call), the rest waits in the run's `cascade` list when the
/// recorder stops after the first chunk (as if it crashed), and upkeep finishes it.
#[test]
fn a_huge_skip_cascade_goes_in_chunks_and_survives_its_recorder() {
    let redis = Redis::start();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let store = Store::connect(&redis.url(), "zo-cascade", 2).await.unwrap();
        let keys = store.keys().clone();
        let mut c = store.conn().await.unwrap();
        let n = 100_001u32;
        let specs: Vec<TaskSpec> = (0..n).map(|i| job(i, if i == 0 { vec![] } else { vec![0] })).collect();
        store.ensure_group(&mut c, "fast").await.unwrap();
        let new_run = NewRun {
            run_id: "C",
            file: "c.yaml",
            name: None,
            specs: &specs,
            retention: Duration::from_secs(60),
            limits: &Default::default(),
        };
        store.create_run(&mut c, &new_run).await.unwrap();
        let claim = Claim { worker: "w", lease: Duration::from_secs(60), max_deliveries: 5 };
        let tags = store
            .mark_running(&mut c, "C", &claim, &[ToMark { idx: 0, attempt: 1, takeover: false, instance: "fast".into() }])
            .await
            .unwrap();
        assert_eq!(tags, vec![MarkRunning::Ok]);
        let _: () = redis::cmd("CONFIG").arg("SET").arg("slowlog-log-slower-than").arg(400_000).query_async(&mut c).await.unwrap();
        let _: () = redis::cmd("SLOWLOG").arg("RESET").query_async(&mut c).await.unwrap();
        let failed = ToRecord {
            idx: 0,
            attempt: 1,
            status: Status::Failed,
            blob: script_result(1, Status::Failed).encode(),
            retry_in: None,
            cost: 0,
            instance: "fast".into(),
        };
        let batch = store.record_results(&mut c, "C", &[failed]).await.unwrap();
        assert!(batch.cascade_left > 0 && !batch.finished, "{batch:?}");
        let meta = store.run_meta(&mut c, "C").await.unwrap();
        assert_eq!(meta.skipped, 2000, "one chunk per script call");
        // The recorder is gone; upkeep (any worker's, or the watcher's) goes on.
        store.maintain_active(&mut c).await.unwrap();
        let meta = store.run_meta(&mut c, "C").await.unwrap();
        assert_eq!((meta.skipped, meta.failed, meta.done), (100_000, 1, 100_001));
        assert!(meta.finished, "the run finishes with the last chunk");
        let slow: Vec<redis::Value> = redis::cmd("SLOWLOG").arg("GET").arg(10).query_async(&mut c).await.unwrap();
        assert!(
            slow.is_empty(),
            "a script call took more than 400 ms (a chunk takes about 10 on an idle machine, 120 on a loaded one; one unchunked cascade of 100,000 takes over 500 on an idle one): {slow:?}"
        );
        let left: u64 = redis::cmd("LLEN").arg(keys.run("C", "cascade")).query_async(&mut c).await.unwrap();
        assert_eq!(left, 0);
        let _: () = redis::cmd("DEL").arg(keys.run_keys("C")).query_async(&mut c).await.unwrap();
    });
}
