//! The lease loop: renews the leases of running jobs every third of the lease (and keeps
//! their stream entries fresh so reclaimers leave them alone), and looks for cancel requests
//! every second in between. A job whose lease is lost is stopped here.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};
use zo_common::store::Renewed;

use crate::shared::{RunningJob, Shared, StopReason};
use crate::waiting::sleep_or_shutdown;

pub(super) async fn lease_loop(shared: Arc<Shared>, finished: CancellationToken) {
    let store = &shared.store;
    let renew_every = (shared.lease / 3).max(Duration::from_millis(200));
    let mut last_renew = tokio::time::Instant::now();
    loop {
        if sleep_or_shutdown(renew_every.min(Duration::from_secs(1)), &finished).await {
            return;
        }
        let jobs: Vec<((String, u32), RunningJob)> =
            shared.running.lock().expect("running lock").iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        if jobs.is_empty() {
            continue;
        }
        let Ok(mut conn) = store.conn().await else { continue };
        if last_renew.elapsed() + Duration::from_millis(50) >= renew_every {
            last_renew = tokio::time::Instant::now();
            let mut held: HashMap<String, Vec<String>> = HashMap::new();
            for ((run, idx), job) in &jobs {
                match store.renew(&mut conn, run, *idx, job.attempt, &shared.id, shared.lease).await {
                    Ok(Renewed::Ok) => held.entry(job.stream.clone()).or_default().push(job.entry_id.clone()),
                    Ok(Renewed::CancelRequested) => {
                        held.entry(job.stream.clone()).or_default().push(job.entry_id.clone());
                        job.stop(StopReason::Cancelled);
                    }
                    Ok(Renewed::Lost) => {
                        warn!(run = %run, idx, "lease lost (another worker took the task over, or it ended); stopping it here");
                        job.stop(StopReason::LeaseLost);
                    }
                    Err(e) => debug!("lease renewal failed: {e}"),
                }
            }
            // Shared slots: how many this worker holds, one call per limiter.
            let slots = shared.limits.held();
            let until = zo_common::model::now_ms() + shared.lease.as_millis() as u64;
            for (limiter, count) in slots {
                match store.renew_shared_slots(&mut conn, &limiter, &shared.id, count, until).await {
                    Ok(true) => {}
                    Ok(false) => {
                        warn!(limiter = %limiter, count, "this worker's shared slots lapsed while its tasks ran (Redis or this worker stalled); held again")
                    }
                    Err(e) => debug!("renewing shared slots failed: {e}"),
                }
            }
            for (stream, ids) in held {
                if let Err(e) = store.keep_claimed(&mut conn, &stream, &shared.id, &ids).await {
                    debug!("keeping entries claimed failed: {e}");
                }
            }
        } else {
            // Between renewals, only look for cancel requests (one HMGET per run).
            let mut by_run: HashMap<&str, (Vec<u32>, Vec<&RunningJob>)> = HashMap::new();
            for ((run, idx), job) in &jobs {
                let e = by_run.entry(run.as_str()).or_default();
                e.0.push(*idx);
                e.1.push(job);
            }
            for (run, (idxs, list)) in by_run {
                if let Ok(flags) = store.cancel_requested(&mut conn, run, &idxs).await {
                    for (job, flag) in list.into_iter().zip(flags) {
                        if flag {
                            job.stop(StopReason::Cancelled);
                        }
                    }
                }
            }
        }
    }
}
