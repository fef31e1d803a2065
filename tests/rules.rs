//! Trigger rules and `on_success`/`on_failure` conditions through the real Lua scripts on a
//! real Redis: every rule × every way a dependency can end (success, failed, timeout,
//! cancelled, skipped by a condition, skipped by a failure) for two and three dependencies,
//! the dependencies ending one after the other. After each one, the task must be exactly where
//! the rule says — started the moment a `one_*` rule is met, without waiting for the others
//! (the proof that it does not wait for a slow sibling) — and it must end as the rule says,
//! with the skip class the rule gives.

use std::time::Duration;

use zo_common::model::{Condition, ErrorClass, ParentOutcome, Status, TaskSpec, TaskState, TriggerRule, When};
use zo_common::rules::{evaluate, Tally, Verdict};
use zo_common::store::{Claim, Conn, MarkRunning, NewRun, Store, ToMark, ToRecord};
use zo_e2e::{script_result, true_task, Redis};

/// How a dependency ends in a case.
#[derive(Debug, Clone, Copy, PartialEq)]
enum End {
    Success,
    Failed,
    Timeout,
    Cancelled,
    /// Skipped because its rule's condition did not hold (`all_failed` over a success).
    SkippedByCondition,
    /// Skipped because its own dependency failed.
    SkippedByFailure,
}

const ENDS: [End; 6] = [End::Success, End::Failed, End::Timeout, End::Cancelled, End::SkippedByCondition, End::SkippedByFailure];

impl End {
    fn seen_as(self) -> ParentOutcome {
        match self {
            End::Success => ParentOutcome::Succeeded,
            End::SkippedByCondition => ParentOutcome::Skipped,
            _ => ParentOutcome::Failed,
        }
    }
}

fn result(attempt: u32, status: Status) -> Vec<u8> {
    script_result(attempt, status).encode()
}

fn task(name: String, deps: Vec<u32>) -> TaskSpec {
    true_task(name, deps)
}

/// Runs task `idx` (queued) to `status`.
async fn finish(store: &Store, c: &mut Conn, run: &str, idx: u32, status: Status) {
    let claim = Claim { worker: "w", lease: Duration::from_secs(60), max_deliveries: 5 };
    let tags = store.mark_running(c, run, &claim, &[ToMark { idx, attempt: 1, takeover: false, instance: "fast".into() }]).await.unwrap();
    assert_eq!(tags, vec![MarkRunning::Ok], "task {idx} could be started");
    let rec = ToRecord { idx, attempt: 1, status, blob: result(1, status), retry_in: None, cost: 0, instance: "fast".into() };
    let batch = store.record_results(c, run, &[rec]).await.unwrap();
    if batch.cascade_left > 0 {
        store.finish_cascade(c, run).await.unwrap();
    }
}

async fn state_of(c: &mut Conn, store: &Store, run: &str, idx: u32) -> TaskState {
    let s: String = redis::cmd("HGET").arg(store.keys().run(run, "state")).arg(idx).query_async(c).await.unwrap();
    TaskState::parse(&s).unwrap()
}

/// What the task should be after the dependencies so far, by the pure rule table: the first
/// verdict that is not `Wait` stays.
fn expected_after(rule: TriggerRule, ends: &[End], so_far: usize) -> Verdict {
    let mut t = Tally::default();
    for e in &ends[..so_far] {
        t.add(e.seen_as());
        let v = evaluate(rule, ends.len() as u32, t);
        if v != Verdict::Wait {
            return v;
        }
    }
    Verdict::Wait
}

/// One case: dependencies P0..Pn-1 end as `ends`, in order; task C has `rule` over them.
/// Returns C's final state and skip class.
async fn run_case(store: &Store, c: &mut Conn, run: &str, rule: TriggerRule, ends: &[End]) -> (TaskState, Option<ErrorClass>) {
    // Tasks: per dependency, a helper G (when the dependency is to be skipped) and P; then C.
    let mut specs: Vec<TaskSpec> = Vec::new();
    let mut parents = Vec::new();
    for (j, e) in ends.iter().enumerate() {
        match e {
            End::SkippedByCondition | End::SkippedByFailure => {
                let g = specs.len() as u32;
                specs.push(task(format!("G{j}"), vec![]));
                let mut p = task(format!("P{j}"), vec![g]);
                if *e == End::SkippedByCondition {
                    p.trigger_rule = TriggerRule::AllFailed;
                }
                parents.push((specs.len() as u32, Some(g)));
                specs.push(p);
            }
            _ => {
                parents.push((specs.len() as u32, None));
                specs.push(task(format!("P{j}"), vec![]));
            }
        }
    }
    let child = specs.len() as u32;
    let mut ct = task("C".into(), parents.iter().map(|p| p.0).collect());
    ct.trigger_rule = rule;
    specs.push(ct);
    store
        .create_run(
            c,
            &NewRun {
                run_id: run,
                file: "r.yaml",
                name: None,
                specs: &specs,
                retention: Duration::from_secs(60),
                limits: &Default::default(),
            },
        )
        .await
        .unwrap();
    for (j, (&(p, g), e)) in parents.iter().zip(ends).enumerate() {
        match e {
            End::Success => finish(store, c, run, p, Status::Success).await,
            End::Failed => finish(store, c, run, p, Status::Failed).await,
            End::Timeout => finish(store, c, run, p, Status::Timeout).await,
            End::Cancelled => {
                store.cancel(c, run, Some(p)).await.unwrap();
            }
            End::SkippedByCondition => finish(store, c, run, g.unwrap(), Status::Success).await,
            End::SkippedByFailure => finish(store, c, run, g.unwrap(), Status::Failed).await,
        }
        let want = match e {
            End::Success => TaskState::Success,
            End::Failed => TaskState::Failed,
            End::Timeout => TaskState::Timeout,
            End::Cancelled => TaskState::Cancelled,
            _ => TaskState::Skipped,
        };
        assert_eq!(state_of(c, store, run, p).await, want, "{} {ends:?}: P{j}", rule.as_str());
        let now = state_of(c, store, run, child).await;
        let expected = match expected_after(rule, ends, j + 1) {
            Verdict::Wait => TaskState::Waiting,
            Verdict::Start => TaskState::Queued,
            Verdict::Skip(_) => TaskState::Skipped,
        };
        assert_eq!(now, expected, "{} over {ends:?}: C after P{j} ended", rule.as_str());
    }
    if state_of(c, store, run, child).await == TaskState::Queued {
        finish(store, c, run, child, Status::Success).await;
    }
    let snap = store.snapshot(c, run).await.unwrap();
    assert!(snap.meta.finished, "{} over {ends:?}: the run finished", rule.as_str());
    let skip = snap.skips[child as usize].map(|s| s.class);
    let _: () = redis::cmd("DEL").arg(store.keys().run_keys(run)).query_async(c).await.unwrap();
    (snap.states[child as usize], skip)
}

fn all_cases(n: usize) -> Vec<Vec<End>> {
    let mut out = vec![vec![]];
    for _ in 0..n {
        out = out.into_iter().flat_map(|v| ENDS.iter().map(move |e| [v.clone(), vec![*e]].concat())).collect();
    }
    out
}

#[test]
fn every_rule_over_every_way_two_or_three_dependencies_end() {
    let redis = Redis::start();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let store = Store::connect(&redis.url(), "zo-rules", 2).await.unwrap();
        let mut c = store.conn().await.unwrap();
        store.ensure_group(&mut c, "fast").await.unwrap();
        let mut n_cases = 0;
        for n in [2, 3] {
            for ends in all_cases(n) {
                for rule in TriggerRule::ALL {
                    let (state, class) = run_case(&store, &mut c, "T", rule, &ends).await;
                    let (want_state, want_class) = match expected_after(rule, &ends, ends.len()) {
                        Verdict::Start => (TaskState::Success, None),
                        Verdict::Skip(class) => (TaskState::Skipped, Some(class)),
                        Verdict::Wait => panic!("{} over {ends:?}: undecided after every dependency ended", rule.as_str()),
                    };
                    assert_eq!((state, class), (want_state, want_class), "{} over {ends:?}", rule.as_str());
                    n_cases += 1;
                }
            }
        }
        assert_eq!(n_cases, 10 * (36 + 216));
    });
}

/// A few cases written out by hand, end to end, as a reader would check them against
/// Airflow's documentation.
#[test]
fn rules_by_hand() {
    use End::*;
    use ErrorClass::{Condition as C, Dependency as D};
    use TaskState::{Skipped, Success as Ran};
    let cases: &[(TriggerRule, &[End], TaskState, Option<ErrorClass>)] = &[
        (TriggerRule::AllSuccess, &[Success, Success], Ran, None),
        (TriggerRule::AllSuccess, &[Success, Timeout], Skipped, Some(D)),
        (TriggerRule::AllSuccess, &[SkippedByCondition, Failed], Skipped, Some(C)),
        (TriggerRule::AllSuccess, &[SkippedByFailure, Success], Skipped, Some(D)),
        (TriggerRule::AllFailed, &[Failed, Cancelled, SkippedByFailure], Ran, None),
        (TriggerRule::AllDone, &[Failed, SkippedByCondition, Success], Ran, None),
        (TriggerRule::AllSkipped, &[SkippedByCondition, SkippedByCondition], Ran, None),
        (TriggerRule::OneSuccess, &[Failed, Success, Timeout], Ran, None),
        (TriggerRule::OneSuccess, &[Failed, SkippedByCondition], Skipped, Some(D)),
        (TriggerRule::OneFailed, &[Success, Success], Skipped, Some(C)),
        (TriggerRule::OneDone, &[SkippedByCondition, SkippedByCondition], Skipped, Some(C)),
        (TriggerRule::NoneFailed, &[Success, SkippedByCondition], Ran, None),
        (TriggerRule::NoneFailed, &[Success, Cancelled], Skipped, Some(D)),
        (TriggerRule::NoneFailedMinOneSuccess, &[SkippedByCondition, SkippedByCondition], Skipped, Some(C)),
        (TriggerRule::NoneSkipped, &[Failed, Success], Ran, None),
    ];
    let redis = Redis::start();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let store = Store::connect(&redis.url(), "zo-rules-hand", 2).await.unwrap();
        let mut c = store.conn().await.unwrap();
        store.ensure_group(&mut c, "fast").await.unwrap();
        for (rule, ends, state, class) in cases {
            let got = run_case(&store, &mut c, "H", *rule, ends).await;
            assert_eq!(got, (*state, *class), "{} over {ends:?}", rule.as_str());
        }
    });
}

/// The seed's `on_success`/`on_failure`: the named task waits for the one naming it and runs
/// only if it ended as asked; otherwise it is skipped with class `condition`, which counts as
/// skipped (not failed) for its own dependents.
#[test]
fn on_success_and_on_failure_edges() {
    let redis = Redis::start();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let store = Store::connect(&redis.url(), "zo-rules-edges", 2).await.unwrap();
        let mut c = store.conn().await.unwrap();
        store.ensure_group(&mut c, "fast").await.unwrap();
        for (check, deploy_state, fix_state) in [
            (Status::Success, TaskState::Success, TaskState::Skipped),
            (Status::Failed, TaskState::Skipped, TaskState::Success),
            (Status::Timeout, TaskState::Skipped, TaskState::Success),
        ] {
            // 0 Check (on_success: Deploy, on_failure: Fix), 1 Deploy, 2 Fix, 3 Notify after Fix
            // with none_failed (runs whether Fix ran or was skipped by its condition).
            let deploy = TaskSpec { conditions: vec![Condition { on: 0, when: When::Succeeded }], ..task("Deploy".into(), vec![]) };
            let fix = TaskSpec { conditions: vec![Condition { on: 0, when: When::Failed }], ..task("Fix".into(), vec![]) };
            let notify = TaskSpec { trigger_rule: TriggerRule::NoneFailed, ..task("Notify".into(), vec![2]) };
            let specs = vec![task("Check".into(), vec![]), deploy, fix, notify];
            let run = "E";
            store
                .create_run(
                    &mut c,
                    &NewRun {
                        run_id: run,
                        file: "e.yaml",
                        name: None,
                        specs: &specs,
                        retention: Duration::from_secs(60),
                        limits: &Default::default(),
                    },
                )
                .await
                .unwrap();
            assert_eq!(state_of(&mut c, &store, run, 1).await, TaskState::Waiting, "Deploy waits for Check");
            finish(&store, &mut c, run, 0, check).await;
            for idx in [1, 2] {
                if state_of(&mut c, &store, run, idx).await == TaskState::Queued {
                    finish(&store, &mut c, run, idx, Status::Success).await;
                }
            }
            assert_eq!(state_of(&mut c, &store, run, 3).await, TaskState::Queued, "{check:?}: Notify runs either way");
            finish(&store, &mut c, run, 3, Status::Success).await;
            let snap = store.snapshot(&mut c, run).await.unwrap();
            assert_eq!((snap.states[1], snap.states[2]), (deploy_state, fix_state), "Check {check:?}");
            let skipped = if deploy_state == TaskState::Skipped { 1 } else { 2 };
            let skip = snap.skips[skipped].expect("a skip reason");
            assert_eq!((skip.class, skip.cause), (ErrorClass::Condition, Some(0)));
            assert!(snap.meta.finished);
            let doc = zo_common::report::build(&snap, &zo_common::catalog::Catalog::builtin());
            let why = doc.tasks[skipped].error.clone().unwrap();
            assert!(why.starts_with("skipped: condition not met: it runs when `"), "{why}");
            let _: () = redis::cmd("DEL").arg(store.keys().run_keys(run)).query_async(&mut c).await.unwrap();
        }
    });
}

/// `REVIVE` (dead retry, resume) evaluates the tasks a revived task had skipped again from
/// their parents' states: one whose rule another parent still breaks stays skipped, naming
/// that parent (here `all_failed` over a success), one whose rule can hold again waits and runs.
#[test]
fn revived_parents_re_evaluate_what_they_skipped() {
    let redis = Redis::start();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let store = Store::connect(&redis.url(), "zo-rules-revive", 2).await.unwrap();
        let mut c = store.conn().await.unwrap();
        store.ensure_group(&mut c, "fast").await.unwrap();
        // 0 A, 1 B; 2 C: all_failed over A, B; 3 D: A's plain dependent; 4 E: one_failed over A.
        let specs = vec![
            task("A".into(), vec![]),
            task("B".into(), vec![]),
            TaskSpec { trigger_rule: TriggerRule::AllFailed, ..task("C".into(), vec![0, 1]) },
            task("D".into(), vec![0]),
            TaskSpec { trigger_rule: TriggerRule::OneFailed, ..task("E".into(), vec![0]) },
        ];
        let run = "V";
        store
            .create_run(
                &mut c,
                &NewRun {
                    run_id: run,
                    file: "v.yaml",
                    name: None,
                    specs: &specs,
                    retention: Duration::from_secs(60),
                    limits: &Default::default(),
                },
            )
            .await
            .unwrap();
        finish(&store, &mut c, run, 1, Status::Success).await;
        assert_eq!(state_of(&mut c, &store, run, 2).await, TaskState::Skipped, "all_failed is unmeetable once B succeeded");
        finish(&store, &mut c, run, 0, Status::Failed).await;
        assert_eq!(state_of(&mut c, &store, run, 3).await, TaskState::Skipped);
        assert_eq!(state_of(&mut c, &store, run, 4).await, TaskState::Queued, "one_failed starts");
        finish(&store, &mut c, run, 4, Status::Success).await;
        assert!(store.snapshot(&mut c, run).await.unwrap().meta.finished);

        assert_eq!(store.revive(&mut c, run, 0).await.unwrap(), Some(2));
        let snap = store.snapshot(&mut c, run).await.unwrap();
        assert_eq!(snap.states[2], TaskState::Skipped, "B still breaks C's rule");
        assert_eq!(snap.skips[2].map(|s| (s.class, s.cause)), Some((ErrorClass::Condition, Some(1))));
        assert_eq!(snap.states[3], TaskState::Waiting, "D waits for A's new attempt");
        assert_eq!(snap.states[4], TaskState::Success, "what already ran keeps its result");
        let claim = Claim { worker: "w", lease: Duration::from_secs(60), max_deliveries: 5 };
        let tags = store
            .mark_running(&mut c, run, &claim, &[ToMark { idx: 0, attempt: 2, takeover: false, instance: "fast".into() }])
            .await
            .unwrap();
        assert_eq!(tags, vec![MarkRunning::Ok]);
        let rec = ToRecord {
            idx: 0,
            attempt: 2,
            status: Status::Success,
            blob: result(2, Status::Success),
            retry_in: None,
            cost: 0,
            instance: "fast".into(),
        };
        store.record_results(&mut c, run, &[rec]).await.unwrap();
        assert_eq!(state_of(&mut c, &store, run, 3).await, TaskState::Queued, "D runs after A succeeded");
        finish(&store, &mut c, run, 3, Status::Success).await;
        let snap = store.snapshot(&mut c, run).await.unwrap();
        assert!(snap.meta.finished);
        assert_eq!((snap.meta.success, snap.meta.skipped, snap.meta.failed), (4, 1, 0));
    });
}
