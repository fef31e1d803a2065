//! The archive sweep of a worker with `archive:`. A worker that records a run's last result
//! archives it at once ([`crate::job`]); this loop catches the runs that finished without
//! that: cancelled from the command line, ended by a rejected stage or a budget with nothing
//! running, or finished by a worker without an archive. Every few seconds it looks at the
//! runs of the index it has not settled yet and archives the finished ones nobody has
//! claimed (the claim in Redis keeps it to one writer across every process). A run archived
//! already is looked at again every minute: `resume` or `dead retry` may have reopened it,
//! and once it finishes again it is archived again.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use std::time::Instant;

use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};
use zo_common::store::ArchiveState;

use crate::shared::Shared;
use crate::waiting::sleep_or_shutdown;

/// Time between sweeps (the first comes soon after start).
const SWEEP: Duration = Duration::from_secs(5);
/// How often an archived run is looked at again (reopened runs lose their archive mark).
const RECHECK: Duration = Duration::from_secs(60);

pub(super) async fn archive_loop(shared: Arc<Shared>, dir: PathBuf, shutdown: CancellationToken) {
    let store = &shared.store;
    // Runs gone from Redis: never looked at again.
    let mut gone: HashSet<String> = HashSet::new();
    // Runs archived (by anyone), with when that was seen: looked at again after RECHECK.
    let mut archived: HashMap<String, Instant> = HashMap::new();
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
        gone.retain(|id| index.contains(id));
        archived.retain(|id, seen| index.contains(id) && seen.elapsed() < RECHECK);
        warned.retain(|id| index.contains(id));
        let fresh: Vec<String> = ids.iter().filter(|id| !gone.contains(*id) && !archived.contains_key(*id)).cloned().collect();
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
                ArchiveState::Archived => {
                    archived.insert(run, Instant::now());
                }
                ArchiveState::Gone => {
                    gone.insert(run);
                }
                ArchiveState::Unarchived => match zo_common::archive::archive_run(store, &run, &shared.id, &dir, &shared.ctx.catalog).await
                {
                    Ok(Some(path)) => {
                        info!(run = %run, path = %path.display(), "archived the finished run");
                        archived.insert(run, Instant::now());
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
