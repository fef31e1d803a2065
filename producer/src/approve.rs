//! `zo-submit approve RUN STAGE` and `zo-submit reject RUN STAGE [--reason TEXT]`: an
//! operator's decision on a `pipeline:` stage with `approval_required` that waits for one.
//! Recorded with who (user@host) and when; the run goes on without any producer attached.

use zo_common::model::{rfc3339, StageStatus};
use zo_common::store::{Decided, Decision, Store, StoreError};
use zo_common::text::escape_line;

use crate::cli::ConnOpts;
use crate::{exit, fail_queue};

/// Who decides: `user@host` of this process (the login from `USER`/`LOGNAME`, else the name of
/// its uid in `/etc/passwd`, else the uid).
fn who() -> String {
    let user = std::env::var("USER").or_else(|_| std::env::var("LOGNAME")).ok().filter(|u| !u.is_empty()).unwrap_or_else(uid_name);
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "localhost".into());
    // `|` separates the fields of the stored decision; control characters never reach a terminal.
    escape_line(&format!("{user}@{host}")).replace('|', "/")
}

/// The name of this process's uid (the owner of `/proc/self`), from `/etc/passwd`.
fn uid_name() -> String {
    use std::os::unix::fs::MetadataExt as _;
    let uid = std::fs::metadata("/proc/self").map(|m| m.uid()).unwrap_or(u32::MAX);
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    passwd
        .lines()
        .find_map(|l| {
            let mut f = l.split(':');
            let name = f.next()?;
            (f.nth(1)?.parse::<u32>().ok()? == uid).then(|| name.to_string())
        })
        .unwrap_or_else(|| format!("uid{uid}"))
}

/// Approves (`reason: None`) or rejects a stage; returns the exit code.
pub async fn decide(conn_opts: &ConnOpts, quiet: bool, run_id: &str, stage: &str, reject: Option<&str>) -> u8 {
    let decision = match reject {
        None => Decision::Approve,
        Some(reason) => Decision::Reject { reason },
    };
    let done = if reject.is_some() { "rejected" } else { "approved" };
    let r = async {
        let store = Store::connect(&conn_opts.redis, &conn_opts.namespace, 2).await?;
        let mut conn = store.conn().await?;
        store.run_meta(&mut conn, run_id).await?;
        let specs = store.task_specs(&mut conn, run_id).await?;
        let mut stages: Vec<(&str, bool)> = Vec::new();
        for s in &specs {
            if let Some(st) = s.stage.as_deref() {
                if !stages.iter().any(|(n, _)| *n == st) {
                    stages.push((st, s.needs_approval));
                }
            }
        }
        let shown = escape_line(stage);
        match stages.iter().find(|(n, _)| *n == stage) {
            None if stages.is_empty() => return Ok(Err(format!("run {run_id} has no stages (its task file has no `pipeline:`)"))),
            None => {
                let names: Vec<&str> = stages.iter().map(|(n, _)| *n).collect();
                return Ok(Err(format!("run {run_id} has no stage `{shown}`; its stages: {}", names.join(", "))));
            }
            Some((_, false)) => {
                return Ok(Err(format!("stage `{shown}` of run {run_id} needs no approval (no `approval_required: true`)")))
            }
            Some(_) => {}
        }
        let d = store.decide_stage(&mut conn, run_id, stage, decision, &who()).await?;
        if let Decided::Done { queued, .. } = &d {
            if *queued > 0 {
                store.flush_outbox(&mut conn, run_id).await?;
            }
        }
        Ok::<_, StoreError>(Ok(d))
    }
    .await;
    match r {
        Ok(Ok(Decided::Done { tasks, finished, .. })) => {
            if !quiet {
                let what = if reject.is_some() { "skipped" } else { "started" };
                eprintln!(
                    "{done} stage `{}` of run {run_id}: {tasks} task{} {what}{}",
                    escape_line(stage),
                    if tasks == 1 { "" } else { "s" },
                    if finished { "; the run finished" } else { "" }
                );
            }
            exit::OK
        }
        Ok(Ok(Decided::NotAwaiting(status))) => {
            let why = match status {
                None => "its requirements are not met yet (it waits for the stages it requires)".to_string(),
                Some(StageStatus::Approved { by, at_ms }) => format!("it was approved by {by} at {}", rfc3339(at_ms)),
                Some(StageStatus::Rejected { by, at_ms, .. }) => format!("it was rejected by {by} at {}", rfc3339(at_ms)),
                Some(StageStatus::Awaiting) => "it is awaiting approval".to_string(),
            };
            eprintln!("zo-submit: stage `{}` of run {run_id} is not awaiting approval: {why}; nothing changed", escape_line(stage));
            exit::INVALID
        }
        Ok(Err(msg)) => {
            eprintln!("zo-submit: {msg}; nothing changed");
            exit::INVALID
        }
        Err(e) => fail_queue(&e),
    }
}

#[cfg(test)]
mod tests {
    /// Without `USER`, the decider is named by its uid's account, never `unknown`.
    #[test]
    fn the_uid_names_the_decider() {
        let name = super::uid_name();
        assert!(!name.is_empty() && !name.starts_with("uid"), "{name}");
        let id = std::process::Command::new("id").arg("-un").output().unwrap();
        assert_eq!(name, String::from_utf8_lossy(&id.stdout).trim());
    }
}
