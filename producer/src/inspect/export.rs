//! `zo-submit export RUN --format json|md|html [-o FILE]`: a run's report, finished or not,
//! on stdout or written atomically to a file.

use std::path::Path;

use zo_common::catalog::Catalog;
use zo_common::report;

use crate::cli::{ConnOpts, ExportFormat};
use crate::output::write_atomic;
use crate::{connect, exit, fail_queue, stdout};

pub async fn export(conn: &ConnOpts, run_id: &str, format: ExportFormat, to: Option<&Path>, catalog: &Catalog) -> u8 {
    let store = match connect(conn, 1).await {
        Ok(s) => s,
        Err(code) => return code,
    };
    let snap = async {
        let mut c = store.conn().await?;
        store.snapshot(&mut c, run_id).await
    }
    .await;
    let doc = match snap {
        Ok(s) => report::build(&s, catalog),
        Err(e) => return fail_queue(&e),
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
