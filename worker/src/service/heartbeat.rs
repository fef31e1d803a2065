//! The heartbeat: every five seconds the worker announces itself (id, instances, executor,
//! protocol) so that zo-submit can tell which instances are served, and by whom.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::debug;
use zo_common::model::now_ms;
use zo_common::store::{WorkerInfo, PROTOCOL};

use super::{sleep_or_shutdown, Shared};

const EVERY: Duration = Duration::from_secs(5);

pub(super) async fn heartbeat_loop(shared: Arc<Shared>, instances: Vec<String>, executor: String, shutdown: CancellationToken) {
    let info = WorkerInfo { id: shared.id.clone(), pid: std::process::id(), instances, executor, started_ms: now_ms(), protocol: PROTOCOL };
    loop {
        match shared.store.conn().await {
            Ok(mut conn) => {
                if let Err(e) = shared.store.heartbeat(&mut conn, &info).await {
                    debug!("heartbeat failed: {e}");
                }
            }
            Err(e) => debug!("heartbeat failed: {e}"),
        }
        if sleep_or_shutdown(EVERY, &shutdown).await {
            return;
        }
    }
}
