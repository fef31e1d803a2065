//! `zo-submit export RUN --format json|md|html [-o FILE]`: a run's report, finished or not
//! (from Redis, else from the archive), on stdout or written atomically to a file.

use std::path::Path;

use zo_common::catalog::Catalog;
use zo_common::report;

use crate::cli::{ArchiveOpt, ConnOpts, ExportFormat};
use crate::output::write_atomic;
use crate::{connect, exit, stdout};

pub async fn export(conn: &ConnOpts, run_id: &str, format: ExportFormat, to: Option<&Path>, catalog: &Catalog, archive: &ArchiveOpt) -> u8 {
    let store = match connect(conn, 1).await {
        Ok(s) => s,
        Err(code) => return code,
    };
    let doc = match super::history::document(&store, run_id, catalog, archive.archive.as_deref()).await {
        Ok(d) => d,
        Err(code) => return code,
    };
    let body = match format {
        ExportFormat::Json => format!("{}\n", serde_json::to_string_pretty(&doc).expect("document serializes")),
        ExportFormat::Md => report::markdown(&doc),
        ExportFormat::Html => report::html(&doc),
    };
    match to {
        None => stdout(&body),
        Some(path) => {
            if let Err(e) = write_atomic(path, body.as_bytes()) {
                eprintln!("zo-submit: cannot write {}: {e}", path.display());
                return exit::TASKS_FAILED;
            }
            eprintln!("wrote {}", path.display());
        }
    }
    exit::OK
}
