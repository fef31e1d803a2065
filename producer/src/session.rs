//! What most commands start with: the catalog, the queue, a task file — each failing with one
//! message and its exit code.

use std::path::Path;

use zo_common::catalog::Catalog;
use zo_common::store::{Store, StoreError};
use zo_common::taskfile;

use crate::cli::{CatalogOpts, ConnOpts, DEFAULT_REDIS};
use crate::exit::{self, fail_queue};

/// The instance catalog of `--catalog` (or the built-in one).
pub(crate) fn load_catalog(opts: &CatalogOpts) -> Result<Catalog, u8> {
    Catalog::load(opts.catalog.as_deref()).map_err(|e| {
        eprintln!("zo-submit: {e}");
        exit::INVALID
    })
}

/// Connects to the queue, or says why not (the exit code). When nothing answers at the
/// default URL, the message says how to start a Redis there.
pub(crate) async fn connect(conn: &ConnOpts, pool: usize) -> Result<Store, u8> {
    Store::connect(&conn.redis, &conn.namespace, pool).await.map_err(|e| {
        if matches!(e, StoreError::Unreachable { .. }) && conn.redis == DEFAULT_REDIS {
            eprintln!(
                "zo-submit: {e}; start one with `redis-server --daemonize yes --appendonly yes --maxmemory-policy noeviction` (Debian/Ubuntu: `sudo apt-get install redis-server`; scripts/demo.sh does both), or point --redis / ZO_REDIS_URL at yours"
            );
            return exit::INFRA;
        }
        fail_queue(&e)
    })
}

/// A task file read and validated; every problem printed.
pub(crate) fn load_tasks(path: &Path, catalog: &Catalog, max_bytes: u64) -> Result<taskfile::TaskFile, u8> {
    taskfile::load(path, catalog, max_bytes).map_err(|e| {
        eprintln!("{e}");
        let n = e.0.len();
        eprintln!("zo-submit: {} has {n} error{}; nothing was submitted", path.display(), if n == 1 { "" } else { "s" });
        exit::INVALID
    })
}
