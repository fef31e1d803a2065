//! The run archive: each finished run's results document kept as `DIR/RUN.json`, so run
//! history outlives Redis's retention. Written once per outcome (whoever sees the run finish
//! first claims it in Redis, `Store::claim_archive`; a run reopened by `resume` or `dead
//! retry` loses its mark and is written again when it finishes again), read by `runs`, `show`, `search`, `diff`,
//! `stats` and `export` for runs Redis no longer holds.

use std::path::{Path, PathBuf};

use crate::report::ResultsDocument;
use crate::store::check_run_id;

/// Largest archived document read back (a 100,000-task run's document is ~100 MB).
const MAX_DOC_BYTES: u64 = 512 << 20;

#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("archive {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("archive {path}: not a results document ({reason})")]
    Corrupt { path: String, reason: String },
}

fn path_of(dir: &Path, run_id: &str) -> PathBuf {
    dir.join(format!("{run_id}.json"))
}

/// Writes the document of a finished run (atomically; an existing file is replaced).
pub fn save(dir: &Path, doc: &ResultsDocument) -> Result<PathBuf, ArchiveError> {
    let path = path_of(dir, &doc.run_id);
    let body = serde_json::to_vec_pretty(doc).expect("document serializes");
    crate::files::write_atomic(&path, &body).map_err(|source| ArchiveError::Io { path: path.display().to_string(), source })?;
    Ok(path)
}

/// The archived document of `run_id`, if there is one.
pub fn load(dir: &Path, run_id: &str) -> Result<Option<ResultsDocument>, ArchiveError> {
    if check_run_id(run_id).is_err() {
        return Ok(None);
    }
    read(&path_of(dir, run_id))
}

fn read(path: &Path) -> Result<Option<ResultsDocument>, ArchiveError> {
    let shown = || path.display().to_string();
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(ArchiveError::Io { path: shown(), source }),
    };
    if !meta.is_file() || meta.len() > MAX_DOC_BYTES {
        return Err(ArchiveError::Corrupt { path: shown(), reason: format!("not a regular file of at most {} MB", MAX_DOC_BYTES >> 20) });
    }
    let text = std::fs::read(path).map_err(|source| ArchiveError::Io { path: shown(), source })?;
    serde_json::from_slice(&text).map(Some).map_err(|e| ArchiveError::Corrupt { path: shown(), reason: e.to_string() })
}

/// The run ids archived in `dir`, newest first (run ids start with their creation time).
pub fn list(dir: &Path) -> Result<Vec<String>, ArchiveError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(ArchiveError::Io { path: dir.display().to_string(), source }),
    };
    let mut ids: Vec<String> = entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.strip_suffix(".json").map(str::to_string))
        // Run ids start with their creation date; other JSON files in the directory are not ours.
        .filter(|id| id.starts_with(|c: char| c.is_ascii_digit()) && check_run_id(id).is_ok())
        .collect();
    ids.sort_unstable_by(|a, b| b.cmp(a));
    Ok(ids)
}

/// Archives a finished run into `dir` unless another process has claimed it: `Ok(Some(path))`
/// when this call wrote it, `Ok(None)` when someone else did (or does). `who` names this
/// process in the claim.
pub async fn archive_run(
    store: &crate::store::Store,
    run_id: &str,
    who: &str,
    dir: &Path,
    catalog: &crate::catalog::Catalog,
) -> Result<Option<PathBuf>, String> {
    let mut conn = store.conn().await.map_err(|e| e.to_string())?;
    if !store.claim_archive(&mut conn, run_id, who).await.map_err(|e| e.to_string())? {
        return Ok(None);
    }
    let snap = store.snapshot(&mut conn, run_id).await.map_err(|e| e.to_string())?;
    if !snap.meta.finished {
        return Err(format!("run {run_id} has not finished; nothing archived"));
    }
    let path = save(dir, &crate::report::build(&snap, catalog)).map_err(|e| e.to_string())?;
    if !store.archive_done(&mut conn, run_id, who, &path.display().to_string()).await.map_err(|e| e.to_string())? {
        // Reopened while we wrote: the file is rewritten when the run finishes again.
        return Ok(None);
    }
    Ok(Some(path))
}

/// [`archive_run`] for a caller that holds the finished run's document already.
pub async fn archive_doc(store: &crate::store::Store, who: &str, dir: &Path, doc: &ResultsDocument) -> Result<Option<PathBuf>, String> {
    let mut conn = store.conn().await.map_err(|e| e.to_string())?;
    if !store.claim_archive(&mut conn, &doc.run_id, who).await.map_err(|e| e.to_string())? {
        return Ok(None);
    }
    let path = save(dir, doc).map_err(|e| e.to_string())?;
    if !store.archive_done(&mut conn, &doc.run_id, who, &path.display().to_string()).await.map_err(|e| e.to_string())? {
        return Ok(None);
    }
    Ok(Some(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_round_trip_and_junk_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let doc: ResultsDocument = serde_json::from_value(serde_json::json!({
            "run_id": "20260101-000000-ab12", "task_file": "t.yaml",
            "summary": { "timestamp": "2026-01-01T00:00:05Z", "run_id": "20260101-000000-ab12", "total_tasks": 0,
                "successful": 0, "failed": 0, "timeout": 0, "skipped": 0, "cancelled": 0, "success_rate": 0.0,
                "total_duration": 0.0, "average_duration": 0.0, "wall_time": 5.0, "input_tokens": 0, "output_tokens": 0 },
            "results_by_instance": {}, "tasks": []
        }))
        .unwrap();
        save(dir.path(), &doc).unwrap();
        assert_eq!(load(dir.path(), "20260101-000000-ab12").unwrap(), Some(doc));
        assert_eq!(load(dir.path(), "20260101-000000-ffff").unwrap(), None);
        assert_eq!(load(dir.path(), "../etc/passwd").unwrap(), None, "no path but a run id is read");
        std::fs::write(dir.path().join("20260102-000000-0000.json"), "not json").unwrap();
        std::fs::write(dir.path().join("notes.json"), "{}").unwrap();
        assert_eq!(list(dir.path()).unwrap(), ["20260102-000000-0000", "20260101-000000-ab12"]);
        assert!(matches!(load(dir.path(), "20260102-000000-0000"), Err(ArchiveError::Corrupt { .. })));
    }
}
