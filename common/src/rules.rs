//! Trigger rules as pure functions: given how a task's dependencies ended so far, may it start,
//! must it wait, or can its rule no longer be met? The recording script evaluates the same
//! table inside Redis (`store/lua/prelude.lua`, `rule_verdict`); the state-machine tests hold
//! the two together.
//!
//! A rule reads the task's `dependencies` only. `on_success`/`on_failure` edges
//! ([`Condition`]) are extra: each must have ended as asked, besides the rule.
//!
//! Unmeetable rules skip the task with a class: [`ErrorClass::Dependency`] when the rule wanted
//! no failure and a dependency had failed when it became unmeetable (the task then counts as
//! failed for its own dependents, like Airflow's `upstream_failed`), [`ErrorClass::Condition`]
//! otherwise (it counts as skipped). A task with no dependencies meets every rule.

use crate::model::{Condition, ErrorClass, ParentOutcome, TriggerRule, When};

/// How many of a task's dependencies ended which way (the others are not final yet).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    pub succeeded: u32,
    pub failed: u32,
    pub skipped: u32,
}

impl Tally {
    pub fn add(&mut self, o: ParentOutcome) {
        match o {
            ParentOutcome::Succeeded => self.succeeded += 1,
            ParentOutcome::Failed => self.failed += 1,
            ParentOutcome::Skipped => self.skipped += 1,
        }
    }

    fn done(&self) -> u32 {
        self.succeeded + self.failed + self.skipped
    }
}

/// What a task's rule says now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Not decided yet: more dependencies must end.
    Wait,
    /// It may start.
    Start,
    /// It can no longer start: skipped with this class (`dependency` or `condition`).
    Skip(ErrorClass),
}

/// The rule over `total` dependencies of which `t` ended. `one_*` rules start as soon as one
/// dependency qualifies; every rule decides as soon as the outcome is certain.
pub fn evaluate(rule: TriggerRule, total: u32, t: Tally) -> Verdict {
    use TriggerRule::*;
    use Verdict::{Start, Wait};
    let dep = Verdict::Skip(ErrorClass::Dependency);
    let cond = Verdict::Skip(ErrorClass::Condition);
    if total == 0 {
        return Start;
    }
    let all_done = t.done() >= total;
    let (s, f, k) = (t.succeeded, t.failed, t.skipped);
    match rule {
        AllSuccess if s >= total => Start,
        AllSuccess if f > 0 => dep,
        AllSuccess if k > 0 => cond,
        AllFailed if f >= total => Start,
        AllFailed if s + k > 0 => cond,
        AllDone if all_done => Start,
        AllSkipped if k >= total => Start,
        AllSkipped if f > 0 => dep,
        AllSkipped if s > 0 => cond,
        OneSuccess if s > 0 => Start,
        OneSuccess if all_done && f > 0 => dep,
        OneSuccess if all_done => cond,
        OneFailed if f > 0 => Start,
        OneFailed if all_done => cond,
        OneDone if s + f > 0 => Start,
        OneDone if all_done => cond,
        NoneFailed | NoneFailedMinOneSuccess if f > 0 => dep,
        NoneFailed if all_done => Start,
        NoneFailedMinOneSuccess if all_done && s > 0 => Start,
        NoneFailedMinOneSuccess if all_done => cond,
        NoneSkipped if k > 0 => cond,
        NoneSkipped if all_done => Start,
        _ => Wait,
    }
}

/// Whether an edge's condition holds for a task that ended as `o`.
pub fn holds(c: &Condition, o: ParentOutcome) -> bool {
    matches!((c.when, o), (When::Succeeded, ParentOutcome::Succeeded) | (When::Failed, ParentOutcome::Failed))
}

/// A task's verdict from scratch, over the current outcome of each of its parents (`None`:
/// not final): its rule over its dependencies, then its conditions. A condition that did not
/// hold skips it with class `condition` unless a failure already made its rule unmeetable.
pub fn evaluate_task(rule: TriggerRule, deps: &[u32], conditions: &[Condition], outcome: impl Fn(u32) -> Option<ParentOutcome>) -> Verdict {
    let mut t = Tally::default();
    for &d in deps {
        if let Some(o) = outcome(d) {
            t.add(o);
        }
    }
    let v = evaluate(rule, deps.len() as u32, t);
    if let Verdict::Skip(_) = v {
        return v;
    }
    let mut all_hold = true;
    for c in conditions {
        match outcome(c.on) {
            Some(o) if !holds(c, o) => return Verdict::Skip(ErrorClass::Condition),
            Some(_) => {}
            None => all_hold = false,
        }
    }
    if v == Verdict::Start && all_hold {
        Verdict::Start
    } else {
        Verdict::Wait
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ErrorClass::{Condition as C, Dependency as D};
    use TriggerRule::*;
    use Verdict::{Skip, Start, Wait};

    fn t(succeeded: u32, failed: u32, skipped: u32) -> Tally {
        Tally { succeeded, failed, skipped }
    }

    /// Each rule over three dependencies: (succeeded, failed, skipped) → verdict, by hand from
    /// Airflow's documentation.
    #[test]
    fn every_rule_decides_as_airflow_does() {
        let cases: &[(TriggerRule, (u32, u32, u32), Verdict)] = &[
            (AllSuccess, (3, 0, 0), Start),
            (AllSuccess, (2, 0, 0), Wait),
            (AllSuccess, (1, 1, 0), Skip(D)),
            (AllSuccess, (1, 0, 1), Skip(C)),
            (AllSuccess, (0, 1, 1), Skip(D)),
            (AllFailed, (0, 3, 0), Start),
            (AllFailed, (0, 2, 0), Wait),
            (AllFailed, (1, 0, 0), Skip(C)),
            (AllFailed, (0, 2, 1), Skip(C)),
            (AllDone, (1, 1, 0), Wait),
            (AllDone, (1, 1, 1), Start),
            (AllDone, (0, 0, 3), Start),
            (AllSkipped, (0, 0, 3), Start),
            (AllSkipped, (0, 0, 2), Wait),
            (AllSkipped, (1, 0, 0), Skip(C)),
            (AllSkipped, (0, 1, 0), Skip(D)),
            (OneSuccess, (1, 0, 0), Start),
            (OneSuccess, (1, 2, 0), Start),
            (OneSuccess, (0, 2, 0), Wait),
            (OneSuccess, (0, 3, 0), Skip(D)),
            (OneSuccess, (0, 1, 2), Skip(D)),
            (OneSuccess, (0, 0, 3), Skip(C)),
            (OneFailed, (0, 1, 0), Start),
            (OneFailed, (2, 0, 0), Wait),
            (OneFailed, (2, 0, 1), Skip(C)),
            (OneDone, (0, 0, 1), Wait),
            (OneDone, (0, 1, 0), Start),
            (OneDone, (1, 0, 0), Start),
            (OneDone, (0, 0, 3), Skip(C)),
            (NoneFailed, (2, 0, 1), Start),
            (NoneFailed, (0, 0, 3), Start),
            (NoneFailed, (2, 0, 0), Wait),
            (NoneFailed, (0, 1, 0), Skip(D)),
            (NoneFailedMinOneSuccess, (1, 0, 2), Start),
            (NoneFailedMinOneSuccess, (0, 0, 3), Skip(C)),
            (NoneFailedMinOneSuccess, (2, 1, 0), Skip(D)),
            (NoneFailedMinOneSuccess, (1, 0, 0), Wait),
            (NoneSkipped, (2, 1, 0), Start),
            (NoneSkipped, (3, 0, 0), Start),
            (NoneSkipped, (1, 0, 1), Skip(C)),
            (NoneSkipped, (1, 1, 0), Wait),
        ];
        for &(rule, (s, f, k), want) in cases {
            assert_eq!(evaluate(rule, 3, t(s, f, k)), want, "{} over {s} succeeded, {f} failed, {k} skipped", rule.as_str());
        }
        for rule in TriggerRule::ALL {
            assert_eq!(evaluate(rule, 0, Tally::default()), Start, "{} without dependencies", rule.as_str());
        }
    }

    /// Once a rule starts or skips a task, later outcomes never change its mind: which is what
    /// lets the recorder decide on the first outcome that settles it.
    #[test]
    fn a_decision_stays_whatever_ends_next() {
        for rule in TriggerRule::ALL {
            for s in 0..=3u32 {
                for f in 0..=3 - s {
                    for k in 0..=3 - s - f {
                        let before = evaluate(rule, 3, t(s, f, k));
                        if before == Wait || s + f + k == 3 {
                            continue;
                        }
                        for next in [t(s + 1, f, k), t(s, f + 1, k), t(s, f, k + 1)] {
                            let after = evaluate(rule, 3, next);
                            assert!(
                                std::mem::discriminant(&after) == std::mem::discriminant(&before),
                                "{}: {before:?} at {s}/{f}/{k}, then {after:?}",
                                rule.as_str()
                            );
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn conditions_must_hold_besides_the_rule() {
        let on_fail = [Condition { on: 9, when: When::Failed }];
        let of = |o9: Option<ParentOutcome>| move |i: u32| if i == 9 { o9 } else { Some(ParentOutcome::Succeeded) };
        assert_eq!(evaluate_task(AllSuccess, &[1], &on_fail, of(None)), Wait);
        assert_eq!(evaluate_task(AllSuccess, &[1], &on_fail, of(Some(ParentOutcome::Failed))), Start);
        assert_eq!(evaluate_task(AllSuccess, &[1], &on_fail, of(Some(ParentOutcome::Succeeded))), Skip(C));
        assert_eq!(evaluate_task(AllSuccess, &[], &on_fail, of(Some(ParentOutcome::Skipped))), Skip(C));
        // A failed dependency decides first: the task counts as failed.
        let failed = |i: u32| if i == 1 { Some(ParentOutcome::Failed) } else { Some(ParentOutcome::Succeeded) };
        assert_eq!(evaluate_task(AllSuccess, &[1], &on_fail, failed), Skip(D));
    }
}
