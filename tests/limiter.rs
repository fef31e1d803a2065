//! The limiter scripts on a real Redis, below the worker: shared slots counted per worker
//! (take, give, a dead worker's slots swept, a stalled worker's held again on renewal) and
//! admissions counted or named (a limit that does not bind answers a whole batch at once;
//! one that binds says to ask again naming the jobs, and then reserves each its start), and a
//! capped run's slots counted from its mark and record calls.

use std::time::Duration;

use zo_common::model::{now_ms, RateLimit};
use zo_common::store::{Admits, LimitAsk, LimitStep, Limiter, Store};
use zo_e2e::{namespace, Redis};

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

/// A store on `redis` under its own namespace `ns`, and a connection.
async fn store_in(redis: &Redis, ns: &str) -> (Store, zo_common::store::Conn) {
    let store = Store::connect(&redis.url(), ns, 2).await.unwrap();
    let c = store.conn().await.unwrap();
    (store, c)
}

fn slots_only(cap: u32, until_ms: u64, gives: u32, takes: u32) -> LimitAsk<'static> {
    LimitAsk { cap, until_ms, gives, takes, admits: Admits::Count(0), spare: 0 }
}

/// One step of a shared-slot case: which worker, what it gives back and asks for, and how
/// many it must get.
struct SlotStep {
    worker: &'static str,
    gives: u32,
    takes: u32,
    /// Its slots' lease: lapsed already (a dead worker) or a minute ahead.
    lapsed: bool,
    got: u32,
}

const fn step(worker: &'static str, gives: u32, takes: u32, got: u32) -> SlotStep {
    SlotStep { worker, gives, takes, lapsed: false, got }
}

#[test]
fn shared_slots_are_counted_per_worker() {
    // (what, cap, steps in order, slots held at the end)
    let cases: &[(&str, u32, &[SlotStep], u64)] = &[
        ("the first askers get them, the rest none", 4, &[step("a", 0, 3, 3), step("b", 0, 2, 1), step("c", 0, 1, 0)], 4),
        ("a slot given back is taken in the same call", 2, &[step("a", 0, 2, 2), step("a", 1, 1, 1), step("b", 0, 1, 0)], 2),
        ("gives past what a worker holds change nothing", 2, &[step("a", 0, 1, 1), step("a", 5, 0, 0), step("b", 0, 2, 2)], 2),
        (
            "a dead worker's slots are swept when a take needs them",
            3,
            &[SlotStep { worker: "dead", gives: 0, takes: 3, lapsed: true, got: 3 }, step("b", 0, 3, 3)],
            3,
        ),
    ];
    let redis = Redis::start();
    rt().block_on(async {
        for (k, (what, cap, steps, total)) in cases.iter().enumerate() {
            let ns = namespace(&format!("slots{k}"));
            let (store, mut c) = store_in(&redis, &ns).await;
            let lim = Limiter { name: "fast".into(), rate: RateLimit::default() };
            for s in *steps {
                let until = if s.lapsed { now_ms() - 1 } else { now_ms() + 60_000 };
                let answer = store.limit_step(&mut c, s.worker, &[(&lim, slots_only(*cap, until, s.gives, s.takes))]).await.unwrap();
                assert_eq!(answer[0].taken, s.got, "{what}: {} asking {} (cap {cap})", s.worker, s.takes);
            }
            let t: u64 = redis::cmd("HGET").arg(format!("{ns}:limit:{{fast}}:held")).arg("total").query_async(&mut c).await.unwrap();
            assert_eq!(t, *total, "{what}: slots held at the end");
        }
    });
}

#[test]
fn a_stalled_workers_slots_are_held_again_when_it_renews() {
    let redis = Redis::start();
    rt().block_on(async {
        let (store, mut c) = store_in(&redis, &namespace("renew")).await;
        let lim = Limiter { name: "fast".into(), rate: RateLimit::default() };
        // `slow` holds 2 slots whose lease lapses; `b` takes them over while `slow` stalls.
        store.limit_step(&mut c, "slow", &[(&lim, slots_only(2, now_ms() - 1, 0, 2))]).await.unwrap();
        assert!(!store.renew_shared_slots(&mut c, "fast", "slow", 2, now_ms() + 60_000).await.unwrap(), "its slots had lapsed");
        let b = store.limit_step(&mut c, "b", &[(&lim, slots_only(2, now_ms() + 60_000, 0, 1))]).await.unwrap();
        assert_eq!(b[0].taken, 0, "slow's two tasks still run: held again, the cap is full");
        assert!(store.renew_shared_slots(&mut c, "fast", "slow", 2, now_ms() + 60_000).await.unwrap(), "held, renewed");
        store.limit_step(&mut c, "slow", &[(&lim, slots_only(2, 0, 2, 0))]).await.unwrap();
        let b = store.limit_step(&mut c, "b", &[(&lim, slots_only(2, now_ms() + 60_000, 0, 2))]).await.unwrap();
        assert_eq!(b[0].taken, 2, "given back, free for others");
    });
}

#[test]
fn admissions_are_counted_while_the_limit_does_not_bind() {
    let redis = Redis::start();
    rt().block_on(async {
        let (store, mut c) = store_in(&redis, &namespace("admit")).await;
        let high = Limiter { name: "high".into(), rate: RateLimit { rpm: Some(100_000_000), tpm: None } };
        let low = Limiter { name: "low".into(), rate: RateLimit { rpm: Some(60), tpm: None } };
        let count = |n| LimitAsk { cap: 0, until_ms: 0, gives: 0, takes: 0, admits: Admits::Count(n), spare: 0 };
        // Both limiters in one call, answered in order: 1,000 starts fit in a millisecond at
        // 100 million a minute; two starts a second apart do not.
        let answers = store.limit_step(&mut c, "w", &[(&high, count(1000)), (&low, count(2))]).await.unwrap();
        assert_eq!(answers[0].waits.as_deref(), Some(&[Duration::ZERO; 1000][..]), "the high limit admits the batch");
        assert_eq!(answers[1].waits, None, "the low limit asks for the jobs by name");
        let jobs = ["r|1|1", "r|2|1"];
        let named = LimitAsk { admits: Admits::Named(&jobs), ..count(0) };
        let answer = store.limit_step(&mut c, "w", &[(&low, named)]).await.unwrap();
        let waits = answer[0].waits.clone().expect("named jobs are answered");
        assert_eq!(waits[0], Duration::ZERO, "the first starts now");
        assert!(waits[1] > Duration::from_millis(900) && waits[1] <= Duration::from_millis(1000), "the second a second later: {waits:?}");
        // A reservation is held: counted asks go by name until it is used.
        assert_eq!(store.limit_step(&mut c, "w", &[(&low, count(1))]).await.unwrap()[0].waits, None);
        // A backoff after a rate-limit answer stops counted admissions of the high limit too.
        store.debit(&mut c, &high, 0, true, Some(Duration::from_secs(5))).await.unwrap();
        let LimitStep { waits, .. } = store.limit_step(&mut c, "w", &[(&high, count(3))]).await.unwrap().remove(0);
        assert_eq!(waits, None, "backed off: ask by name");
    });
}

#[test]
fn starts_are_banked_only_when_they_start_within_the_millisecond() {
    let redis = Redis::start();
    rt().block_on(async {
        let (store, mut c) = store_in(&redis, &namespace("bank")).await;
        let ask = |n, spare| LimitAsk { cap: 0, until_ms: 0, gives: 0, takes: 0, admits: Admits::Count(n), spare };
        let lim = |name: &str, rpm, tpm| Limiter { name: name.into(), rate: RateLimit { rpm: Some(rpm), tpm } };
        // (what, limiter, jobs, spare asked, banked)
        let cases = [
            ("100 million a minute: 1,666 starts a millisecond", lim("high", 100_000_000, None), 10, 256, 256),
            ("600,000 a minute: 10 a millisecond, 4 of them this batch's", lim("mid", 600_000, None), 4, 256, 6),
            ("1,200 a minute: one start every 50 ms", lim("low", 1200, None), 1, 256, 0),
            ("a token limit: tokens are debited after the tasks", lim("tokens", 100_000_000, Some(1_000_000)), 10, 256, 0),
            ("nothing asked", lim("none", 100_000_000, None), 10, 0, 0),
        ];
        for (what, l, n, spare, banked) in cases {
            let a = store.limit_step(&mut c, "w", &[(&l, ask(n, spare))]).await.unwrap().remove(0);
            assert_eq!(a.waits.map(|w| w.len()), Some(n as usize), "{what}: the batch is admitted");
            assert_eq!(a.banked, banked, "{what}");
        }
        // What was banked is spent: the limiter's next start is after the banked ones.
        let mid = lim("mid", 600_000, None);
        let a = store.limit_step(&mut c, "w", &[(&mid, ask(20, 0))]).await.unwrap().remove(0);
        assert_eq!(a.waits, None, "the millisecond's 10 starts are gone: 20 more would wait");
    });
}

async fn hfield(c: &mut zo_common::store::Conn, key: &str, field: &str) -> Option<String> {
    redis::cmd("HGET").arg(key).arg(field).query_async(c).await.unwrap()
}

/// A run capped per instance counts its slots from the instances its mark and record calls
/// name, parks what does not fit (setting `slotwait`), grants the freed slot to the parked
/// task, and stops looking for parked tasks once none are left (`slotwait` cleared).
#[test]
fn a_capped_runs_slots_follow_its_calls_and_slotwait() {
    use zo_common::model::{RunLimits, Status};
    use zo_common::store::{Claim, MarkRunning, NewRun, Recorded, ToMark, ToRecord};
    let redis = Redis::start();
    rt().block_on(async {
        let (store, mut c) = store_in(&redis, &namespace("runcap")).await;
        let keys = store.keys().clone();
        let specs: Vec<_> = (0..4).map(|i| zo_e2e::true_task(format!("t{i}"), vec![])).collect();
        let limits = RunLimits { max_tasks_per_instance: Some(1), ..RunLimits::default() };
        let new_run =
            NewRun { run_id: "R", file: "r.yaml", name: None, specs: &specs, retention: Duration::from_secs(60), limits: &limits };
        store.create_run(&mut c, &new_run).await.unwrap();
        let claim = Claim { worker: "w", lease: Duration::from_secs(60), max_deliveries: 5 };
        let mark = |idx| ToMark { idx, attempt: 1, takeover: false, instance: "fast".into() };
        let done = |idx| ToRecord {
            idx,
            attempt: 1,
            status: Status::Success,
            blob: zo_e2e::script_result(1, Status::Success).encode(),
            retry_in: None,
            cost: 0,
            instance: "fast".into(),
        };
        let (meta, slotinfo, slots) = (keys.run("R", "meta"), keys.run("R", "slotinfo"), keys.run("R", "slots"));
        assert!(hfield(&mut c, &meta, "slotwait").await.is_none(), "nothing parked yet");
        let tags = store.mark_running(&mut c, "R", &claim, &[mark(0), mark(1)]).await.unwrap();
        assert_eq!(tags, vec![MarkRunning::Ok, MarkRunning::Parked], "one slot on fast");
        assert_eq!(hfield(&mut c, &slotinfo, "n:fast").await.map_or(0, |n| n.parse::<i64>().unwrap()), 1);
        assert!(hfield(&mut c, &meta, "slotwait").await.is_some(), "a task was parked");
        let rec = store.record_results(&mut c, "R", &[done(0)]).await.unwrap();
        assert!(matches!(rec.outcomes[..], [Recorded::Ok { .. }]));
        assert_eq!(rec.queued, 1, "the freed slot is granted to the parked task");
        let grants: u64 = redis::cmd("ZCARD").arg(&slots).query_async(&mut c).await.unwrap();
        assert_eq!(
            (grants, hfield(&mut c, &slotinfo, "n:fast").await.map_or(0, |n| n.parse::<i64>().unwrap())),
            (1, 1),
            "a grant holds the slot"
        );
        let tags = store.mark_running(&mut c, "R", &claim, &[mark(1), mark(2)]).await.unwrap();
        assert_eq!(tags, vec![MarkRunning::Ok, MarkRunning::Parked], "the grant is used, not a second slot");
        assert_eq!(hfield(&mut c, &slotinfo, "n:fast").await.map_or(0, |n| n.parse::<i64>().unwrap()), 1);
        assert_eq!(store.record_results(&mut c, "R", &[done(1)]).await.unwrap().queued, 1, "granted to t2");
        let tags = store.mark_running(&mut c, "R", &claim, &[mark(2)]).await.unwrap();
        assert_eq!(tags, vec![MarkRunning::Ok]);
        assert!(hfield(&mut c, &meta, "slotwait").await.is_some(), "the grant was there when the call began");
        assert_eq!(store.record_results(&mut c, "R", &[done(2)]).await.unwrap().queued, 0, "nobody is parked");
        let tags = store.mark_running(&mut c, "R", &claim, &[mark(3)]).await.unwrap();
        assert_eq!(tags, vec![MarkRunning::Ok]);
        assert!(hfield(&mut c, &meta, "slotwait").await.is_none(), "nothing parked or granted any more: cleared");
        store.record_results(&mut c, "R", &[done(3)]).await.unwrap();
        assert_eq!(hfield(&mut c, &slotinfo, "n:fast").await.map_or(0, |n| n.parse::<i64>().unwrap()), 0, "every slot given back");
    });
}
