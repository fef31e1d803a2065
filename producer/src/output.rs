//! Writing results: the JSON document, the Markdown and HTML reports and each task's
//! `output_file`.
//! Files are written to a temporary name and renamed, so none is ever left half-written.

use std::path::{Path, PathBuf};

use zo_common::model::TaskState;
use zo_common::report::{self, ResultsDocument};

pub use zo_common::files::write_atomic;

/// Where `rel` (an `output_file`, already relative and free of `..`) lands inside `base`:
/// directories inside `base` are created as needed, and every directory on the way, symlinks
/// resolved, must still be inside `base`. An error says why the file is refused.
pub fn confined(base: &Path, rel: &str) -> Result<PathBuf, String> {
    let rel_path = Path::new(rel);
    if rel_path.is_absolute() || rel_path.components().any(|c| !matches!(c, std::path::Component::Normal(_))) {
        return Err("is not a plain relative path".into());
    }
    let root = base.canonicalize().map_err(|e| format!("output directory {}: {e}", base.display()))?;
    let mut dir = root.clone();
    if let Some(parent) = rel_path.parent() {
        for part in parent.components() {
            let next = dir.join(part);
            match std::fs::symlink_metadata(&next) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    std::fs::create_dir(&next).map_err(|e| format!("cannot create directory {}: {e}", next.display()))?
                }
                Err(e) => return Err(format!("{}: {e}", next.display())),
                Ok(_) => {}
            }
            let real = next.canonicalize().map_err(|e| format!("{}: {e}", next.display()))?;
            if !real.starts_with(&root) {
                return Err(format!(
                    "{} leads outside the output directory {} (a symlink to {})",
                    next.display(),
                    root.display(),
                    real.display()
                ));
            }
            if !real.is_dir() {
                return Err(format!("{} is not a directory", next.display()));
            }
            dir = real;
        }
    }
    let file = dir.join(rel_path.file_name().ok_or("names no file")?);
    if let Ok(m) = std::fs::symlink_metadata(&file) {
        if m.is_dir() {
            return Err(format!("{} is a directory", file.display()));
        }
    }
    Ok(file)
}

/// Now as `YYYYMMDD_HHMMSS` (UTC), the stamp of the files a run writes.
pub(crate) fn utc_stamp() -> String {
    let fmt = time::macros::format_description!("[year][month][day]_[hour][minute][second]");
    time::OffsetDateTime::now_utc().format(&fmt).unwrap_or_default()
}

/// `results_YYYYMMDD_HHMMSS.json`, `report_….md`, `report_….html` (UTC), made unique in `dir`.
fn stamp_paths(dir: &Path) -> [PathBuf; 3] {
    let stamp = utc_stamp();
    for n in 1.. {
        let suffix = if n == 1 { String::new() } else { format!("_{n}") };
        let paths = [
            dir.join(format!("results_{stamp}{suffix}.json")),
            dir.join(format!("report_{stamp}{suffix}.md")),
            dir.join(format!("report_{stamp}{suffix}.html")),
        ];
        if paths.iter().all(|p| !p.exists()) {
            return paths;
        }
    }
    unreachable!()
}

/// What was written.
#[derive(Debug, Default)]
pub struct Written {
    pub json: Option<PathBuf>,
    pub markdown: Option<PathBuf>,
    pub html: Option<PathBuf>,
    pub outputs: Vec<PathBuf>,
    pub errors: Vec<String>,
}

/// What to write, and where.
pub struct Targets<'a> {
    pub results_dir: &'a Path,
    /// The directory `output_file`s are confined to.
    pub output_dir: &'a Path,
    pub json: bool,
    /// The Markdown and HTML reports.
    pub reports: bool,
    pub outputs: bool,
}

pub fn write_all(doc: &ResultsDocument, to: &Targets<'_>) -> Written {
    let mut w = Written::default();
    let [jp, mp, hp] = stamp_paths(to.results_dir);
    let mut write = |path: PathBuf, body: &[u8]| match write_atomic(&path, body) {
        Ok(()) => Some(path),
        Err(e) => {
            w.errors.push(format!("cannot write {}: {e}", path.display()));
            None
        }
    };
    let json = to.json.then(|| write(jp, &serde_json::to_vec_pretty(doc).expect("document serializes"))).flatten();
    let markdown = to.reports.then(|| write(mp, report::markdown(doc).as_bytes())).flatten();
    let html = to.reports.then(|| write(hp, report::html(doc).as_bytes())).flatten();
    (w.json, w.markdown, w.html) = (json, markdown, html);
    for t in doc.tasks.iter().filter(|_| to.outputs) {
        if let Some(f) = &t.output_file {
            if t.status != TaskState::Success {
                continue;
            }
            let shown = f.escape_default();
            match confined(to.output_dir, f) {
                Ok(p) => match write_atomic(&p, t.output.as_bytes()) {
                    Ok(()) => w.outputs.push(p),
                    Err(e) => {
                        w.errors.push(format!("task `{}`: cannot write output_file {}: {e}", t.task_name.escape_default(), p.display()))
                    }
                },
                Err(why) => w.errors.push(format!("task `{}`: refusing output_file `{shown}`: {why}", t.task_name.escape_default())),
            }
        }
    }
    w
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_files_stay_inside_the_output_directory() {
        let base = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let root = base.path().canonicalize().unwrap();
        assert_eq!(confined(base.path(), "a/b/c.txt").unwrap(), root.join("a/b/c.txt"));
        assert!(root.join("a/b").is_dir(), "subdirectories inside are created");
        // A symlinked directory that leads outside is refused, and nothing is created there.
        std::os::unix::fs::symlink(outside.path(), base.path().join("link")).unwrap();
        let err = confined(base.path(), "link/x/evil.txt").unwrap_err();
        assert!(err.contains("leads outside the output directory"), "{err}");
        assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);
        // A symlink that stays inside is followed.
        std::os::unix::fs::symlink(root.join("a"), base.path().join("inner")).unwrap();
        assert_eq!(confined(base.path(), "inner/b/d.txt").unwrap(), root.join("a/b/d.txt"));
        assert!(confined(base.path(), "../x").is_err());
        assert!(confined(base.path(), "/etc/x").is_err());
    }
}
