//! Writing results: the JSON document, the Markdown report and each task's `output_file`.
//! Files are written to a temporary name and renamed, so none is ever left half-written.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use zo_common::model::TaskState;
use zo_common::report::{self, ResultsDocument};

/// Writes `bytes` to `path` atomically (temp file in the same directory, then rename).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "out".into());
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

/// `results_YYYYMMDD_HHMMSS` (UTC), made unique in `dir`.
fn stamp_paths(dir: &Path) -> (PathBuf, PathBuf) {
    let t = time::OffsetDateTime::now_utc();
    let fmt = time::macros::format_description!("[year][month][day]_[hour][minute][second]");
    let stamp = t.format(&fmt).unwrap_or_default();
    for n in 1.. {
        let suffix = if n == 1 { String::new() } else { format!("_{n}") };
        let j = dir.join(format!("results_{stamp}{suffix}.json"));
        let m = dir.join(format!("report_{stamp}{suffix}.md"));
        if !j.exists() && !m.exists() {
            return (j, m);
        }
    }
    unreachable!()
}

/// What was written.
#[derive(Debug, Default)]
pub struct Written {
    pub json: Option<PathBuf>,
    pub markdown: Option<PathBuf>,
    pub outputs: Vec<PathBuf>,
    pub errors: Vec<String>,
}

pub fn write_all(doc: &ResultsDocument, dir: &Path, save_json: bool, save_md: bool) -> Written {
    let mut w = Written::default();
    let (jp, mp) = stamp_paths(dir);
    if save_json {
        let body = serde_json::to_vec_pretty(doc).expect("document serializes");
        match write_atomic(&jp, &body) {
            Ok(()) => w.json = Some(jp),
            Err(e) => w.errors.push(format!("cannot write {}: {e}", jp.display())),
        }
    }
    if save_md {
        match write_atomic(&mp, report::markdown(doc).as_bytes()) {
            Ok(()) => w.markdown = Some(mp),
            Err(e) => w.errors.push(format!("cannot write {}: {e}", mp.display())),
        }
    }
    for t in &doc.tasks {
        if let Some(f) = &t.output_file {
            if t.status != TaskState::Success {
                continue;
            }
            let p = PathBuf::from(f);
            match write_atomic(&p, t.output.as_bytes()) {
                Ok(()) => w.outputs.push(p),
                Err(e) => w.errors.push(format!("task `{}`: cannot write output_file {}: {e}", t.task_name, p.display())),
            }
        }
    }
    w
}
