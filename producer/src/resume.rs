//! `zo-submit resume RUN [--task NAME]`: runs again every task of a finished run that did not
//! succeed (failed, timed out, cancelled — and, through them, those skipped by their failure),
//! as new attempts in the same run, reusing the results of the tasks that succeeded. The
//! dependents they had skipped, by a failure or a condition, are evaluated again from the new
//! states (`REVIVE`); a rejected stage stays rejected. Then it follows the run as `watch` does.

use zo_common::catalog::Catalog;
use zo_common::model::{format_usd, ErrorClass, StopReason, TaskState};
use zo_common::store::{Store, StoreError};
use zo_common::text::escape_line;

use crate::cli::{ConnOpts, OutputOpts};
use crate::{exit, fail_queue, watch};

pub async fn resume(conn_opts: &ConnOpts, output: &OutputOpts, run_id: &str, task: Option<&str>, detach: bool, catalog: &Catalog) -> u8 {
    let store = match Store::connect(&conn_opts.redis, &conn_opts.namespace, 4).await {
        Ok(s) => s,
        Err(e) => return fail_queue(&e),
    };
    let r = async {
        let mut conn = store.conn().await?;
        let snap = store.snapshot(&mut conn, run_id).await?;
        if !snap.meta.finished {
            return Ok(Err(format!("run {run_id} is still running; resume a finished run (wait for it, or cancel it first)")));
        }
        if let (Some((StopReason::Budget, _)), Some(b)) = (snap.meta.stopped, snap.meta.budget) {
            return Ok(Err(format!(
                "run {run_id} stopped because it spent its budget ({} of {}); resumed, it would stop again at its first result. Submit the file again with a larger `max_cost_per_workflow`",
                format_usd(snap.meta.cost),
                format_usd(b.max_cost)
            )));
        }
        let again = |s: TaskState| matches!(s, TaskState::Failed | TaskState::Timeout | TaskState::Cancelled);
        let chosen: Vec<u32> = match task {
            None => (0..snap.states.len() as u32).filter(|&i| again(snap.states[i as usize])).collect(),
            Some(name) => {
                let Some(i) = snap.specs.iter().position(|s| s.name == name) else {
                    return Ok(Err(format!("run {run_id} has no task named `{}`", escape_line(name))));
                };
                let st = snap.states[i];
                if !again(st) {
                    let why = match (st, snap.skips[i]) {
                        (TaskState::Skipped, Some(skip)) if skip.class == ErrorClass::Dependency => match skip.cause {
                            Some(c) => format!("it was skipped because `{}` did not succeed; resume that one", snap.specs[c as usize].name),
                            None => "it was skipped because a dependency did not succeed".into(),
                        },
                        (st, _) => format!("it is {}", st.as_str()),
                    };
                    return Ok(Err(format!("task `{}` of run {run_id} cannot be resumed: {why}", escape_line(name))));
                }
                vec![i as u32]
            }
        };
        // The first revival is the claim: concurrent `resume`s read the same snapshot and
        // choose the same first task, which only one of them can revive (`REVIVE` is atomic).
        for (k, &i) in chosen.iter().enumerate() {
            if store.revive(&mut conn, run_id, i).await?.is_none() && k == 0 {
                // Not revived: another resume took it, unless it stays as it was (its stage
                // was rejected meanwhile).
                if !again(store.snapshot(&mut conn, run_id).await?.states[i as usize]) {
                    return Ok(Err(format!("run {run_id} is already running: another `zo-submit resume` resumed it just now")));
                }
            }
        }
        if !chosen.is_empty() {
            store.flush_outbox(&mut conn, run_id).await?;
        }
        Ok::<_, StoreError>(Ok(chosen.len()))
    }
    .await;
    match r {
        Ok(Ok(0)) => {
            eprintln!("run {run_id} has nothing to resume: no task failed, timed out or was cancelled");
            exit::OK
        }
        Ok(Ok(n)) => {
            if !output.quiet {
                eprintln!(
                    "resumed run {run_id}: {n} task{} queued again as a new attempt (and what they had skipped); successes kept",
                    if n == 1 { "" } else { "s" }
                );
            }
            if detach {
                crate::stdout(&format!("{run_id}\n"));
                return exit::OK;
            }
            watch::follow_and_report(&store, run_id, catalog, output, None).await
        }
        Ok(Err(msg)) => {
            eprintln!("zo-submit: {msg}; nothing changed");
            exit::INVALID
        }
        Err(e) => fail_queue(&e),
    }
}
