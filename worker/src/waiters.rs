//! How a job is known to the limiters (`RUN|IDX|ATTEMPT`: reservations, waiting lists) and
//! how the jobs waiting on a limiter are brought forward in their runs: written and read
//! here only. A leaf: imports nothing of the worker.

use tracing::debug;
use zo_common::store::{Conn, Job, Store};

/// The key a job is known by to limiters (reservations, waiting lists): `RUN|IDX|ATTEMPT`.
pub fn job_key(job: &Job) -> String {
    format!("{}|{}|{}", job.run_id, job.idx, job.attempt)
}

/// Brings waiting tasks (`RUN|IDX|ATTEMPT`) forward in their runs.
pub async fn wake(store: &Store, c: &mut Conn, waiters: &[String]) {
    for w in waiters {
        let mut parts = w.rsplitn(3, '|');
        let (Some(att), Some(idx), Some(run)) = (parts.next(), parts.next(), parts.next()) else { continue };
        let (Ok(idx), Ok(att)) = (idx.parse::<u32>(), att.parse::<u32>()) else { continue };
        if let Err(e) = store.bring_forward(c, run, idx, att).await {
            debug!(run, idx, "could not bring a waiting task forward ({e}); it comes back on its own");
        }
    }
}
