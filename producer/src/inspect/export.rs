//! `zo-submit export RUN --format json|md|html [-o FILE]`: a run's report, finished or not
//! (from Redis, else from the archive), on stdout or written to a file as the shell's `>`
//! would: through a symlink, into a FIFO or device, over a regular file keeping its mode; a
//! missing directory is an error; `-o -` is stdout. (The results and reports `zo-submit FILE`
//! writes itself go through `write_atomic` instead: those paths are the tool's, not typed.)

use std::path::Path;

use zo_common::catalog::Catalog;
use zo_common::report;

use crate::cli::{ArchiveOpt, ConnOpts, ExportFormat};
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
        Some(path) if path == Path::new("-") => stdout(&body),
        Some(path) => {
            if let Err(e) = write_like_redirect(path, body.as_bytes()) {
                eprintln!("zo-submit: cannot write {}: {e}", path.display());
                return exit::TASKS_FAILED;
            }
            eprintln!("wrote {}", path.display());
        }
    }
    exit::OK
}

/// Opens `path` for writing as `>` does (created 0666 less the umask, or truncated in place)
/// and writes `bytes`.
fn write_like_redirect(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).open(path)?;
    f.write_all(bytes)?;
    f.flush()
}
