//! The archive sweep of a worker with `archive:`. A worker that records a run's last result
//! archives it at once ([`crate::job`]); this loop catches the runs that finished without
//! that: cancelled from the command line, ended by a rejected stage or a budget with nothing
//! running, or finished by a worker without an archive. Every few seconds it looks at the
//! runs of the index it has not settled yet and archives the finished ones nobody has
//! claimed (the claim in Redis keeps it to one writer across every process).

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};
use zo_common::store::ArchiveState;

use super::{sleep_or_shutdown, Shared};

/// Time between sweeps (the first comes soon after start).
const SWEEP: Duration = Duration::from_secs(5);

pub(super) async fn archive_loop(shared: Arc<Shared>, dir: PathBuf, shutdown: CancellationToken) {
    let store = &shared.store;
    // Runs archived (by anyone) or gone: never looked at again.
    let mut settled: HashSet<String> = HashSet::new();
    // Runs whose archiving failed here: warned about once, then tried quietly.
    let mut warned: HashSet<String> = HashSet::new();
    let mut wait = Duration::from_secs(1);
    loop {
        if sleep_or_shutdown(wait, &shutdown).await {
            return;
        }
        wait = SWEEP;
        let Ok(mut conn) = store.conn().await else { continue };
        let ids = match store.run_ids(&mut conn).await {
            Ok(ids) => ids,
            Err(e) => {
                debug!("archive sweep: could not list the runs: {e}");
                continue;
            }
        };
        let index: HashSet<&String> = ids.iter().collect();
        settled.retain(|id| index.contains(id));
        warned.retain(|id| index.contains(id));
        let fresh: Vec<String> = ids.iter().filter(|id| !settled.contains(*id)).cloned().collect();
        let states = match store.archive_states(&mut conn, &fresh).await {
            Ok(s) => s,
            Err(e) => {
                debug!("archive sweep: could not read the runs: {e}");
                continue;
            }
        };
        for (run, state) in fresh.into_iter().zip(states) {
            if shutdown.is_cancelled() {
                return;
            }
            match state {
                ArchiveState::Archived | ArchiveState::Gone => {
                    settled.insert(run);
                }
                ArchiveState::Unarchived => match zo_common::archive::archive_run(store, &run, &shared.id, &dir, &shared.ctx.catalog).await
                {
                    Ok(Some(path)) => {
                        info!(run = %run, path = %path.display(), "archived the finished run");
                        settled.insert(run);
                    }
                    Ok(None) => {}
                    Err(e) if warned.insert(run.clone()) => warn!(run = %run, "could not archive the finished run: {e}"),
                    Err(e) => debug!(run = %run, "could not archive the finished run: {e}"),
                },
                ArchiveState::Running | ArchiveState::Claimed => {}
            }
        }
    }
}
